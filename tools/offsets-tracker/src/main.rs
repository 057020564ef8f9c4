//! `offsets-tracker` regenerates `offsets-db/offsets.json`, the versioned database of
//! Go struct field offsets that `gosight` uses for binaries without DWARF.
//!
//! The fields it measures are exactly `gosight_uprobes::tracked::tracked_fields()` — every
//! field a probe (or the itab reader) may read — and it reads them with the sidecar's
//! own DWARF code, so the database says what the sidecar would have read from an
//! unstripped build of the same versions. A run:
//!
//! 1. lists released versions through the Go module proxy (`$GOPROXY`, first http(s)
//!    entry): Go releases as `golang.org/toolchain` versions for this host's
//!    platform, grpc-go releases from `google.golang.org/grpc/@v/list` (no rc, beta,
//!    `-dev`, `-pre`), narrowed to a window (`--go-from/--go-to/--grpc-from/--grpc-to`,
//!    default Go `go1.22.0`.. and grpc `v1.60.0`.. up to the newest). The lists leave
//!    out some published releases (go1.24.12, grpc v1.74.0), so every patch release
//!    missing below the newest listed one of its minor release is asked for by its
//!    `@v/<version>.info`;
//! 2. skips versions the database already measured with every currently tracked
//!    field (`--force` redoes them);
//! 3. builds `programs/std` (which uses every tracked standard-library type) with
//!    `GOTOOLCHAIN=<release>` for each Go release, and records module `std`;
//! 4. builds `programs/grpc` (server, client, status, peer) with the machine's Go
//!    against each grpc release (`go mod edit -require` + `go mod tidy` in a copy),
//!    and records every non-std module the tracked structs belong to — grpc itself,
//!    and genproto's `googleapis/rpc` at the version that grpc release pulls in;
//! 5. folds the measurements into the database in a fixed order, writes its
//!    canonical text (`--out`, default the `--db` file), and prints a report of what
//!    changed (`--report FILE` also writes it, for a pull-request body).
//!
//! A struct that a program's DWARF does not describe is recorded as absent in that
//! version — right when the version has no such struct, wrong when the program
//! failed to use it. Every such struct is listed in the report with what the
//! sources say (`sources.rs`: `go list` names the files the build compiled, which
//! are searched for the declaration), the alarming case — declared, yet not in the
//! DWARF — first, for a human to fix `programs/`. A build that fails is reported in one line, not recorded, and makes the
//! run exit non-zero after the others are done. Built binaries are kept in
//! `--cache` so a rerun only reads their DWARF again. Results do not depend on job
//! order or `--jobs`.
//!
//! Modules: `proxy` (version lists), `programs` (the embedded Go sources),
//! `gobuild` (go commands, cache, toolchains), `measure` (DWARF → field values),
//! `sources` (why a struct is missing), `jobs` (plan, parallel runs, merge),
//! `report` (what changed).
//!
//! `.github/workflows/offsets.yml` runs this daily and opens a pull request when the
//! file changes; `tests/window.rs` checks a small window against the committed file.

mod gobuild;
mod jobs;
mod measure;
mod programs;
mod proxy;
mod report;
mod sources;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, ValueEnum};
use gosight_offsets_db::{Database, STD};

use gobuild::{Builder, GoEnv};
use jobs::Job;
use proxy::{Proxy, GRPC};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Only {
    Std,
    Grpc,
}

