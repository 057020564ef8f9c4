#![no_main]
//! See `gosight::inspect::fuzzing::pclntab`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    gosight::inspect::fuzzing::pclntab(data);
});
