//! Fuzz target `fake_tls_classify`: see [`mtproxy_fuzz::fake_tls_classify`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mtproxy_fuzz::fake_tls_classify(data));
