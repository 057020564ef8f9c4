//! Which builds a run does, running them (optionally in parallel), and folding their
//! measurements into the database in a fixed order.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::Result;
use gosight_offsets_db::{Database, Key, STD};

use crate::gobuild::{Builder, Package};
use crate::measure::{self, Keep, Measurement};
use crate::proxy::GRPC;
use crate::sources::{self, Verdict};

/// One build: the standard library with a Go release, or grpc at a release.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Job {
    Std(Key, String),
    Grpc(Key, String),
}

impl Job {
    pub fn std(version: &str) -> Option<Job> {
        Some(Job::Std(Key::parse(STD, version)?, version.into()))
    }

    pub fn grpc(version: &str) -> Option<Job> {
        Some(Job::Grpc(Key::parse(GRPC, version)?, version.into()))
    }

    pub fn module(&self) -> &'static str {
        match self {
            Job::Std(..) => STD,
            Job::Grpc(..) => GRPC,
        }
    }

    pub fn version(&self) -> &str {
        match self {
            Job::Std(_, v) | Job::Grpc(_, v) => v,
        }
    }

    /// `std go1.22.0`, `grpc v1.60.0`.
    pub fn name(&self) -> String {
        match self {
            Job::Std(_, v) => format!("std {v}"),
            Job::Grpc(_, v) => format!("grpc {v}"),
        }
    }

    /// Whether the database already holds everything this build would measure.
    pub fn measured_in(&self, db: &Database) -> bool {
        let module = self.module();
        if !measure::covers(db, module, self.version(), &measure::tracked_for(module)) {
            return false;
        }
        match self {
            Job::Std(..) => true,
            Job::Grpc(..) => measure::covered_elsewhere(db, &measure::tracked_elsewhere(module)),
        }
    }

    fn run(&self, builder: &Builder) -> Result<(Measurement, String)> {
        let (built, result) = match self {
            Job::Std(_, v) => {
                let built = builder.std(v)?;
                let result = measure::measure(&built.binary, Keep::Std, (STD, v))
                    .map(|m| judge(m, |pkgs| builder.std_packages(v, pkgs)));
                builder.done_with(v, built.downloaded_toolchain);
                (built, result)
            }
            Job::Grpc(_, v) => {
                let built = builder.grpc(v)?;
                let result = measure::measure(&built.binary, Keep::Modules, (GRPC, v))
                    .map(|m| judge(m, |pkgs| builder.grpc_packages(v, pkgs)));
                (built, result)
            }
        };
        let m = result?;
        let how = if built.cached { "cached build".to_string() } else { format!("built in {}", secs(built.took)) };
        let records: Vec<String> =
            m.records.iter().map(|((module, v), f)| format!("{} {v}: {} fields", short(module), f.len())).collect();
        let missing =
            if m.missing.is_empty() { String::new() } else { format!(", {} struct(s) not in DWARF", m.missing.len()) };
        Ok((m, format!("{how}; {}{missing}", records.join(", "))))
    }
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

fn short(module: &str) -> &str {
    module.strip_prefix("google.golang.org/").unwrap_or(module)
}

fn secs(d: Duration) -> String {
    format!("{:.0}s", d.as_secs_f64())
}

/// Everything a run produced.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Measured jobs, in job order.
    pub measured: Vec<(Job, Measurement)>,
    /// `(job, one-line error)`, in job order.
    pub failed: Vec<(Job, String)>,
}

/// Runs `jobs` on `parallel` threads. Logs one line per job as it finishes; the
/// outcome is sorted by job, whatever order they finished in.
pub fn run_all(jobs: Vec<Job>, builder: &Builder, parallel: usize) -> Outcome {
    let total = jobs.len();
    let queue = Mutex::new(jobs.into_iter().collect::<VecDeque<_>>());
    let done = Mutex::new((0usize, Outcome::default()));
    std::thread::scope(|scope| {
        for _ in 0..parallel.clamp(1, total.max(1)) {
            scope.spawn(|| loop {
                let Some(job) = queue.lock().unwrap().pop_front() else { break };
                let result = job.run(builder);
                let mut done = done.lock().unwrap();
                done.0 += 1;
                let n = done.0;
                match result {
                    Ok((m, line)) => {
                        tracing::info!("[{n}/{total}] {}: {line}", job.name());
                        done.1.measured.push((job, m));
                    }
                    Err(e) => {
                        let line = format!("{e:#}").replace('\n', " ");
                        tracing::error!("[{n}/{total}] {}: FAILED: {line}", job.name());
                        done.1.failed.push((job, line));
                    }
                }
            });
        }
    });
    let mut outcome = done.into_inner().unwrap().1;
    outcome.measured.sort_by(|a, b| a.0.cmp(&b.0));
    outcome.failed.sort();
    outcome
}

/// What folding measurements into a database noticed.
#[derive(Debug, Default)]
pub struct Merged {
    /// Versions measured in this run, per module.
    pub measured: BTreeMap<String, Vec<String>>,
    /// `(module, version, struct)` not in DWARF, with what the sources say.
    pub missing: BTreeMap<(String, String, String), Verdict>,
    /// One line each: unowned structs, disagreeing measurements of one module version.
    pub notes: Vec<String>,
}

/// Records every measurement into `db`. Jobs are taken in order, and a module
/// version measured by several builds (genproto by several grpc releases) keeps the
/// first — so the result does not depend on which build finished first.
pub fn merge(db: &mut Database, outcome: &Outcome) -> Result<Merged> {
    let mut merged = Merged::default();
    let mut seen: BTreeMap<(String, String), (String, &measure::Fields)> = BTreeMap::new();
    let mut unowned: BTreeSet<&str> = BTreeSet::new();
    let mut measured: Vec<&(Job, Measurement)> = outcome.measured.iter().collect();
    measured.sort_by(|a, b| a.0.cmp(&b.0));
    for (job, m) in measured {
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
    for s in unowned {
        merged.notes.push(format!("- `{s}`: no versioned module of the build owns it; not recorded"));
    }
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use super::*;
    use gosight_offsets_db::Value;

    fn measurement(records: &[(&str, &str, u64)]) -> Measurement {
        let mut m = Measurement::default();
        for (module, version, offset) in records {
            let fields: measure::Fields = [(("p.T".to_string(), "f".to_string()), Value::Offset(*offset))].into();
            m.records.insert((module.to_string(), version.to_string()), fields);
        }
        m
    }

    #[test]
    fn merging_does_not_depend_on_finishing_order() {
        let gen = "google.golang.org/genproto/googleapis/rpc";
        let jobs = || {
            vec![
                (
                    Job::grpc("v1.61.0").unwrap(),
                    measurement(&[(GRPC, "v1.61.0", 8), (gen, "v0.0.0-20240101000000-aaaaaaaaaaaa", 40)]),
                ),
                (
                    Job::grpc("v1.60.0").unwrap(),
                    measurement(&[(GRPC, "v1.60.0", 8), (gen, "v0.0.0-20240101000000-aaaaaaaaaaaa", 48)]),
                ),
                (Job::std("go1.22.0").unwrap(), measurement(&[(STD, "go1.22.0", 16)])),
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
            texts.push(db.to_json());
        }
        assert_eq!(texts[0], texts[1]);
    }
}
