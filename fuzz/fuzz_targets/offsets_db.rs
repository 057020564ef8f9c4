#![no_main]
//! See `gosight::inspect::fuzzing::offsets_db`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    gosight::inspect::fuzzing::offsets_db(data);
});
