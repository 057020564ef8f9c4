//! Reading one built program: the offset of every tracked field, by the module
//! version its struct's layout follows — with the same code the sidecar uses
//! (`gosight_goexe::dwarf`, `gosight_goexe::modules`), so the database holds
//! exactly what the sidecar would have read from DWARF.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{bail, Context, Result};
use gosight_goexe::dwarf;
use gosight_goexe::modules::{package_of, ModuleVersions};
use gosight_goexe::{BuildInfo, GoBinary, Module};
use gosight_offsets_db::version::split_go_version;
use gosight_offsets_db::{Database, Value, STD};
use gosight_uprobes::tracked::tracked_fields;

use crate::sources::Verdict;

/// `(struct, field)` → value, as `Database::record` takes it.
pub type Fields = BTreeMap<(String, String), Value>;

/// What one binary says, for the modules asked for.
#[derive(Debug, Default)]
pub struct Measurement {
    /// `(module, version)` → fields.
    pub records: BTreeMap<(String, String), Fields>,
    /// `(module, version, struct)` for tracked structs the DWARF does not describe
    /// (recorded as absent: either the version has no such struct, or the program
    /// did not use it), with what the sources say ([`crate::sources`]).
    pub missing: BTreeMap<(String, String, String), Verdict>,
    /// Tracked structs no versioned module of the build owns (not recorded).
    pub unowned: BTreeSet<String>,
}

/// Which modules of a binary to record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// The standard library only, expected to be of this Go release.
    Std,
    /// Every module except the standard library.
    Modules,
}

/// The tracked structs, each once.
pub fn tracked_structs() -> Vec<&'static str> {
    let mut out: Vec<&str> = tracked_fields().into_iter().map(|(s, _)| s).collect();
    out.dedup();
    out
}

/// Reads the binary at `path`. `expect` names what the build was asked for
/// (`("std", "go1.22.0")` or `("google.golang.org/grpc", "v1.60.0")`), and
/// `experiment` the GOEXPERIMENT it was built with; a binary whose build info
/// disagrees is an error, not a measurement.
pub fn measure(path: &Path, keep: Keep, expect: (&str, &str), experiment: Option<&str>) -> Result<Measurement> {
    let bin = GoBinary::open(path).with_context(|| format!("open {}", path.display()))?;
    check_version(&bin.build, expect, experiment)?;
    let structs = tracked_structs();
    let found = dwarf::struct_fields(&bin, &structs)?;
    if found.is_empty() {
        bail!("{}: no DWARF struct types", path.display());
    }
    let versions = ModuleVersions::of(&bin.build);
    let mut out = Measurement::default();
    for (strukt, field) in tracked_fields() {
        let lv = versions.for_struct(strukt);
        let wanted = match keep {
            Keep::Std => lv.module == STD,
            Keep::Modules => lv.module != STD,
        };
        if !wanted {
            continue;
        }
        let Some(mut version) = lv.version else {
            out.unowned.insert(strukt.to_string());
            continue;
        };
        if keep == Keep::Std {
            version = expect.1.to_string(); // without experiment suffixes
        }
        let value = found.offset(strukt, field).map_or(Value::Absent, Value::Offset);
        out.records
            .entry((lv.module.clone(), version.clone()))
            .or_default()
            .insert((strukt.into(), field.into()), value);
        if !found.has_struct(strukt) {
            out.missing.insert((lv.module, version, strukt.to_string()), Verdict::Unknown);
        }
    }
    Ok(out)
}

fn check_version(build: &BuildInfo, (module, version): (&str, &str), experiment: Option<&str>) -> Result<()> {
    let (release, experiments) = split_go_version(&build.go_version.raw);
    if experiments != experiment.into_iter().collect::<Vec<_>>() {
        let asked = experiment.unwrap_or("none");
        let got = if experiments.is_empty() { "none".to_string() } else { experiments.join(",") };
        bail!("built with GOEXPERIMENT {got}, not {asked} as asked (the toolchain ignores it here)");
    }
    let got = if module == STD {
        release.to_string()
    } else {
        build.module(module).map(|m| m.version.clone()).unwrap_or_else(|| "none".into())
    };
    if got != version {
        bail!("built {module} {got}, not {version} as asked");
    }
    Ok(())
}

