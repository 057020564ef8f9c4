//! What a run changed, in a form fit for a terminal and a pull-request body
//! (Markdown that reads as plain text).

use std::collections::{BTreeMap, BTreeSet};

use gosight_offsets_db::{Database, Key, Range, Value};

use crate::sources::Verdict;

/// Ranges as text: `go1.22.0..go1.22.12 @48, go1.23.0..go1.27.4 absent`.
pub fn ranges_text(ranges: &[Range]) -> String {
    if ranges.is_empty() {
        return "(none)".into();
    }
    let parts: Vec<String> = ranges
        .iter()
        .map(|r| {
            let span = if r.from == r.to { r.from.clone() } else { format!("{}..{}", r.from, r.to) };
            match r.value {
                Value::Offset(o) => format!("{span} @{o}"),
                Value::Absent => format!("{span} absent"),
            }
        })
        .collect();
    parts.join(", ")
}

/// True when `new` only stretches `old`'s ranges over added versions: same values
/// in the same order, each range at least as wide as before.
fn only_extended(module: &str, old: &[Range], new: &[Range]) -> bool {
    let k = |v: &str| Key::parse(module, v);
    old.len() == new.len()
        && old.iter().zip(new).all(|(o, n)| o.value == n.value && k(&n.from) <= k(&o.from) && k(&n.to) >= k(&o.to))
}

/// The differences between the database before and after a run.
pub fn diff(old: &Database, new: &Database) -> Vec<String> {
    let mut out = Vec::new();
    let modules: BTreeSet<&str> = old.modules().chain(new.modules()).collect();
    for module in modules {
        let (ov, nv) = (old.versions(module), new.versions(module));
        let added: Vec<&str> = nv.iter().filter(|v| !ov.contains(v)).copied().collect();
        let removed: Vec<&str> = ov.iter().filter(|v| !nv.contains(v)).copied().collect();
        if !added.is_empty() {
            out.push(format!("- `{module}`: {} version(s) added: {}", added.len(), added.join(", ")));
        }
        if !removed.is_empty() {
            out.push(format!("- `{module}`: {} version(s) removed: {}", removed.len(), removed.join(", ")));
        }
        let fields: BTreeSet<(&str, &str)> = old.fields(module).into_iter().chain(new.fields(module)).collect();
        let mut extended = 0;
        for (s, f) in fields {
            let (or, nr) = (old.ranges(module, s, f), new.ranges(module, s, f));
            if or == nr {
                continue;
            }
            if only_extended(module, or, nr) {
                extended += 1;
                continue;
            }
            out.push(format!("- `{module}` `{s}.{f}`: {} → {}", ranges_text(or), ranges_text(nr)));
        }
        if extended > 0 {
            out.push(format!("- `{module}`: {extended} field(s) keep their value over the added versions"));
        }
    }
    out
}

/// Tracked structs the DWARF did not describe, per module, struct and verdict, as
/// runs of the versions measured in this run: `go1.22.0..go1.22.12`.
pub fn missing(
    measured: &BTreeMap<String, Vec<String>>,
    missing: &BTreeMap<(String, String, String), Verdict>,
) -> Vec<String> {
    // Most alarming first: declared structs, then unchecked ones.
    let rank = |v: Verdict| match v {
        Verdict::Declared => 0,
        Verdict::Unknown => 1,
        Verdict::NotDeclared => 2,
    };
    let mut grouped: BTreeMap<(u8, Verdict, &str, &str), BTreeSet<&str>> = BTreeMap::new();
    for ((m, v, s), verdict) in missing {
        grouped.entry((rank(*verdict), *verdict, m.as_str(), s.as_str())).or_default().insert(v.as_str());
    }
    let mut out = Vec::new();
    for ((_, verdict, module, strukt), versions) in grouped {
        let all = measured.get(module).map(Vec::as_slice).unwrap_or(&[]);
        let runs = runs(module, all, &versions);
        out.push(format!("- `{module}` `{strukt}` ({}): {}", verdict.describe(), runs.join(", ")));
    }
    out
}

/// The experiments measured in a run, one line each: the versions, and the fields
/// the experiment moves there (most move none).
pub fn experiments(measured: &BTreeMap<String, Vec<crate::jobs::ExperimentBuild>>) -> Vec<String> {
    let mut out = Vec::new();
    for (token, builds) in measured {
        let mut by_module: BTreeMap<&str, (Vec<&str>, BTreeSet<String>)> = BTreeMap::new();
        for (module, version, fields) in builds {
            let e = by_module.entry(module).or_default();
            e.0.push(version);
            e.1.extend(fields.iter().map(|(s, f)| format!("{s}.{f}")));
        }
        for (module, (mut versions, fields)) in by_module {
            versions.sort_by(|a, b| gosight_offsets_db::version::compare(module, a, b));
            let moved = if fields.is_empty() {
                "moves no tracked field".to_string()
            } else {
                format!("moves {}", fields.into_iter().collect::<Vec<_>>().join(", "))
            };
            out.push(format!("- `{token}` `{module}` {}: {moved}", versions.join(", ")));
        }
    }
    out
}

