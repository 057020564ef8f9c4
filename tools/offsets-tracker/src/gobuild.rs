//! Building the programs with the `go` command, and the cache that makes reruns cheap.
//!
//! Cache layout (`--cache DIR`):
//!
//! ```text
//! DIR/std-<program fingerprint>/go1.22.0/{src/, build.log, program}
//! DIR/std-<program fingerprint>/go1.26.8+jsonv2/...       built with GOEXPERIMENT=jsonv2
//! DIR/<short>-<program fingerprint>-<local go>/v1.60.0/... a module (`grpc`, ...) at a release
//! DIR/go-build/                        GOCACHE of the module builds
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

use gosight_uprobes::GoModule;

use crate::jobs::Job;
use crate::programs::{self, Program};

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

    /// The standard-library program built with Go release `go` (`go1.22.0`), with
    /// GOEXPERIMENT `experiment` if given. Call [`Builder::done_with`] after reading
    /// what else is needed from the toolchain.
    pub fn std(&self, go: &str, experiment: Option<&str>) -> Result<Built> {
        let dir = self.std_dir(go, experiment);
        let gocache = dir.join("gocache");
        let result = self.build(&programs::STD, &dir, |src, log| {
            let mut env = vec![("GOTOOLCHAIN", go), ("GOCACHE", path_str(&gocache)?)];
            env.extend(experiment.map(|e| ("GOEXPERIMENT", e)));
            run_go(src, log, &env, &["build", "-o", "../program.tmp", "."])
        });
        remove_tree(&gocache);
        result
    }

    /// Drops the toolchain of Go release `go` if this run downloaded it and was asked
    /// to drop what it downloaded.
    pub fn done_with(&self, go: &str, downloaded: bool) {
        if self.drop_toolchains && downloaded {
            self.drop_toolchain(go);
        }
    }

    fn std_dir(&self, go: &str, experiment: Option<&str>) -> PathBuf {
        self.cache.join(format!("{}-{}", programs::STD.name, programs::STD.fingerprint())).join(variant(go, experiment))
    }

    fn module_dir(&self, module: &GoModule, version: &str, experiment: Option<&str>) -> PathBuf {
        let program = Program::of(module);
        let kind = format!("{}-{}-{}", program.name, program.fingerprint(), self.go.version);
        self.cache.join(kind).join(variant(version, experiment))
    }

    /// The packages of `job`'s plain build, as [`list_packages`] sees them; `None`
    /// once a Go release's toolchain is gone (dropped or never fetched).
    pub fn packages(&self, job: &Job, packages: &[&str]) -> Option<Vec<Package>> {
        match job {
            Job::Std(_, go) => {
                if !self.has_toolchain(go) {
                    return None;
                }
                self.list_packages(&self.std_dir(go, None).join("src"), go, packages)
            }
            Job::Module(m, _, v) => self.list_packages(&self.module_dir(m, v, None).join("src"), "local", packages),
        }
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

    /// The module's program built against `version` of `module` with the machine's
    /// Go, with GOEXPERIMENT `experiment` if given.
    pub fn module(&self, module: &GoModule, version: &str, experiment: Option<&str>) -> Result<Built> {
        let dir = self.module_dir(module, version, experiment);
        let gocache = self.cache.join("go-build");
        self.build(&Program::of(module), &dir, |src, log| {
            let mut env = vec![("GOTOOLCHAIN", "local"), ("GOCACHE", path_str(&gocache)?)];
            env.extend(experiment.map(|e| ("GOEXPERIMENT", e)));
            run_go(src, log, &env, &["mod", "edit", &format!("-require={}@{version}", module.path)])?;
            run_go(src, log, &env, &["mod", "tidy"])?;
            run_go(src, log, &env, &["build", "-o", "../program.tmp", "."])
        })
    }

    /// The GOEXPERIMENT tokens toolchain `go` (a release, or `local`) knows, each
    /// as build info names a build with it: the experiments off by default by name
    /// (`jsonv2`), those on by default with a `no` prefix (`nogreenteagc`). Read
    /// from `go doc -short internal/goexperiment`, whose constants carry the
    /// toolchain's defaults (`const JSONv2 = false`).
    pub fn experiments(&self, go: &str) -> Result<Vec<String>> {
        let out = go_output(&self.cache, &[("GOTOOLCHAIN", go)], &["doc", "-short", "internal/goexperiment"])?;
        let tokens = experiment_tokens(&out);
        if tokens.is_empty() {
            bail!("go doc internal/goexperiment ({go}) lists no experiments");
        }
        Ok(tokens)
    }

    /// Writes `program` into `dir/src` and runs `steps` there, unless `dir/program`
    /// is already built.
    fn build(&self, program: &Program, dir: &Path, steps: impl FnOnce(&Path, &Path) -> Result<()>) -> Result<Built> {
        let start = Instant::now();
        let binary = dir.join("program");
        if binary.is_file() {
            return Ok(Built { binary, cached: true, took: start.elapsed() });
        }
        let src = dir.join("src");
        remove_tree(&src);
        program.write_to(&src)?;
        let log = dir.join("build.log");
        std::fs::write(&log, "").with_context(|| format!("write {}", log.display()))?;
        steps(&src, &log)?;
        std::fs::rename(dir.join("program.tmp"), &binary).with_context(|| format!("rename to {}", binary.display()))?;
        Ok(Built { binary, cached: false, took: start.elapsed() })
    }

    /// Whether Go release `go` runs without a download: the machine's own Go, or a
    /// toolchain module in GOMODCACHE.
    pub fn has_toolchain(&self, go: &str) -> bool {
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

/// A build's directory name: the version, `+<experiment>` for a build with one.
fn variant(version: &str, experiment: Option<&str>) -> String {
    match experiment {
        Some(e) => format!("{version}+{e}"),
        None => version.to_string(),
    }
}

/// The tokens of `go doc -short internal/goexperiment` output (see [`Builder::experiments`]).
pub fn experiment_tokens(doc: &str) -> Vec<String> {
    let mut out: Vec<String> = doc
        .lines()
        .filter_map(|l| {
            let (name, value) = l.trim().strip_prefix("const ")?.split_once(" = ")?;
            let name = name.to_ascii_lowercase();
            match value.trim() {
                "false" => Some(name),
                "true" => Some(format!("no{name}")),
                _ => None,
            }
        })
        .collect();
    out.sort();
    out
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn experiment_tokens_from_go_doc() {
        let doc = "const Arenas = false\nconst ArenasInt = 0\nconst GreenTeaGC = true\nconst GreenTeaGCInt = 1\n\
                   const JSONv2 = false\nconst JSONv2Int = 0\ntype Flags struct{ ... }\n";
        assert_eq!(experiment_tokens(doc), ["arenas", "jsonv2", "nogreenteagc"]);
        assert_eq!(variant("go1.26.8", Some("jsonv2")), "go1.26.8+jsonv2");
        assert_eq!(variant("v1.60.0", None), "v1.60.0");
    }
}
