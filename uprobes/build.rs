//! Compiles every `<probe>/probe.bpf.c` of this crate with clang into
//! `$OUT_DIR/<probe>.bpf.o`, which the probe's Rust module embeds, and every
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

    let mut probes: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("probe.bpf.c").is_file())
        .collect();
    probes.sort();
    for dir in probes {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let src = dir.join("probe.bpf.c");
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
