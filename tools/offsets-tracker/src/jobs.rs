//! Which builds a run does, running them (optionally in parallel), and folding their
//! measurements into the database in a fixed order.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::Result;
use gosight_offsets_db::{Database, Key, STD};
use gosight_uprobes::GoModule;

use crate::gobuild::{Builder, Package};
use crate::measure::{self, Keep, Measurement};
use crate::sources::{self, Verdict};

/// One build target: the standard library with a Go release, or a third-party
/// module (described by its [`GoModule`]) at one of its releases.
#[derive(Debug, Clone)]
pub enum Job {
    Std(Key, String),
    Module(&'static GoModule, Key, String),
}

impl PartialEq for Job {
    fn eq(&self, other: &Job) -> bool {
        self.cmp(other).is_eq()
    }
}

impl Eq for Job {}

impl PartialOrd for Job {
    fn partial_cmp(&self, other: &Job) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// The standard library first, then modules by path; versions ascending.
impl Ord for Job {
    fn cmp(&self, other: &Job) -> std::cmp::Ordering {
        let key = |j: &Job| match j {
            Job::Std(k, v) => (0, "", k.clone(), v.clone()),
            Job::Module(m, k, v) => (1, m.path, k.clone(), v.clone()),
        };
        key(self).cmp(&key(other))
    }
}

impl Job {
    pub fn std(version: &str) -> Option<Job> {
        Some(Job::Std(Key::parse(STD, version)?, version.into()))
    }

    pub fn module(module: &'static GoModule, version: &str) -> Option<Job> {
        Some(Job::Module(module, Key::parse(module.path, version)?, version.into()))
    }

    /// The database's module key: `std` or the module path.
    pub fn module_path(&self) -> &'static str {
        match self {
            Job::Std(..) => STD,
            Job::Module(m, ..) => m.path,
        }
    }

    pub fn version(&self) -> &str {
        match self {
            Job::Std(_, v) | Job::Module(_, _, v) => v,
        }
    }

    /// `std go1.22.0`, `<short> v1.60.0`.
    pub fn name(&self) -> String {
        match self {
            Job::Std(_, v) => format!("std {v}"),
            Job::Module(m, _, v) => format!("{} {v}", m.short),
        }
    }

    /// Whether the database already holds everything the plain build would measure.
    pub fn measured_in(&self, db: &Database) -> bool {
        let module = self.module_path();
        if !measure::covers(db, module, self.version(), &measure::tracked_for(module)) {
            return false;
        }
        match self {
            Job::Std(..) => true,
            Job::Module(..) => measure::covered_elsewhere(db, &measure::tracked_elsewhere(module)),
        }
    }

    /// The GOEXPERIMENT tokens the database holds for this version.
    pub fn experiments_in(&self, db: &Database) -> Vec<String> {
        let (module, version) = (self.module_path(), self.version());
        db.experiments().filter(|e| db.experiment_versions(e, module).contains(&version)).map(str::to_string).collect()
    }
}

/// Which GOEXPERIMENTs a build is repeated with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Experiments {
    /// Every experiment the toolchain knows, each with the value that differs from
    /// its default (`jsonv2`, `nogreenteagc`): what build info would name.
    All,
    /// These tokens.
    Listed(Vec<String>),
}

/// One unit of work: a job's plain build (unless the database has it) and its
/// builds with GOEXPERIMENTs.
#[derive(Debug, Clone)]
pub struct Work {
    pub job: Job,
    pub plain: bool,
    pub experiments: Option<Experiments>,
    /// Tokens already measured for this version (not built again).
    pub skip: Vec<String>,
}

impl Work {
    /// What the work builds, for `--dry-run` and the log.
    pub fn describe(&self) -> String {
        let exps = match &self.experiments {
            None => None,
            Some(Experiments::All) => Some("every GOEXPERIMENT".to_string()),
            Some(Experiments::Listed(l)) => Some(format!("GOEXPERIMENT {}", l.join(", "))),
        };
        match (self.plain, exps) {
            (true, None) => self.job.name(),
            (true, Some(e)) => format!("{} (and with {e})", self.job.name()),
            (false, Some(e)) => format!("{} (only with {e})", self.job.name()),
            (false, None) => format!("{} (nothing)", self.job.name()),
        }
    }
}

