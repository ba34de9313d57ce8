//! Fuzz target `stats_http_head`: see [`mtproxy_fuzz::stats_http_head`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mtproxy_fuzz::stats_http_head(data));
