//! Compiles every BPF program of this crate with clang: `<dir>/probe.bpf.c` into
//! `$OUT_DIR/<dir>.bpf.o`, and `<library>/<name>.bpf.c` (a library folder holding
//! several programs, e.g. `grpc/client.bpf.c`) into `$OUT_DIR/<library>_<name>.bpf.o`;
//! the Rust module beside each program embeds it. Also every
//! `tests/<dir>/probe.bpf.c` into `$OUT_DIR/test_<dir>.bpf.o` for the integration
//! tests. The objects are never committed: they are rebuilt whenever a C source or
//! a shared header changes, so they cannot drift from their sources.
//!
//! Needs clang (Debian's, >= 14) and libbpf's headers (`apt-get install clang
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