/// What one piece of work measured.
#[derive(Debug, Default)]
pub struct Measured {
    pub plain: Option<Measurement>,
    /// Per GOEXPERIMENT token, what the build with it measured.
    pub experiments: Vec<(String, Measurement)>,
    /// Experiments that could not be measured (one line each).
    pub notes: Vec<String>,
}

impl Work {
    fn run(&self, builder: &Builder) -> Result<(Measured, String)> {
        let job = &self.job;
        let (module, version) = (job.module_path(), job.version());
        let (keep, toolchain) = match job {
            Job::Std(..) => (Keep::Std, version.to_string()),
            Job::Module(..) => (Keep::Modules, "local".to_string()),
        };
        let downloaded = matches!(job, Job::Std(..)) && !builder.has_toolchain(version);
        let build = |exp: Option<&str>| match job {
            Job::Std(_, v) => builder.std(v, exp),
            Job::Module(m, _, v) => builder.module(m, v, exp),
        };
        let result = (|| {
            let mut out = Measured::default();
            let mut lines = Vec::new();
            if self.plain {
                let built = build(None)?;
                let m = measure::measure(&built.binary, keep, (module, version), None)?;
                let m = judge(m, |pkgs| builder.packages(job, pkgs));
                lines.push(describe(&built, &m));
                out.plain = Some(m);
            }
            let tokens = match &self.experiments {
                None => Vec::new(),
                Some(Experiments::Listed(l)) => l.clone(),
                Some(Experiments::All) => builder.experiments(&toolchain)?,
            };
            let mut done = Vec::new();
            for token in tokens.iter().filter(|t| !self.skip.contains(t)) {
                let measured = build(Some(token))
                    .and_then(|b| measure::measure(&b.binary, keep, (module, version), Some(token)).map(|m| (b, m)));
                match measured {
                    Ok((b, m)) => {
                        done.push(format!("{token}{}", if b.cached { " (cached)" } else { "" }));
                        out.experiments.push((token.clone(), m));
                    }
                    Err(e) => {
                        let line = format!("{e:#}").replace('\n', " ");
                        out.notes.push(format!("- {} with GOEXPERIMENT={token}: not measured: {line}", job.name()));
                    }
                }
            }
            if !done.is_empty() || !out.notes.is_empty() {
                lines.push(format!(
                    "GOEXPERIMENT: {} measured ({}), {} not",
                    done.len(),
                    done.join(", "),
                    out.notes.len()
                ));
            }
            Ok((out, lines.join("; ")))
        })();
        if let Job::Std(_, v) = job {
            builder.done_with(v, downloaded);
        }
        result
    }
}

fn describe(built: &crate::gobuild::Built, m: &Measurement) -> String {
    let how = if built.cached { "cached build".to_string() } else { format!("built in {}", secs(built.took)) };
    let records: Vec<String> =
        m.records.iter().map(|((module, v), f)| format!("{module} {v}: {} fields", f.len())).collect();
    let missing =
        if m.missing.is_empty() { String::new() } else { format!(", {} struct(s) not in DWARF", m.missing.len()) };
    format!("{how}; {}{missing}", records.join(", "))
}

/// Asks the compiled sources about every struct missing from the DWARF.
fn judge(mut m: Measurement, list: impl FnOnce(&[&str]) -> Option<Vec<Package>>) -> Measurement {
    if m.missing.is_empty() {
        return m;
    }
    let packages = sources::packages_of(m.missing.keys().map(|(_, _, s)| s.as_str()));
    let listed = if packages.is_empty() { Some(Vec::new()) } else { list(&packages) };
    for ((_, _, s), verdict) in m.missing.iter_mut() {
        *verdict = sources::verdict(listed.as_deref(), s);
    }
    m
}

fn secs(d: Duration) -> String {
    format!("{:.0}s", d.as_secs_f64())
}

/// Everything a run produced.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Measured jobs, in job order.
    pub measured: Vec<(Job, Measured)>,
    /// `(job, one-line error)`, in job order.
    pub failed: Vec<(Job, String)>,
}