/// Regenerates the offsets database from real toolchains and grpc-go releases.
#[derive(Debug, Parser)]
#[command(name = "offsets-tracker", version)]
struct Cli {
    /// The database to start from (a missing file starts empty).
    #[arg(long, value_name = "PATH", default_value_os_t = default_db())]
    db: PathBuf,
    /// Start from an empty database, whatever --db holds.
    #[arg(long)]
    db_empty: bool,
    /// Where to write the result [default: the --db file].
    #[arg(long, value_name = "PATH")]
    out: Option<PathBuf>,
    /// Build directories and binaries, kept between runs
    /// [default: ~/.cache/gosight/offsets-tracker].
    #[arg(long, value_name = "DIR")]
    cache: Option<PathBuf>,
    /// Only measure the standard library or only grpc.
    #[arg(long, value_enum)]
    only: Option<Only>,
    /// Oldest Go release to measure.
    #[arg(long, value_name = "VERSION", default_value = "go1.22.0")]
    go_from: String,
    /// Newest Go release to measure [default: the newest release].
    #[arg(long, value_name = "VERSION")]
    go_to: Option<String>,
    /// Oldest grpc-go release to measure.
    #[arg(long, value_name = "VERSION", default_value = "v1.60.0")]
    grpc_from: String,
    /// Newest grpc-go release to measure [default: the newest release].
    #[arg(long, value_name = "VERSION")]
    grpc_to: Option<String>,
    /// Measure versions the database already holds, too.
    #[arg(long)]
    force: bool,
    /// Builds run at once.
    #[arg(short, long, value_name = "N", default_value_t = 1)]
    jobs: usize,
    /// Delete each Go toolchain this run downloaded once its build is done (for
    /// small disks: every toolchain is ~250 MB).
    #[arg(long)]
    drop_toolchains: bool,
    /// Also write the report (Markdown) to this file.
    #[arg(long, value_name = "PATH")]
    report: Option<PathBuf>,
    /// List what would be built, build nothing, write nothing.
    #[arg(long)]
    dry_run: bool,
    /// Print every tracked field of one Go binary (module version and offset), then exit.
    #[arg(long, value_name = "BINARY", conflicts_with_all = ["summary", "dry_run"])]
    inspect: Option<PathBuf>,
    /// Print the --db database's versions and the fields whose offsets differ between
    /// versions, then exit.
    #[arg(long)]
    summary: bool,
}

/// `offsets-db/offsets.json` of the workspace this tracker was built in.
fn default_db() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().and_then(Path::parent).unwrap_or(manifest).join("offsets-db/offsets.json")
}

