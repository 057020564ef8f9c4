#![no_main]
//! See `gosight_fuzz::fuzzing::elf_and_buildinfo`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    gosight_fuzz::fuzzing::elf_and_buildinfo(data);
});