/// Runs `work` on `parallel` threads. Logs one line per job as it finishes; the
/// outcome is sorted by job, whatever order they finished in.
pub fn run_all(work: Vec<Work>, builder: &Builder, parallel: usize) -> Outcome {
    let total = work.len();
    let queue = Mutex::new(work.into_iter().collect::<VecDeque<_>>());
    let done = Mutex::new((0usize, Outcome::default()));
    std::thread::scope(|scope| {
        for _ in 0..parallel.clamp(1, total.max(1)) {
            scope.spawn(|| loop {
                let Some(w) = queue.lock().unwrap().pop_front() else { break };
                let result = w.run(builder);
                let mut done = done.lock().unwrap();
                done.0 += 1;
                let n = done.0;
                match result {
                    Ok((m, line)) => {
                        tracing::info!("[{n}/{total}] {}: {line}", w.job.name());
                        done.1.measured.push((w.job, m));
                    }
                    Err(e) => {
                        let line = format!("{e:#}").replace('\n', " ");
                        tracing::error!("[{n}/{total}] {}: FAILED: {line}", w.job.name());
                        done.1.failed.push((w.job, line));
                    }
                }
            });
        }
    });
    let mut outcome = done.into_inner().unwrap().1;
    outcome.measured.sort_by(|a, b| a.0.cmp(&b.0));
    outcome.failed.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
    outcome
}

/// A module version measured with a GOEXPERIMENT: `(module, version, fields it moves)`.
pub type ExperimentBuild = (String, String, Vec<(String, String)>);

/// What folding measurements into a database noticed.
#[derive(Debug, Default)]
pub struct Merged {
    /// Versions measured in this run, per module.
    pub measured: BTreeMap<String, Vec<String>>,
    /// `(module, version, struct)` not in DWARF, with what the sources say.
    pub missing: BTreeMap<(String, String, String), Verdict>,
    /// Per GOEXPERIMENT token, `(module, version)` measured with it in this run and
    /// the fields it moves there.
    pub experiments: BTreeMap<String, Vec<ExperimentBuild>>,
    /// One line each: unowned structs, disagreeing measurements of one module
    /// version, experiments that could not be measured.
    pub notes: Vec<String>,
}

