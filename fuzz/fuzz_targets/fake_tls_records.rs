//! Fuzz target `fake_tls_records`: see [`mtproxy_fuzz::fake_tls_records`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mtproxy_fuzz::fake_tls_records(data));
