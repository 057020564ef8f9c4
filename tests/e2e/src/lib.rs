//! Harness for gosight's end-to-end tests: real Go apps from `tests/go-apps/`, the
//! real `gosight` binary attaching real uprobes, and a real OpenTelemetry Collector
//! (built by `scripts/install-collector.sh`) writing what it receives to a file.
//!
//! Prerequisites (root, BPF, Go, the collector) are checked by [`require`]: when
//! `CI=true` a missing one fails the test loudly; elsewhere the test says it is
//! skipped and why.

pub mod collector;
pub mod databases;
pub mod kafka;
pub mod kube;
pub mod process;
pub mod redis;
pub mod server_dirs;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard, OnceLock};

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("repo root")
}

/// Where built tools are cached between runs (`GOSIGHT_CACHE_DIR`).
pub fn cache_dir() -> PathBuf {
    std::env::var_os("GOSIGHT_CACHE_DIR").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into())).join(".cache/gosight")
    })
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Checks a prerequisite. Returns false (test skipped) when it is missing outside
/// CI; panics when it is missing in CI.
pub fn require(what: &str, ok: bool) -> bool {
    if ok {
        return true;
    }
    if in_ci() {
        panic!("prerequisite missing in CI: {what}");
    }
    eprintln!("SKIPPED: prerequisite missing: {what}");
    false
}

/// All prerequisites of an end-to-end test.
pub fn require_all() -> bool {
    // SAFETY: geteuid has no preconditions.
    require("root (uprobes and BPF maps need it)", unsafe { libc::geteuid() } == 0)
        && require(
            "BTF at /sys/kernel/btf/vmlinux (a BPF-capable kernel)",
            Path::new("/sys/kernel/btf/vmlinux").exists(),
        )
        && require("go on PATH", go_bin().is_some())
}

/// E2E tests each start a collector, apps and gosight: run them one at a time.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: OnceLock<Mutex<()>> = OnceLock::new();
    LOCK.get_or_init(|| Mutex::new(())).lock().unwrap_or_else(|e| e.into_inner())
}

pub fn go_bin() -> Option<PathBuf> {
    for cand in ["go", "/usr/local/go/bin/go"] {
        if Command::new(cand).arg("version").output().is_ok_and(|o| o.status.success()) {
            return Some(PathBuf::from(cand));
        }
    }
    None
}

/// Builds `tests/go-apps/<app>` with the machine's Go (`toolchain` None) or with
/// `GOTOOLCHAIN=<toolchain>`; `stripped` adds `-ldflags=-s -w`. Returns the binary.
pub fn build_go_app(app: &str, toolchain: Option<&str>, stripped: bool) -> PathBuf {
    build_go_app_with(app, toolchain, stripped, None)
}

/// [`build_go_app`] with `GOEXPERIMENT=<experiment>` (e.g. `jsonv2`).
pub fn build_go_app_with(app: &str, toolchain: Option<&str>, stripped: bool, experiment: Option<&str>) -> PathBuf {
    let go = go_bin().expect("go");
    let tag = format!(
        "{}{}{}",
        toolchain.unwrap_or("local"),
        experiment.map(|e| format!("+{e}")).unwrap_or_default(),
        if stripped { "-stripped" } else { "" }
    );
    let out = repo_root().join("target/go-apps").join(&tag).join(app);
    let src = repo_root().join("tests/go-apps").join(app);
    let mut cmd = Command::new(go);
    cmd.current_dir(&src).args(["build", "-o"]).arg(&out);
    if stripped {
        cmd.arg("-ldflags=-s -w");
    }
    cmd.arg(".");
    cmd.env("GOTOOLCHAIN", toolchain.unwrap_or("local")).env("GOFLAGS", "-mod=mod");
    match experiment {
        Some(e) => cmd.env("GOEXPERIMENT", e),
        None => cmd.env_remove("GOEXPERIMENT"),
    };
    let status = cmd.status().expect("run go build");
    assert!(status.success(), "go build of {app} with {tag} failed");
    out
}

/// Builds the gRPC test apps (tests/go-apps/grpc) against one grpc-go version
/// (`1.60`, `1.69`, `1.77`, `latest`; see tests/go-apps/grpc/versions) with the
/// machine's Go (`toolchain` None) or `GOTOOLCHAIN=<toolchain>`. Returns (server, client).
pub fn build_grpc_apps(grpc: &str, toolchain: Option<&str>, stripped: bool) -> (PathBuf, PathBuf) {
    let tag = format!("grpc-{grpc}-{}{}", toolchain.unwrap_or("local"), if stripped { "-stripped" } else { "" });
    let out = repo_root().join("target/go-apps").join(tag);
    let mut cmd = Command::new("bash");
    cmd.current_dir(repo_root().join("tests/go-apps/grpc")).arg("build.sh").arg(grpc).arg(&out);
    if stripped {
        cmd.arg("-ldflags=-s -w");
    }
    if let Some(go) = go_bin() {
        if let Some(dir) = go.parent().filter(|d| !d.as_os_str().is_empty()) {
            cmd.env("PATH", format!("{}:{}", dir.display(), std::env::var("PATH").unwrap_or_default()));
        }
    }
    let status = cmd.env("GOTOOLCHAIN", toolchain.unwrap_or("local")).status().expect("run build.sh");
    assert!(status.success(), "building the gRPC apps against grpc {grpc} failed");
    (out.join("server"), out.join("client"))
}

