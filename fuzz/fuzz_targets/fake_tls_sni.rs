//! Fuzz target `fake_tls_sni`: see [`mtproxy_fuzz::fake_tls_sni`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mtproxy_fuzz::fake_tls_sni(data));
