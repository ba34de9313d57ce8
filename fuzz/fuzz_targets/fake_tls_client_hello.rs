//! Fuzz target `fake_tls_client_hello`: see [`mtproxy_fuzz::fake_tls_client_hello`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mtproxy_fuzz::fake_tls_client_hello(data));
