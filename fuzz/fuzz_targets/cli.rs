//! Fuzz target `cli`: see [`mtproxy_fuzz::cli`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mtproxy_fuzz::cli(data));
