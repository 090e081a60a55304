#![no_main]

#[allow(dead_code)]
#[path = "../../tests/fuzz/targets.rs"]
mod targets;

libfuzzer_sys::fuzz_target!(init: targets::under_libfuzzer("action"), |data: &[u8]| targets::action(data));