/// Every tracked field, printed with its module version and value (`--inspect`).
pub fn describe(path: &Path) -> Result<String> {
    let bin = GoBinary::open(path).with_context(|| format!("open {}", path.display()))?;
    let found = dwarf::struct_fields(&bin, &tracked_structs())?;
    let versions = ModuleVersions::of(&bin.build);
    let mut out = format!("{}: {}\n", path.display(), bin.build.go_version.raw);
    for (strukt, field) in tracked_fields() {
        let lv = versions.for_struct(strukt);
        let value = match (found.offset(strukt, field), found.has_struct(strukt)) {
            (Some(o), _) => o.to_string(),
            (None, true) => "absent (no such field)".into(),
            (None, false) => "absent (struct not in DWARF)".into(),
        };
        out.push_str(&format!("{strukt}.{field}\t{}\t{value}\n", lv.display));
    }
    Ok(out)
}

/// The tracked fields whose layout follows `module` when `module` is the
/// dependency a build is about (`std` or any module path); fields of structs owned by
/// neither `std` nor `module` are [`tracked_elsewhere`].
pub fn tracked_for(module: &str) -> Vec<(&'static str, &'static str)> {
    let versions = ModuleVersions::of(&build_with(module));
    tracked_fields().into_iter().filter(|(s, _)| versions.for_struct(s).module == module).collect()
}

/// Tracked fields of structs owned neither by the standard library nor by `module`
/// (e.g. genproto's `status.Status` for a grpc build): their module is only known
/// from a build's info.
pub fn tracked_elsewhere(module: &str) -> Vec<(&'static str, &'static str)> {
    let versions = ModuleVersions::of(&build_with(module));
    tracked_fields()
        .into_iter()
        .filter(|(s, _)| {
            let m = versions.for_struct(s).module;
            m != STD && m != module
        })
        .collect()
}

fn build_with(module: &str) -> BuildInfo {
    let mut build = BuildInfo::default();
    if module != STD {
        build.deps.push(Module { path: module.into(), version: "v0.0.0".into(), sum: None, replace: None });
    }
    build
}

/// Whether `version` of `module` is measured and holds a value for every one of `fields`.
pub fn covers(db: &Database, module: &str, version: &str, fields: &[(&str, &str)]) -> bool {
    db.versions(module).contains(&version) && fields.iter().all(|(s, f)| db.lookup(module, version, s, f).is_some())
}

/// Whether the database already holds `fields` (owned by modules other than `std`
/// and the one built) for every version of some module owning them: then a build
/// need not be repeated just to learn them.
pub fn covered_elsewhere(db: &Database, fields: &[(&str, &str)]) -> bool {
    fields.iter().all(|(s, f)| {
        let pkg = package_of(s);
        let owner = db
            .modules()
            .filter(|m| *m != STD && (pkg == *m || pkg.strip_prefix(m).is_some_and(|r| r.starts_with('/'))))
            .max_by_key(|m| m.len());
        owner.is_some_and(|m| db.versions(m).iter().all(|v| db.lookup(m, v, s, f).is_some()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    const GRPC: &str = gosight_uprobes::grpc::MODULE.path;

    #[test]
    fn tracked_fields_split_by_module() {
        let std = tracked_for(STD);
        let grpc = tracked_for(GRPC);
        let other = tracked_elsewhere(GRPC);
        assert!(std.contains(&("net/http.Request", "Method")));
        assert!(std.contains(&("noalg.map.group[string][]string", "slots")));
        assert!(grpc.iter().all(|(s, _)| s.starts_with("google.golang.org/grpc")));
        assert!(other.contains(&("google.golang.org/genproto/googleapis/rpc/status.Status", "Code")));
        assert_eq!(std.len() + grpc.len() + other.len(), tracked_fields().len());
    }

    #[test]
    fn coverage_of_a_database() {
        let mut db = Database::default();
        let fields: Fields = [(("a.B".to_string(), "c".to_string()), Value::Offset(8))].into();
        db.record(STD, "go1.22.0", &fields).unwrap();
        assert!(covers(&db, STD, "go1.22.0", &[("a.B", "c")]));
        assert!(!covers(&db, STD, "go1.22.0", &[("a.B", "c"), ("a.B", "d")]));
        assert!(!covers(&db, STD, "go1.22.1", &[("a.B", "c")]));
        let s = "example.com/x/y.T";
        assert!(!covered_elsewhere(&db, &[(s, "f")]));
        let fields: Fields = [((s.to_string(), "f".to_string()), Value::Absent)].into();
        db.record("example.com/x", "v1.0.0", &fields).unwrap();
        assert!(covered_elsewhere(&db, &[(s, "f")]));
        assert!(!covered_elsewhere(&db, &[(s, "g")]));
    }
}
