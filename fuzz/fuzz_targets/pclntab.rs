#![no_main]
//! See `gosight_fuzz::fuzzing::pclntab`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    gosight_fuzz::fuzzing::pclntab(data);
});
