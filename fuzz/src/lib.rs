//! Fuzz targets for gosight's binary readers: coverage-guided libFuzzer through
//! `cargo fuzz`, built and run on **stable** Rust.
//!
//! | target       | input                                   | entry ([`fuzzing`])    |
//! |--------------|-----------------------------------------|------------------------|
//! | `elf`        | a Go executable                         | `elf_and_buildinfo`    |
//! | `pclntab`    | a `.gopclntab` table                    | `pclntab`              |
//! | `dwarf`      | an object file with DWARF               | `dwarf`                |
//! | `buildinfo`  | a `.go.buildinfo` blob, or modinfo text | `buildinfo`            |
//! | `offsets_db` | offsets database JSON                   | `offsets_db`           |
//!
//! The readers are those of `gosight-goexe` (`sidecar/goexe/`) and
//! `gosight-offsets-db`; this crate depends on nothing else of gosight.
//!
//! `fuzz/run.sh [SECONDS]` builds them, runs every target for that long (after the
//! inputs of `fuzz/regressions/<target>/` and the seeds too big to mutate, once) and
//! fails on any crash; `fuzz/seed.sh` makes the seed corpora from real Go builds
//! (`fuzz/seedgen` shrinks megabyte executables to kilobyte ones that still open and
//! resolve functions). One target by hand:
//!
//! ```text
//! cargo fuzz run elf --sanitizer none fuzz/corpus/elf "$(bash fuzz/seed.sh | tail -1)/elf"
//! ```
//!
//! A crash makes `run.sh` fail and name the reproducer under `fuzz/artifacts/`; fix the
//! reader so that the input is an error, and keep the input in
//! `fuzz/regressions/<target>/` (the `fuzzing` unit tests run those too:
//! `cargo test --release --manifest-path fuzz/Cargo.toml --lib`, which
//! `scripts/test.sh` runs).
//!
//! In CI (`scripts/test.sh`), 30 s a target with the build kept in the cache:
//! `GOSIGHT_FUZZ_TARGET_DIR=$GOSIGHT_CACHE_DIR/fuzz-target bash fuzz/run.sh 30` takes
//! about 95 s with the build and seeds cached (two targets at a time on two CPUs), 45 s
//! more when the readers changed, and about 6 minutes on a new machine (cargo-fuzz
//! install ~1 min, Go seed builds ~2 min, cold build ~2.5 min).
//!
//! # Why cargo-fuzz with `--sanitizer none`, and why that is stable
//!
//! Nightly is not allowed in this project, and `RUSTC_BOOTSTRAP` would be nightly by
//! another name. cargo-fuzz 0.13 (`src/project.rs`) passes `-Z` flags only for a
//! sanitizer (`-Zsanitizer=…`, the default is address), `--build-std`, careful mode
//! and explicit `-Z` options. With `--sanitizer none` it passes only stable codegen
//! options: `-Cpasses=sancov-module`, `-Cllvm-args=-sanitizer-coverage-{level=4,
//! inline-8bit-counters,pc-table,trace-compares,stack-depth}`, `--cfg fuzzing`,
//! `-Cdebug-assertions` and `-Ccodegen-units=1`; libfuzzer-sys builds libFuzzer with
//! the C++ compiler. `run.sh` refuses a nightly `rustc` and unsets `RUSTC_BOOTSTRAP`.
//!
//! Losing AddressSanitizer costs little here: the readers are safe Rust over a
//! read-only map, so memory errors cannot happen outside dependencies' `unsafe`; what
//! the fuzzers look for are panics (slice indexing, `expect`, arithmetic overflow,
//! which `-Cdebug-assertions` turns on), hangs (`-timeout`) and runaway allocations
//! (`-rss_limit_mb`). libFuzzer's coverage feedback and compare tracing work without
//! a sanitizer; they were the reason not to fall back to a plain mutation loop.
//!
//! Build time: the crate depends on the readers alone, not on the sidecar (no tokio,
//! OTLP exporters, aya or eBPF programs to build); they and what they call
//! (`gosight-goexe`, object, gimli, iced-x86, flate2, serde_json, …) are optimised,
//! anything else is built at opt-level 0 (profile overrides in `fuzz/Cargo.toml`).

pub mod fuzzing;
