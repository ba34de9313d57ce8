//! Fuzz target `fake_tls_probe_response`: see [`mtproxy_fuzz::fake_tls_probe_response`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mtproxy_fuzz::fake_tls_probe_response(data));
