//! Fuzz target `obfuscated2_header`: see [`mtproxy_fuzz::obfuscated2_header`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mtproxy_fuzz::obfuscated2_header(data));
