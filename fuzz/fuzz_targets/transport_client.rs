//! Fuzz target `transport_client`: see [`mtproxy_fuzz::transport_client`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mtproxy_fuzz::transport_client(data));
