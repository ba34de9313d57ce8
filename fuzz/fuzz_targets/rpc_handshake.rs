//! Fuzz target `rpc_handshake`: see [`mtproxy_fuzz::rpc_handshake`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mtproxy_fuzz::rpc_handshake(data));
