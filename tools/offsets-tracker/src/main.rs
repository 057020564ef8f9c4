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
//!    platform, and the releases of every third-party module the probes read —
//!    `gosight_uprobes::modules()`, each a `GoModule` (path, short name, oldest
//!    release, program) in its probe's folder, e.g. grpc-go from
//!    `google.golang.org/grpc/@v/list` (no rc, beta, `-dev`, `-pre`) — narrowed to
//!    a window (`--go-from/--go-to`, `--from/--to SHORT=VERSION`; by default Go
//!    `go1.22.0`.. and each module's `oldest`.., up to the newest). The lists leave
//!    out some published releases (go1.24.12, grpc v1.74.0), so every patch release
//!    missing below the newest listed one of its minor release is asked for by its
//!    `@v/<version>.info`;
//! 2. skips versions the database already measured with every currently tracked
//!    field (`--force` redoes them);
//! 3. builds `programs/std` (which uses every tracked standard-library type) with
//!    `GOTOOLCHAIN=<release>` for each Go release, and records module `std`;
//! 4. builds each module's program with the machine's Go against each of its
//!    releases (`go mod edit -require` + `go mod tidy` in a copy), and records every
//!    non-std module the tracked structs belong to — the module itself, and e.g.
//!    genproto's `googleapis/rpc` at the version a grpc release pulls in;
//! 5. repeats the builds of Go releases from `--experiments-from` (default
//!    go1.25.0; `--experiments-in` says which programs, default `std`) with each
//!    GOEXPERIMENT the toolchain knows (`--experiments`), and records in the
//!    database's experiment layer the fields each one moves (usually none);
//! 6. folds the measurements into the database in a fixed order, writes its
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

use anyhow::{bail, Context, Result};
use clap::Parser;
use gosight_offsets_db::{Database, Key, STD};
use gosight_uprobes::GoModule;

use gobuild::{Builder, GoEnv};
use jobs::{Experiments, Job, Work};
use proxy::Proxy;

/// Regenerates the offsets database from real Go toolchains and releases of the
/// third-party modules the probes read (`gosight_uprobes::modules()`).
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
    /// Only measure these: `std` (the standard library, by Go release) or a module's
    /// short name (see --list-modules). Repeatable or comma separated [default: all].
    #[arg(long, value_name = "NAME", value_delimiter = ',')]
    only: Vec<String>,
    /// Oldest Go release to measure.
    #[arg(long, value_name = "VERSION", default_value = "go1.22.0")]
    go_from: String,
    /// Newest Go release to measure [default: the newest release].
    #[arg(long, value_name = "VERSION")]
    go_to: Option<String>,
    /// Oldest release of a module to measure, as SHORT=VERSION (`grpc=v1.69.2`);
    /// repeatable [default: the module's oldest covered release].
    #[arg(long, value_name = "SHORT=VERSION")]
    from: Vec<String>,
    /// Newest release of a module to measure, as SHORT=VERSION; repeatable
    /// [default: the newest release].
    #[arg(long, value_name = "SHORT=VERSION")]
    to: Vec<String>,
    /// GOEXPERIMENTs to repeat builds with: `all` (every experiment the toolchain
    /// knows, named as build info names it: `jsonv2`, `nogreenteagc`), `none`, or a
    /// comma-separated list of tokens.
    #[arg(long, value_name = "all|none|LIST", default_value = "all")]
    experiments: String,
    /// Oldest Go release whose builds are repeated with GOEXPERIMENTs (for modules:
    /// the machine's Go, which builds them).
    #[arg(long, value_name = "VERSION", default_value = "go1.25.0")]
    experiments_from: String,
    /// Which builds are repeated with GOEXPERIMENTs: `std` and/or module short names;
    /// repeatable or comma separated.
    #[arg(long, value_name = "NAME", value_delimiter = ',', default_value = "std")]
    experiments_in: Vec<String>,
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
    /// Print the modules the tracker measures (short name, path, oldest release), then exit.
    #[arg(long)]
    list_modules: bool,
}

