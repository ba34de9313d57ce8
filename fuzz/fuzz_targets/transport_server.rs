//! Fuzz target `transport_server`: see [`mtproxy_fuzz::transport_server`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mtproxy_fuzz::transport_server(data));
