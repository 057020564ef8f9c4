//! Compiles every BPF program of this crate with clang: `<dir>/probe.bpf.c` into
//! `$OUT_DIR/<dir>.bpf.o`, and `<library>/<name>.bpf.c` (a library folder holding
//! several programs, e.g. `grpc/client.bpf.c`) into `$OUT_DIR/<library>_<name>.bpf.o`;
//! the Rust module beside each program embeds it. Also every
//! `tests/<dir>/probe.bpf.c` into `$OUT_DIR/test_<dir>.bpf.o` for the integration
//! tests. The objects are never committed: they are rebuilt whenever a C source or
//! a shared header changes, so they cannot drift from their sources.
//!
//! The records the kernel and user sides exchange are declared once, in C: every
//! `<dir>/records.h` (with the shared `include/span_head.h`). bindgen turns them
//! into `$OUT_DIR/records.rs`, the `gosight_uprobes::records` module, so the Rust
//! side is generated from the same text the BPF programs compile, never mirrored
//! by hand.
//!
//! Needs clang (Debian's, >= 14) with libclang, and libbpf's headers (`apt-get install clang
//! libbpf-dev`). `GOSIGHT_CLANG` names another clang.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap();
    let (bpf_arch, multiarch) = match arch.as_str() {
        "x86_64" => ("x86", "x86_64-linux-gnu"),
        "aarch64" => ("arm64", "aarch64-linux-gnu"),
        other => panic!("gosight-uprobes: unsupported target architecture {other} (x86_64 and aarch64 are)"),
    };
    let clang = std::env::var("GOSIGHT_CLANG").unwrap_or_else(|_| "clang".into());
    println!("cargo:rerun-if-env-changed=GOSIGHT_CLANG");
    println!("cargo:rerun-if-changed=include");
    // A new library folder comes with its line in lib.rs's `libraries!` list: run
    // again to compile it (the folders already here are watched one by one below).
    println!("cargo:rerun-if-changed=lib.rs");

    let mut programs: Vec<(String, PathBuf)> = Vec::new();
    for dir in std::fs::read_dir(&root).unwrap().filter_map(|e| e.ok().map(|e| e.path())) {
        if !dir.is_dir() || dir.ends_with("tests") {
            continue;
        }
        let folder = dir.file_name().unwrap().to_string_lossy().into_owned();
        println!("cargo:rerun-if-changed={}", dir.display());
        for src in std::fs::read_dir(&dir).unwrap().filter_map(|e| e.ok().map(|e| e.path())) {
            let file = src.file_name().unwrap().to_string_lossy().into_owned();
            let Some(stem) = file.strip_suffix(".bpf.c") else { continue };
            let name = if stem == "probe" { folder.clone() } else { format!("{folder}_{stem}") };
            programs.push((name, src));
        }
    }
    programs.sort();
    generate_records(&root, &out, bpf_arch, multiarch);
    for (name, src) in programs {
        println!("cargo:rerun-if-changed={}", src.display());
        compile(&clang, &src, &out.join(format!("{name}.bpf.o")), &root.join("include"), bpf_arch, multiarch);
    }

    // Test programs: `tests/<dir>/probe.bpf.c` → `$OUT_DIR/test_<dir>.bpf.o`, for the
    // integration tests under tests/ (never embedded in the library).
    let tests = root.join("tests");
    let mut test_probes: Vec<PathBuf> = match std::fs::read_dir(&tests) {
        Ok(dir) => dir.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.join("probe.bpf.c").is_file()).collect(),
        Err(_) => Vec::new(),
    };
    test_probes.sort();
    for dir in test_probes {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let src = dir.join("probe.bpf.c");
        println!("cargo:rerun-if-changed={}", src.display());
        compile(&clang, &src, &out.join(format!("test_{name}.bpf.o")), &root.join("include"), bpf_arch, multiarch);
    }
}

/// Every `<dir>/records.h` of the crate, as one Rust module (`$OUT_DIR/records.rs`).
fn generate_records(root: &Path, out: &Path, bpf_arch: &str, multiarch: &str) {
    let mut headers: Vec<PathBuf> = std::fs::read_dir(root)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path().join("records.h")))
        .filter(|p| p.is_file())
        .collect();
    headers.sort();
    let mut all = String::new();
    for h in &headers {
        println!("cargo:rerun-if-changed={}", h.display());
        all.push_str(&format!("#include \"{}\"\n", h.display()));
    }
    let include = root.join("include");
    let bindings = bindgen::Builder::default()
        .header_contents("gosight_records.h", &all)
        .clang_args(["-target", "bpf", &format!("-D__TARGET_ARCH_{bpf_arch}")])
        .clang_arg(format!("-I{}", include.display()))
        .clang_arg(format!("-I/usr/include/{multiarch}"))
        // What the records headers declare, and the types those use.
        .allowlist_file(r".*/records\.h")
        .prepend_enum_name(false)
        .derive_default(true)
        .derive_eq(true)
        .layout_tests(true)
        .generate()
        .unwrap_or_else(|e| {
            panic!(
                "bindgen could not read the records headers ({e}): it needs libclang \
                 (`apt-get install libclang-dev`; LIBCLANG_PATH names another one)"
            )
        });
    bindings.write_to_file(out.join("records.rs")).expect("write records.rs");
}

fn compile(clang: &str, src: &Path, obj: &Path, include: &Path, bpf_arch: &str, multiarch: &str) {
    let status = Command::new(clang)
        .args(["-O2", "-g", "-target", "bpf", "-mcpu=v3", "-Wall", "-Werror"])
        .arg(format!("-D__TARGET_ARCH_{bpf_arch}"))
        .arg("-I")
        .arg(include)
        .arg(format!("-I/usr/include/{multiarch}"))
        .arg("-c")
        .arg(src)
        .arg("-o")
        .arg(obj)
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => panic!("clang failed ({s}) compiling {}", src.display()),
        Err(e) => panic!(
            "cannot run `{clang}` ({e}): the BPF programs are C compiled by clang. \
             Install it with `apt-get install clang libbpf-dev` (scripts/install-deps.sh does), \
             or point GOSIGHT_CLANG at a clang binary"
        ),
    }
}
