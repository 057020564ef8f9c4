#![no_main]
//! See `gosight_fuzz::fuzzing::dwarf`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    gosight_fuzz::fuzzing::dwarf(data);
});
