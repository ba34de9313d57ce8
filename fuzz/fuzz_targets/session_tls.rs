//! Fuzz target `session_tls`: see [`mtproxy_fuzz::session_tls`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mtproxy_fuzz::session_tls(data));
