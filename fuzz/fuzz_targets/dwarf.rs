#![no_main]
//! See `gosight::inspect::fuzzing::dwarf`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    gosight::inspect::fuzzing::dwarf(data);
});
