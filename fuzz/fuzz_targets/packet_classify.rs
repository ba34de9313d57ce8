//! Fuzz target `packet_classify`: see [`mtproxy_fuzz::packet_classify`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mtproxy_fuzz::packet_classify(data));
