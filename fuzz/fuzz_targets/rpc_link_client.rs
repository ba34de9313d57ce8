//! Fuzz target `rpc_link_client`: see [`mtproxy_fuzz::rpc_link_client`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mtproxy_fuzz::rpc_link_client(data));
