//! Fuzz target `session_plain`: see [`mtproxy_fuzz::session_plain`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mtproxy_fuzz::session_plain(data));
