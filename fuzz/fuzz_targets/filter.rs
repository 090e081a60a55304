#![no_main]

#[allow(dead_code)]
#[path = "../../tests/fuzz/targets.rs"]
mod targets;

libfuzzer_sys::fuzz_target!(init: targets::under_libfuzzer("filter"), |data: &[u8]| targets::filter(data));
