#![no_main]
//! See `gosight::inspect::fuzzing::elf_and_buildinfo`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    gosight::inspect::fuzzing::elf_and_buildinfo(data);
});
