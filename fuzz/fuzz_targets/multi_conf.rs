//! Fuzz target `multi_conf`: see [`mtproxy_fuzz::multi_conf`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mtproxy_fuzz::multi_conf(data));
