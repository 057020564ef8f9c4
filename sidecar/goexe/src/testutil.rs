//! Test support: builds the Go programs under `sidecar/goexe/tests/fixtures/` with the
//! `go` on PATH (optionally for another GOARCH or toolchain) and caches them per
//! process. Compiled for this crate's tests, and for other crates' tests with the
//! `testutil` feature (the fuzz crate's).
//!
//! Without `go`, tests print "skipped: go not found" and pass — except under `CI=true`,
//! where a missing toolchain is an error.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// What to build: a fixture directory and its build environment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Build {
    fixture: String,
    goarch: Option<String>,
    toolchain: Option<String>,
    ldflags: Option<String>,
    buildmode: Option<String>,
}

impl Build {
    pub fn new(fixture: &str) -> Build {
        Build { fixture: fixture.to_string(), ..Build::default() }
    }

    pub fn goarch(mut self, goarch: &str) -> Build {
        self.goarch = Some(goarch.to_string());
        self
    }

    /// A `GOTOOLCHAIN` value such as `go1.22.12` (downloaded by `go` if needed).
    pub fn toolchain(mut self, toolchain: &str) -> Build {
        self.toolchain = Some(toolchain.to_string());
        self
    }

    pub fn buildmode(mut self, buildmode: &str) -> Build {
        self.buildmode = Some(buildmode.to_string());
        self
    }

    pub fn ldflags(mut self, ldflags: &str) -> Build {
        self.ldflags = Some(ldflags.to_string());
        self
    }

    /// A file name unique to this build configuration.
    fn file_name(&self) -> String {
        let mut name = self.fixture.clone();
        for part in [&self.goarch, &self.toolchain, &self.ldflags, &self.buildmode].into_iter().flatten() {
            name.push('-');
            name.extend(part.chars().map(|c| if c.is_ascii_alphanumeric() || c == '.' { c } else { '_' }));
        }
        name
    }

    fn command(&self, dir: &Path) -> Command {
        let mut cmd = Command::new("go");
        cmd.current_dir(dir).env("CGO_ENABLED", "0");
        if let Some(goarch) = &self.goarch {
            cmd.env("GOARCH", goarch);
        }
        if let Some(toolchain) = &self.toolchain {
            cmd.env("GOTOOLCHAIN", toolchain);
        }
        cmd
    }
}

/// A built fixture binary.
#[derive(Debug, Clone)]
pub struct Built {
    pub path: PathBuf,
    /// `go env GOVERSION` of the toolchain that built it.
    pub go_version: String,
}

impl AsRef<Path> for Built {
    fn as_ref(&self) -> &Path {
        &self.path
    }
}

static BUILT: Mutex<Option<HashMap<Build, Built>>> = Mutex::new(None);

/// Builds (once per test process) and returns the fixture binary, or `None` when `go`
/// is not installed outside CI. Panics when the build itself fails.
pub fn build_fixture(build: &Build) -> Option<Built> {
    if !go_available() {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("the Go toolchain (`go`) is not on PATH; CI needs it for the fixture tests");
        }
        println!("skipped: go not found");
        return None;
    }
    // One lock for all builds: `go` runs its own parallelism, and building the same
    // fixture twice concurrently would only waste time.
    let mut guard = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    let cache = guard.get_or_insert_with(HashMap::new);
    if let Some(built) = cache.get(build) {
        return Some(built.clone());
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(&build.fixture);
    let out_dir = std::env::temp_dir().join("gosight-fixtures");
    std::fs::create_dir_all(&out_dir).expect("create fixture output dir");
    let out = out_dir.join(build.file_name());
    // Build under a unique name, then rename: concurrent test processes never see a
    // half-written binary, and reruns overwrite instead of piling up files.
    let tmp = out_dir.join(format!("{}.{}.tmp", build.file_name(), std::process::id()));

    let mut cmd = build.command(&src);
    cmd.args(["build", "-buildvcs=false", "-o"]).arg(&tmp);
    if let Some(ldflags) = &build.ldflags {
        cmd.arg(format!("-ldflags={ldflags}"));
    }
    if let Some(buildmode) = &build.buildmode {
        cmd.arg(format!("-buildmode={buildmode}"));
    }
    cmd.arg(".");
    let output = cmd.output().expect("run go build");
    if !output.status.success() {
        panic!("go build of {build:?} failed:\n{}", String::from_utf8_lossy(&output.stderr));
    }
    std::fs::rename(&tmp, &out).expect("move built fixture into place");

    let version = build.command(&src).args(["env", "GOVERSION"]).output().expect("run go env GOVERSION");
    let built = Built { path: out, go_version: String::from_utf8_lossy(&version.stdout).trim().to_string() };
    cache.insert(build.clone(), built.clone());
    Some(built)
}

fn go_available() -> bool {
    Command::new("go").arg("version").output().map(|o| o.status.success()).unwrap_or(false)
}