fn default_cache() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("gosight/offsets-tracker")
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .without_time()
        .init();
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("offsets-tracker: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn load_db(cli: &Cli) -> Result<Database> {
    if cli.db_empty {
        tracing::info!("starting from an empty database (--db-empty)");
        return Ok(Database::default());
    }
    match std::fs::read_to_string(&cli.db) {
        Ok(text) => Database::from_json(&text).with_context(|| format!("{}", cli.db.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            tracing::info!("{} does not exist: starting from an empty database", cli.db.display());
            Ok(Database::default())
        }
        Err(e) => Err(e).with_context(|| format!("read {}", cli.db.display())),
    }
}

/// The versions in the windows, as jobs, each with whether the database holds it.
/// Besides the proxy's lists, patch releases missing from them are asked for one by
/// one ([`proxy::gaps`]), in the window only.
fn plan(cli: &Cli, proxy: &Proxy, go: &GoEnv, db: &Database) -> Result<(Vec<Job>, Vec<String>)> {
    let mut jobs = Vec::new();
    let mut lines = Vec::new();
    let mut add = |what: &str, versions: Vec<String>, unlisted: Vec<String>, make: fn(&str) -> Option<Job>| {
        let mut all: Vec<Job> = versions.iter().chain(&unlisted).filter_map(|v| make(v)).collect();
        all.sort();
        let todo: Vec<Job> = all.iter().filter(|j| cli.force || !j.measured_in(db)).cloned().collect();
        let (first, last) = (all.first().map_or("-", Job::version), all.last().map_or("-", Job::version));
        let extra = if unlisted.is_empty() {
            String::new()
        } else {
            format!(" ({} not in the proxy's list: {})", unlisted.len(), unlisted.join(", "))
        };
        lines.push(format!(
            "- {what}: {} release(s) in the window ({first} .. {last}){extra}, {} already measured, {} to build",
            all.len(),
            all.len() - todo.len(),
            todo.len()
        ));
        jobs.extend(todo);
    };
    if cli.only != Some(Only::Grpc) {
        let (from, to) = (Some(cli.go_from.as_str()), cli.go_to.as_deref());
        let releases = proxy.go_releases(&go.hostos, &go.hostarch)?;
        let candidates = proxy::window(STD, &proxy::gaps(STD, &releases), from, to)?;
        let unlisted = proxy.unlisted_go_releases(&candidates, &go.hostos, &go.hostarch)?;
        add("std (Go)", proxy::window(STD, &releases, from, to)?, unlisted, Job::std);
    }
    if cli.only != Some(Only::Std) {
        let (from, to) = (Some(cli.grpc_from.as_str()), cli.grpc_to.as_deref());
        let releases = proxy.module_releases(GRPC)?;
        let candidates = proxy::window(GRPC, &proxy::gaps(GRPC, &releases), from, to)?;
        let unlisted = proxy.unlisted_module_releases(GRPC, &candidates)?;
        add("grpc", proxy::window(GRPC, &releases, from, to)?, unlisted, Job::grpc);
    }
    Ok((jobs, lines))
}

fn run(cli: Cli) -> Result<ExitCode> {
    if let Some(bin) = &cli.inspect {
        print!("{}", measure::describe(bin)?);
        return Ok(ExitCode::SUCCESS);
    }
    let old = load_db(&cli)?;
    if cli.summary {
        for line in report::summary(&old) {
            println!("{line}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let go = GoEnv::detect()?;
    let proxy = Proxy::new(proxy::choose_proxy(Some(&go.goproxy)))?;
    tracing::info!("module proxy {}, module builds with {}", proxy.base(), go.version);
    let (jobs, plan_lines) = plan(&cli, &proxy, &go, &old)?;
    for l in &plan_lines {
        tracing::info!("{}", l.trim_start_matches("- "));
    }
    if cli.dry_run {
        for j in &jobs {
            println!("{}", j.name());
        }
        return Ok(ExitCode::SUCCESS);
    }

    let cache = cli.cache.clone().unwrap_or_else(default_cache);
    std::fs::create_dir_all(&cache).with_context(|| format!("create {}", cache.display()))?;
    let started = std::time::Instant::now();
    let builder = Builder::new(go.clone(), cache, cli.drop_toolchains);
    let outcome = jobs::run_all(jobs, &builder, cli.jobs);

    let mut db = old.clone();
    let merged = jobs::merge(&mut db, &outcome)?;
    let out = cli.out.clone().unwrap_or_else(|| cli.db.clone());
    write_atomically(&out, &db.to_json())?;

    let mut text = String::from("## offsets-tracker report\n\n");
    text.push_str(&format!(
        "Go releases and grpc-go releases from {}; module builds with {}; {} build(s), {} failed, {:.0} s.\n\n",
        proxy.base(),
        go.version,
        outcome.measured.len() + outcome.failed.len(),
        outcome.failed.len(),
        started.elapsed().as_secs_f64()
    ));
    section(&mut text, "Plan", &plan_lines);
    let mut changes = report::diff(&old, &db);
    if changes.is_empty() {
        changes.push("- none".into());
    }
    section(&mut text, "Changes", &changes);
    section(
        &mut text,
        "Tracked structs not in DWARF (recorded absent)",
        &report::missing(&merged.measured, &merged.missing),
    );
    if report::any_declared(&merged.missing) {
        tracing::warn!("some structs are declared in the sources but not in the programs' DWARF: see the report");
    }
    section(&mut text, "Notes", &merged.notes);
    let failures: Vec<String> = outcome.failed.iter().map(|(j, e)| format!("- {}: {e}", j.name())).collect();
    section(&mut text, "Failures (not recorded)", &failures);
    print!("{text}");
    if let Some(path) = &cli.report {
        std::fs::write(path, &text).with_context(|| format!("write {}", path.display()))?;
    }
    tracing::info!("wrote {}", out.display());
    Ok(if outcome.failed.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn section(text: &mut String, title: &str, lines: &[impl AsRef<str>]) {
    if lines.is_empty() {
        return;
    }
    text.push_str(&format!("### {title}\n\n"));
    for l in lines {
        text.push_str(l.as_ref());
        text.push('\n');
    }
    text.push('\n');
}

fn write_atomically(path: &Path, text: &str) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    std::fs::write(&tmp, text).with_context(|| format!("write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("rename {} to {}", tmp.display(), path.display()))
}