/// Records every measurement into `db`: plain builds first, then the builds with
/// GOEXPERIMENTs, each as the fields whose value differs from the plain one of the
/// same version. Jobs are taken in order, and a module version measured by several
/// builds (genproto by several grpc releases) keeps the first — so the result does
/// not depend on which build finished first.
pub fn merge(db: &mut Database, outcome: &Outcome) -> Result<Merged> {
    let mut merged = Merged::default();
    let mut seen: BTreeMap<(String, String), (String, &measure::Fields)> = BTreeMap::new();
    let mut unowned: BTreeSet<&str> = BTreeSet::new();
    let mut measured: Vec<&(Job, Measured)> = outcome.measured.iter().collect();
    measured.sort_by(|a, b| a.0.cmp(&b.0));
    for (job, m) in &measured {
        let Some(m) = &m.plain else { continue };
        for ((module, version), fields) in &m.records {
            let key = (module.clone(), version.clone());
            if let Some((first, earlier)) = seen.get(&key) {
                if *earlier != fields {
                    merged.notes.push(format!(
                        "- `{module}` {version}: {} measured other offsets than {first}; kept {first}'s",
                        job.name()
                    ));
                }
                continue;
            }
            db.record(module, version, fields)?;
            seen.insert(key, (job.name(), fields));
            merged.measured.entry(module.clone()).or_default().push(version.clone());
        }
        merged.missing.extend(m.missing.iter().map(|(k, v)| (k.clone(), *v)));
        unowned.extend(m.unowned.iter().map(String::as_str));
    }
    let mut seen: BTreeSet<(String, String, String)> = BTreeSet::new();
    for (_, m) in &measured {
        let mut experiments: Vec<&(String, Measurement)> = m.experiments.iter().collect();
        experiments.sort_by(|a, b| a.0.cmp(&b.0));
        for (token, em) in experiments {
            for ((module, version), fields) in &em.records {
                if !seen.insert((token.clone(), module.clone(), version.clone())) {
                    continue;
                }
                let differs: measure::Fields = fields
                    .iter()
                    .filter(|((s, f), v)| db.lookup(module, version, s, f) != Some(**v))
                    .map(|(k, v)| (k.clone(), *v))
                    .collect();
                db.record_experiment(token, module, version, &differs)?;
                merged.experiments.entry(token.clone()).or_default().push((
                    module.clone(),
                    version.clone(),
                    differs.keys().cloned().collect(),
                ));
            }
        }
        merged.notes.extend(m.notes.iter().cloned());
    }
    for s in unowned {
        merged.notes.push(format!("- `{s}`: no versioned module of the build owns it; not recorded"));
    }
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use super::*;
    use gosight_offsets_db::Value;

    const GRPC: &GoModule = &gosight_uprobes::grpc::MODULE;

    fn measurement(records: &[(&str, &str, u64)]) -> Measurement {
        let mut m = Measurement::default();
        for (module, version, offset) in records {
            let fields: measure::Fields = [(("p.T".to_string(), "f".to_string()), Value::Offset(*offset))].into();
            m.records.insert((module.to_string(), version.to_string()), fields);
        }
        m
    }

    fn plain(records: &[(&str, &str, u64)]) -> Measured {
        Measured { plain: Some(measurement(records)), ..Measured::default() }
    }

    #[test]
    fn jobs_sort_std_first_then_modules_by_path_and_version() {
        let mut jobs = [
            Job::module(GRPC, "v1.61.0").unwrap(),
            Job::std("go1.23.0").unwrap(),
            Job::module(GRPC, "v1.60.0").unwrap(),
            Job::std("go1.22.10").unwrap(),
        ];
        jobs.sort();
        let names: Vec<String> = jobs.iter().map(Job::name).collect();
        assert_eq!(names, ["std go1.22.10", "std go1.23.0", "grpc v1.60.0", "grpc v1.61.0"]);
        assert_eq!(jobs[2].module_path(), "google.golang.org/grpc");
    }

    #[test]
    fn merging_does_not_depend_on_finishing_order() {
        let gen = "google.golang.org/genproto/googleapis/rpc";
        let jobs = || {
            vec![
                (
                    Job::module(GRPC, "v1.61.0").unwrap(),
                    plain(&[(GRPC.path, "v1.61.0", 8), (gen, "v0.0.0-20240101000000-aaaaaaaaaaaa", 40)]),
                ),
                (
                    Job::module(GRPC, "v1.60.0").unwrap(),
                    plain(&[(GRPC.path, "v1.60.0", 8), (gen, "v0.0.0-20240101000000-aaaaaaaaaaaa", 48)]),
                ),
                (Job::std("go1.22.0").unwrap(), {
                    let mut m = plain(&[(STD, "go1.22.0", 16)]);
                    m.experiments.push(("noswissmap".into(), measurement(&[(STD, "go1.22.0", 24)])));
                    m.experiments.push(("jsonv2".into(), measurement(&[(STD, "go1.22.0", 16)])));
                    m
                }),
            ]
        };
        let mut texts = Vec::new();
        for reverse in [false, true] {
            let mut measured = jobs();
            if reverse {
                measured.reverse();
            }
            let mut db = Database::default();
            let merged = merge(&mut db, &Outcome { measured, failed: Vec::new() }).unwrap();
            assert_eq!(merged.notes.len(), 1, "{:?}", merged.notes);
            assert!(merged.notes[0].contains("grpc v1.61.0 measured other offsets than grpc v1.60.0"));
            assert_eq!(db.lookup(gen, "v0.0.0-20240101000000-aaaaaaaaaaaa", "p.T", "f"), Some(Value::Offset(48)));
            assert_eq!(db.experiment_versions("jsonv2", STD), ["go1.22.0"]);
            assert!(db.experiment_fields("jsonv2", STD).is_empty(), "jsonv2 moves nothing");
            assert_eq!(db.experiment_fields("noswissmap", STD), [("p.T", "f")]);
            assert_eq!(db.lookup_built(STD, "go1.22.0", &["noswissmap"], "p.T", "f"), Some(Value::Offset(24)));
            assert_eq!(
                merged.experiments["noswissmap"],
                [(STD.into(), "go1.22.0".into(), vec![("p.T".into(), "f".into())])]
            );
            texts.push(db.to_json());
        }
        assert_eq!(texts[0], texts[1]);
    }
}