/// A module's window bound from `--from`/`--to` (`SHORT=VERSION`).
fn bound<'a>(args: &'a [String], module: &GoModule) -> Option<&'a str> {
    args.iter().filter_map(|a| a.split_once('=')).find(|(s, _)| *s == module.short).map(|(_, v)| v)
}

/// Checks the names the command line uses: `--only` and `--experiments-in` take
/// `std` or a module's short name, `--from`/`--to` a module's short name.
fn check_names(cli: &Cli, modules: &[&'static GoModule]) -> Result<()> {
    let known = || {
        let mut names = vec![STD];
        names.extend(modules.iter().map(|m| m.short));
        names.join(", ")
    };
    let is_module = |n: &str| modules.iter().any(|m| m.short == n);
    for n in cli.only.iter().chain(&cli.experiments_in) {
        if n != STD && !is_module(n) {
            bail!("unknown name {n:?} (known: {})", known());
        }
    }
    for a in cli.from.iter().chain(&cli.to) {
        match a.split_once('=') {
            Some((s, v)) if is_module(s) && !v.is_empty() => {}
            _ => bail!("{a:?}: expected SHORT=VERSION with SHORT one of the modules ({})", known()),
        }
    }
    Ok(())
}

fn wanted(cli: &Cli, name: &str) -> bool {
    cli.only.is_empty() || cli.only.iter().any(|n| n == name)
}

/// The GOEXPERIMENTs a job is repeated with, if any (`go` is the Go release that
/// builds it).
fn experiments_for(cli: &Cli, name: &str, go: &str) -> Result<Option<Experiments>> {
    if cli.experiments == "none" || !cli.experiments_in.iter().any(|n| n == name) {
        return Ok(None);
    }
    let from = Key::parse(STD, &cli.experiments_from)
        .with_context(|| format!("--experiments-from {:?} is not a Go release", cli.experiments_from))?;
    if Key::parse(STD, go).is_none_or(|k| k < from) {
        return Ok(None);
    }
    if cli.experiments == "all" {
        return Ok(Some(Experiments::All));
    }
    let tokens: Vec<String> = cli.experiments.split(',').map(|t| t.trim().to_string()).collect();
    if let Some(bad) = tokens.iter().find(|t| !gosight_offsets_db::version::is_experiment(t)) {
        bail!("--experiments: {bad:?} is not a GOEXPERIMENT name (all, none or a list such as jsonv2,nogreenteagc)");
    }
    Ok(Some(Experiments::Listed(tokens)))
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

/// The versions in the windows, as work, each with whether the database holds it.
/// Besides the proxy's lists, patch releases missing from them are asked for one by
/// one ([`proxy::gaps`]), in the window only.
fn plan(cli: &Cli, proxy: &Proxy, go: &GoEnv, db: &Database) -> Result<(Vec<Work>, Vec<String>)> {
    let mut work = Vec::new();
    let mut lines = Vec::new();
    let mut add = |what: &str, versions: Vec<String>, unlisted: Vec<String>, make: &dyn Fn(&str) -> Option<Job>| {
        let mut all: Vec<Job> = versions.iter().chain(&unlisted).filter_map(|v| make(v)).collect();
        all.sort();
        let (name, _) = what.split_once(' ').unwrap_or((what, ""));
        let mut todo = Vec::new();
        let mut with_experiments = 0;
        for job in &all {
            let builder_go = match job {
                Job::Std(_, v) => v.as_str(),
                Job::Module(..) => go.version.as_str(),
            };
            let plain = cli.force || !job.measured_in(db);
            let skip = if cli.force { Vec::new() } else { job.experiments_in(db) };
            let experiments = match experiments_for(cli, name, builder_go)? {
                // `all`: a version measured with some experiment was measured with all.
                Some(Experiments::All) if !skip.is_empty() => None,
                Some(Experiments::Listed(l)) if l.iter().all(|t| skip.contains(t)) => None,
                e => e,
            };
            with_experiments += usize::from(experiments.is_some());
            if plain || experiments.is_some() {
                todo.push(Work { job: job.clone(), plain, experiments, skip });
            }
        }
        let (first, last) = (all.first().map_or("-", Job::version), all.last().map_or("-", Job::version));
        let extra = if unlisted.is_empty() {
            String::new()
        } else {
            format!(" ({} not in the proxy's list: {})", unlisted.len(), unlisted.join(", "))
        };
        let plain = todo.iter().filter(|w| w.plain).count();
        lines.push(format!(
            "- {what}: {} release(s) in the window ({first} .. {last}){extra}, {} already measured, {plain} to build, \
             {with_experiments} to build with GOEXPERIMENTs",
            all.len(),
            all.len() - plain,
        ));
        work.extend(todo);
        Ok::<(), anyhow::Error>(())
    };
    if wanted(cli, STD) {
        let (from, to) = (Some(cli.go_from.as_str()), cli.go_to.as_deref());
        let releases = proxy.go_releases(&go.hostos, &go.hostarch)?;
        let candidates = proxy::window(STD, &proxy::gaps(STD, &releases), from, to)?;
        let unlisted = proxy.unlisted_go_releases(&candidates, &go.hostos, &go.hostarch)?;
        add("std (Go)", proxy::window(STD, &releases, from, to)?, unlisted, &Job::std)?;
    }
    for m in gosight_uprobes::modules() {
        if !wanted(cli, m.short) {
            continue;
        }
        let (from, to) = (bound(&cli.from, m).or(Some(m.oldest)), bound(&cli.to, m));
        let releases = proxy.module_releases(m.path)?;
        let candidates = proxy::window(m.path, &proxy::gaps(m.path, &releases), from, to)?;
        let unlisted = proxy.unlisted_module_releases(m.path, &candidates)?;
        let what = format!("{} ({})", m.short, m.path);
        add(&what, proxy::window(m.path, &releases, from, to)?, unlisted, &|v| Job::module(m, v))?;
    }
    Ok((work, lines))
}

fn run(cli: Cli) -> Result<ExitCode> {
    if let Some(bin) = &cli.inspect {
        print!("{}", measure::describe(bin)?);
        return Ok(ExitCode::SUCCESS);
    }
    let modules = gosight_uprobes::modules();
    if cli.list_modules {
        for m in &modules {
            println!("{}\t{}\t{}", m.short, m.path, m.oldest);
        }
        return Ok(ExitCode::SUCCESS);
    }
    check_names(&cli, &modules)?;
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
    let (work, plan_lines) = plan(&cli, &proxy, &go, &old)?;
    for l in &plan_lines {
        tracing::info!("{}", l.trim_start_matches("- "));
    }
    if cli.dry_run {
        for w in &work {
            println!("{}", w.describe());
        }
        return Ok(ExitCode::SUCCESS);
    }

    let cache = cli.cache.clone().unwrap_or_else(default_cache);
    std::fs::create_dir_all(&cache).with_context(|| format!("create {}", cache.display()))?;
    let started = std::time::Instant::now();
    let builder = Builder::new(go.clone(), cache, cli.drop_toolchains);
    let outcome = jobs::run_all(work, &builder, cli.jobs);

    let mut db = old.clone();
    let merged = jobs::merge(&mut db, &outcome)?;
    let out = cli.out.clone().unwrap_or_else(|| cli.db.clone());
    write_atomically(&out, &db.to_json())?;

    let mut text = String::from("## offsets-tracker report\n\n");
    let paths: Vec<&str> = modules.iter().filter(|m| wanted(&cli, m.short)).map(|m| m.path).collect();
    let what = if wanted(&cli, STD) { vec!["Go"] } else { Vec::new() }.into_iter().chain(paths).collect::<Vec<_>>();
    text.push_str(&format!(
        "Releases of {} from {}; module builds with {}; {} job(s), {} failed, {:.0} s.\n\n",
        what.join(", "),
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
    section(&mut text, "GOEXPERIMENTs measured (fields they move)", &report::experiments(&merged.experiments));
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