/// Builds tests/go-apps/sqlapp against one set of driver releases (`old`: pgx
/// v5.4.3, lib/pq v1.10.9, go-sql-driver/mysql v1.6.0; `new`: the newest; see
/// tests/go-apps/sqlapp/README.md) with the machine's Go (`toolchain` None) or
/// `GOTOOLCHAIN=<toolchain>`. Returns the binary.
pub fn build_sqlapp(drivers: &str, toolchain: Option<&str>, stripped: bool) -> PathBuf {
    build_sqlapp_tagged(drivers, toolchain, stripped, None)
}

/// [`build_sqlapp`] with Go build tags (`pgxonly`: pgx's database/sql driver the
/// only one linked).
pub fn build_sqlapp_tagged(drivers: &str, toolchain: Option<&str>, stripped: bool, tags: Option<&str>) -> PathBuf {
    let tag = format!(
        "sqlapp-{drivers}-{}{}{}",
        toolchain.unwrap_or("local"),
        if stripped { "-stripped" } else { "" },
        tags.map(|t| format!("-{t}")).unwrap_or_default()
    );
    let out = repo_root().join("target/go-apps").join(tag).join("sqlapp");
    let mut cmd = Command::new("sh");
    cmd.current_dir(repo_root().join("tests/go-apps/sqlapp")).arg("build.sh").arg(drivers).arg(&out);
    if stripped {
        cmd.arg("-ldflags=-s -w");
    }
    if let Some(tags) = tags {
        cmd.arg(format!("-tags={tags}"));
    }
    if let Some(go) = go_bin() {
        if let Some(dir) = go.parent().filter(|d| !d.as_os_str().is_empty()) {
            cmd.env("PATH", format!("{}:{}", dir.display(), std::env::var("PATH").unwrap_or_default()));
        }
    }
    let status = cmd.env("GOTOOLCHAIN", toolchain.unwrap_or("local")).status().expect("run build.sh");
    assert!(status.success(), "building sqlapp against the {drivers} drivers failed");
    out
}

/// Builds tests/go-apps/<app> (redisapp, kafkaapp: apps with a `versions/<set>/go.mod`
/// per set of library releases and a `build.sh <set> <out> [flags]`) against one
/// set (`old`, `new`; see the app's build.sh) with the machine's Go. Returns the
/// binary.
pub fn build_release_set(app: &str, set: &str, stripped: bool) -> PathBuf {
    let tag = format!("{app}-{set}{}", if stripped { "-stripped" } else { "" });
    let out = repo_root().join("target/go-apps").join(tag).join(app);
    let mut cmd = Command::new("sh");
    cmd.current_dir(repo_root().join("tests/go-apps").join(app)).arg("build.sh").arg(set).arg(&out);
    if stripped {
        cmd.arg("-ldflags=-s -w");
    }
    if let Some(go) = go_bin() {
        if let Some(dir) = go.parent().filter(|d| !d.as_os_str().is_empty()) {
            cmd.env("PATH", format!("{}:{}", dir.display(), std::env::var("PATH").unwrap_or_default()));
        }
    }
    let status = cmd.env("GOTOOLCHAIN", "local").status().expect("run build.sh");
    assert!(status.success(), "building {app} against its {set} releases failed");
    out
}

/// `go version` of a built binary, e.g. `go1.22.12`.
pub fn go_version_of(bin: &Path) -> String {
    let o = Command::new(go_bin().expect("go")).arg("version").arg(bin).output().expect("go version");
    String::from_utf8_lossy(&o.stdout).split_whitespace().nth(1).unwrap_or_default().to_string()
}

/// The gosight binary: `GOSIGHT_BIN`, else the release build (built if needed).
pub fn gosight_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("GOSIGHT_BIN") {
        return PathBuf::from(p);
    }
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
                .current_dir(repo_root())
                .args(["build", "--release", "-p", "gosight"])
                .status()
                .expect("cargo build");
            assert!(status.success(), "building gosight failed");
            repo_root().join("target/release/gosight")
        })
        .clone()
}

/// A fresh directory for one test's logs and files.
pub fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("gosight-e2e-{tag}-{}-{}", std::process::id(), free_port()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}
