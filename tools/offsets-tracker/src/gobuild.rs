//! Building the programs with the `go` command, and the cache that makes reruns cheap.
//!
//! Cache layout (`--cache DIR`):
//!
//! ```text
//! DIR/std-<program fingerprint>/go1.22.0/{src/, build.log, program}
//! DIR/grpc-<program fingerprint>-<local go>/v1.60.0/{src/, build.log, program}
//! DIR/go-build/                        GOCACHE of the grpc builds
//! ```
//!
//! A `program` file exists only once its build succeeded, so it is reused as is; a
//! failed build leaves its `build.log` and is retried on the next run. Standard
//! library builds get a throw-away GOCACHE (no two toolchains share compiled
//! packages, and each would add ~100 MB). Toolchains come through the module proxy
//! into GOMODCACHE (`GOTOOLCHAIN=go1.N.M`); with `drop_toolchains` the ones this
//! run downloaded are deleted after their build (CI disks hold ~10 of them).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use crate::programs::{self, Program};
use crate::proxy::GRPC;

/// What `go env` says about the machine's own toolchain.
#[derive(Debug, Clone)]
pub struct GoEnv {
    /// `go1.26.8`: the toolchain module builds use.
    pub version: String,
    pub hostos: String,
    pub hostarch: String,
    pub gomodcache: PathBuf,
    pub goproxy: String,
}

