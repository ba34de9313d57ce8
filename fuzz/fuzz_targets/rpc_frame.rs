//! Fuzz target `rpc_frame`: see [`mtproxy_fuzz::rpc_frame`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mtproxy_fuzz::rpc_frame(data));
