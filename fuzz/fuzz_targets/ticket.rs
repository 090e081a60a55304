#![no_main]

#[allow(dead_code)]
#[path = "../../tests/fuzz/targets.rs"]
mod targets;

libfuzzer_sys::fuzz_target!(init: targets::under_libfuzzer("ticket"), |data: &[u8]| targets::ticket(data));