impl GoEnv {
    pub fn detect() -> Result<GoEnv> {
        let out = Command::new("go")
            .args(["env", "GOVERSION", "GOHOSTOS", "GOHOSTARCH", "GOMODCACHE", "GOPROXY"])
            .env("GOTOOLCHAIN", "local")
            .output()
            .context("cannot run `go env` (is Go installed and on PATH?)")?;
        if !out.status.success() {
            bail!("go env: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let v: Vec<&str> = text.lines().map(str::trim).collect();
        let [version, hostos, hostarch, gomodcache, goproxy] = v[..] else {
            bail!("go env: unexpected output {text:?}");
        };
        // GOMODCACHE is one directory, but be lenient with a list.
        let gomodcache = gomodcache.split(':').next().unwrap_or(gomodcache);
        Ok(GoEnv {
            version: version.into(),
            hostos: hostos.into(),
            hostarch: hostarch.into(),
            gomodcache: gomodcache.into(),
            goproxy: goproxy.into(),
        })
    }
}

/// A finished build.
#[derive(Debug)]
pub struct Built {
    pub binary: PathBuf,
    /// Reused from the cache.
    pub cached: bool,
    pub took: Duration,
    /// The Go toolchain was not in GOMODCACHE before this build.
    pub downloaded_toolchain: bool,
}

/// A Go package of a build, as `go list` lists it.
#[derive(Debug, Clone)]
pub struct Package {
    pub path: String,
    /// The Go files a build compiles (no tests, build tags applied).
    pub files: Vec<PathBuf>,
}

/// Builds the programs, caching their binaries.
pub struct Builder {
    go: GoEnv,
    cache: PathBuf,
    drop_toolchains: bool,
}

impl Builder {
    pub fn new(go: GoEnv, cache: PathBuf, drop_toolchains: bool) -> Builder {
        Builder { go, cache, drop_toolchains }
    }

    /// The standard-library program built with Go release `go` (`go1.22.0`). Call
    /// [`Builder::done_with`] after reading what else is needed from the toolchain.
    pub fn std(&self, go: &str) -> Result<Built> {
        let dir = self.std_dir(go);
        let downloaded = !self.has_toolchain(go);
        let gocache = dir.join("gocache");
        let result = self.build(&programs::STD, &dir, |src, log| {
            let env = [("GOTOOLCHAIN", go), ("GOCACHE", path_str(&gocache)?)];
            run_go(src, log, &env, &["build", "-o", "../program.tmp", "."])
        });
        remove_tree(&gocache);
        if result.is_err() {
            self.done_with(go, downloaded);
        }
        result.map(|b| Built { downloaded_toolchain: downloaded, ..b })
    }

    /// Drops the toolchain of Go release `go` if this run downloaded it and was asked
    /// to drop what it downloaded.
    pub fn done_with(&self, go: &str, downloaded: bool) {
        if self.drop_toolchains && downloaded {
            self.drop_toolchain(go);
        }
    }

    fn std_dir(&self, go: &str) -> PathBuf {
        self.cache.join(format!("{}-{}", programs::STD.name, programs::STD.fingerprint())).join(go)
    }

    fn grpc_dir(&self, version: &str) -> PathBuf {
        let kind = format!("{}-{}-{}", programs::GRPC.name, programs::GRPC.fingerprint(), self.go.version);
        self.cache.join(kind).join(version)
    }

    /// The packages of the standard-library build with `go`, as [`list_packages`]
    /// sees them; `None` once its toolchain is gone (dropped or never fetched).
    pub fn std_packages(&self, go: &str, packages: &[&str]) -> Option<Vec<Package>> {
        if !self.has_toolchain(go) {
            return None;
        }
        self.list_packages(&self.std_dir(go).join("src"), go, packages)
    }

    /// The packages of the grpc build against `version`.
    pub fn grpc_packages(&self, version: &str, packages: &[&str]) -> Option<Vec<Package>> {
        self.list_packages(&self.grpc_dir(version).join("src"), "local", packages)
    }

    /// `go list -e` of `packages` in a build's source directory, with its toolchain
    /// and build configuration: the packages that exist, each with the Go files a
    /// build compiles (build tags applied). `None` if `go list` cannot run.
    fn list_packages(&self, src: &Path, toolchain: &str, packages: &[&str]) -> Option<Vec<Package>> {
        let mut args = vec!["list", "-e", "-f", "{{.ImportPath}}\t{{.Dir}}\t{{join .GoFiles \",\"}}"];
        args.extend_from_slice(packages);
        let gocache = self.cache.join("go-build");
        let env = [("GOTOOLCHAIN", toolchain), ("GOCACHE", path_str(&gocache).ok()?)];
        let out = go_output(src, &env, &args).ok()?;
        let parse = |l: &str| {
            let mut parts = l.split('\t');
            let (path, dir, files) = (parts.next()?, parts.next()?, parts.next()?);
            let dir = PathBuf::from(dir);
            let files = files.split(',').filter(|f| !f.is_empty()).map(|f| dir.join(f)).collect();
            (!dir.as_os_str().is_empty()).then(|| Package { path: path.into(), files })
        };
        Some(out.lines().filter_map(parse).collect())
    }

    /// The grpc program built against grpc-go `version` with the machine's Go.
    pub fn grpc(&self, version: &str) -> Result<Built> {
        let dir = self.grpc_dir(version);
        let gocache = self.cache.join("go-build");
        self.build(&programs::GRPC, &dir, |src, log| {
            let env = [("GOTOOLCHAIN", "local"), ("GOCACHE", path_str(&gocache)?)];
            run_go(src, log, &env, &["mod", "edit", &format!("-require={GRPC}@{version}")])?;
            run_go(src, log, &env, &["mod", "tidy"])?;
            run_go(src, log, &env, &["build", "-o", "../program.tmp", "."])
        })
    }

    /// Writes `program` into `dir/src` and runs `steps` there, unless `dir/program`
    /// is already built.
    fn build(&self, program: &Program, dir: &Path, steps: impl FnOnce(&Path, &Path) -> Result<()>) -> Result<Built> {
        let start = Instant::now();
        let binary = dir.join("program");
        if binary.is_file() {
            return Ok(Built { binary, cached: true, took: start.elapsed(), downloaded_toolchain: false });
        }
        let src = dir.join("src");
        remove_tree(&src);
        program.write_to(&src)?;
        let log = dir.join("build.log");
        std::fs::write(&log, "").with_context(|| format!("write {}", log.display()))?;
        steps(&src, &log)?;
        std::fs::rename(dir.join("program.tmp"), &binary).with_context(|| format!("rename to {}", binary.display()))?;
        Ok(Built { binary, cached: false, took: start.elapsed(), downloaded_toolchain: false })
    }

    /// Whether Go release `go` runs without a download: the machine's own Go, or a
    /// toolchain module in GOMODCACHE.
    fn has_toolchain(&self, go: &str) -> bool {
        go == self.go.version || self.toolchain_dir(go).exists()
    }

    fn toolchain_name(&self, go: &str) -> String {
        format!("v0.0.1-{go}.{}-{}", self.go.hostos, self.go.hostarch)
    }

    fn toolchain_dir(&self, go: &str) -> PathBuf {
        self.go.gomodcache.join(format!("golang.org/toolchain@{}", self.toolchain_name(go)))
    }

    /// Deletes a toolchain module this run downloaded: its extracted tree and its
    /// download-cache files (`.zip`, `.ziphash`, `.mod`, `.info`, `.lock`).
    fn drop_toolchain(&self, go: &str) {
        remove_tree(&self.toolchain_dir(go));
        let downloads = self.go.gomodcache.join("cache/download/golang.org/toolchain/@v");
        let prefix = format!("{}.", self.toolchain_name(go));
        if let Ok(entries) = std::fs::read_dir(&downloads) {
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().starts_with(&prefix) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }
}

fn path_str(p: &Path) -> Result<&str> {
    p.to_str().ok_or_else(|| anyhow!("{}: not UTF-8", p.display()))
}

/// Runs `go args...` in `dir` with `env` over a fixed base environment, appending
/// its output to `log`. The error is one line: the command and its last output line.
fn run_go(dir: &Path, log: &Path, env: &[(&str, &str)], args: &[&str]) -> Result<()> {
    let shown = format!("go {}", args.join(" "));
    let out = go_command(dir, env, args).output().with_context(|| format!("cannot run {shown}"))?;
    let mut f =
        std::fs::OpenOptions::new().append(true).open(log).with_context(|| format!("open {}", log.display()))?;
    let env_text: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    writeln!(f, "$ {} {shown}", env_text.join(" "))?;
    f.write_all(&out.stdout)?;
    f.write_all(&out.stderr)?;
    if out.status.success() {
        return Ok(());
    }
    let text = String::from_utf8_lossy(&out.stderr);
    let last = text.lines().map(str::trim).rfind(|l| !l.is_empty()).unwrap_or("no output");
    bail!("`{shown}` failed ({}): {last} (log: {})", out.status, log.display())
}

/// Runs `go args...` like [`run_go`] and returns its standard output.
fn go_output(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Result<String> {
    let out = go_command(dir, env, args).output().context("cannot run go")?;
    if !out.status.success() {
        bail!("go {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `go args...` in `dir`, with `env` over a fixed base environment.
fn go_command(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Command {
    let mut cmd = Command::new("go");
    cmd.args(args)
        .current_dir(dir)
        .env("CGO_ENABLED", "0")
        .env("GOFLAGS", "-mod=mod -buildvcs=false")
        .env("GOWORK", "off")
        .env_remove("GOOS")
        .env_remove("GOARCH")
        .env_remove("GOEXPERIMENT");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// Removes a directory tree, including the read-only trees of GOMODCACHE.
fn remove_tree(path: &Path) {
    if std::fs::symlink_metadata(path).is_err() {
        return;
    }
    if std::fs::remove_dir_all(path).is_ok() {
        return;
    }
    make_writable(path);
    if let Err(e) = std::fs::remove_dir_all(path) {
        tracing::warn!("cannot remove {}: {e}", path.display());
    }
}

fn make_writable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = std::fs::symlink_metadata(path) else { return };
    if meta.is_symlink() {
        return;
    }
    let mode = meta.permissions().mode();
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode | 0o700));
    if meta.is_dir() {
        if let Ok(entries) = std::fs::read_dir(path) {
            for e in entries.flatten() {
                make_writable(&e.path());
            }
        }
    }
}
