#![no_main]
//! See `gosight_fuzz::fuzzing::offsets_db`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    gosight_fuzz::fuzzing::offsets_db(data);
});
