#![no_main]
//! See `gosight::inspect::fuzzing::buildinfo`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    gosight::inspect::fuzzing::buildinfo(data);
});
