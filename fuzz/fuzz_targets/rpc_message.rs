//! Fuzz target `rpc_message`: see [`mtproxy_fuzz::rpc_message`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mtproxy_fuzz::rpc_message(data));