/// Whether any missing struct is declared in the sources (recorded absent wrongly).
pub fn any_declared(missing: &BTreeMap<(String, String, String), Verdict>) -> bool {
    missing.values().any(|v| *v == Verdict::Declared)
}

/// Consecutive runs (in the order of `all`, sorted here) of the versions in `set`.
fn runs(module: &str, all: &[String], set: &BTreeSet<&str>) -> Vec<String> {
    let mut all: Vec<&str> = all.iter().map(String::as_str).collect();
    all.sort_by(|a, b| gosight_offsets_db::version::compare(module, a, b));
    let mut out = Vec::new();
    let mut run: Option<(&str, &str)> = None;
    for v in all {
        if set.contains(v) {
            run = Some(run.map_or((v, v), |(from, _)| (from, v)));
        } else if let Some(r) = run.take() {
            out.push(r);
        }
    }
    out.extend(run);
    out.into_iter().map(|(a, b)| if a == b { a.to_string() } else { format!("{a}..{b}") }).collect()
}

/// Fields whose value differs between versions, per module, and what the
/// experiment layer holds (`--summary`).
pub fn summary(db: &Database) -> Vec<String> {
    let mut out = Vec::new();
    for exp in db.experiments() {
        for module in db.modules() {
            let versions = db.experiment_versions(exp, module);
            if versions.is_empty() {
                continue;
            }
            out.push(format!("GOEXPERIMENT={exp} {module}: {} version(s) ({})", versions.len(), versions.join(", ")));
            for (s, f) in db.experiment_fields(exp, module) {
                out.push(format!("  {s}.{f}: {}", ranges_text(db.experiment_ranges(exp, module, s, f))));
            }
        }
    }
    for module in db.modules() {
        let versions = db.versions(module);
        let (first, last) = (versions.first().copied().unwrap_or(""), versions.last().copied().unwrap_or(""));
        out.push(format!(
            "{module}: {} versions ({first} .. {last}), {} fields",
            versions.len(),
            db.fields(module).len()
        ));
        for (s, f) in db.fields(module) {
            let r = db.ranges(module, s, f);
            let values: BTreeSet<Value> = r.iter().map(|r| r.value).collect();
            if values.len() > 1 {
                out.push(format!("  {s}.{f}: {}", ranges_text(r)));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use gosight_offsets_db::STD;

    fn db(entries: &[(&str, u64)]) -> Database {
        let mut db = Database::default();
        for (v, o) in entries {
            let value = if *o == 0 { Value::Absent } else { Value::Offset(*o) };
            db.record(STD, v, &[(("a.B".to_string(), "c".to_string()), value)].into()).unwrap();
        }
        db
    }

    #[test]
    fn extension_is_summarised_and_changes_are_listed() {
        let old = db(&[("go1.22.0", 8), ("go1.22.1", 8)]);
        let same = db(&[("go1.22.0", 8), ("go1.22.1", 8), ("go1.22.2", 8)]);
        let d = diff(&old, &same);
        assert_eq!(
            d,
            ["- `std`: 1 version(s) added: go1.22.2", "- `std`: 1 field(s) keep their value over the added versions"]
        );
        let moved = db(&[("go1.22.0", 8), ("go1.22.1", 8), ("go1.23.0", 0)]);
        let d = diff(&old, &moved);
        assert_eq!(d[1], "- `std` `a.B.c`: go1.22.0..go1.22.1 @8 → go1.22.0..go1.22.1 @8, go1.23.0 absent");
        assert!(diff(&old, &old).is_empty());
    }

    #[test]
    fn missing_structs_as_version_runs() {
        let measured: BTreeMap<String, Vec<String>> =
            [(STD.to_string(), ["go1.22.0", "go1.22.10", "go1.22.2", "go1.23.0"].map(String::from).to_vec())].into();
        let mut missing: BTreeMap<(String, String, String), Verdict> = ["go1.22.0", "go1.22.2", "go1.23.0"]
            .iter()
            .map(|v| ((STD.to_string(), v.to_string(), "runtime.itab".to_string()), Verdict::NotDeclared))
            .collect();
        missing.insert((STD.into(), "go1.22.10".into(), "net.TCPAddr".into()), Verdict::Declared);
        assert!(any_declared(&missing));
        assert_eq!(
            super::missing(&measured, &missing),
            [
                "- `std` `net.TCPAddr` (DECLARED in the sources built: the program does not use it, check programs/): go1.22.10",
                "- `std` `runtime.itab` (not declared in the sources built): go1.22.0..go1.22.2, go1.23.0",
            ]
        );
    }
}
