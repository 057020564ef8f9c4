//! The offsets database as a source: the embedded one, optionally extended or
//! replaced by a file named at start-up (a ConfigMap mount in Kubernetes).

use std::path::Path;
use std::sync::Arc;

use gosight_offsets_db::{Coverage, Database, Effect, Value};

use gosight_goexe::modules::ModuleVersions;

use super::{Lookup, OffsetSource};

/// Loads the database `gosight` uses: the embedded one with `file` laid over it.
/// A file that cannot be read or parsed is reported in one line and ignored: the
/// embedded database still serves.
pub fn load(file: Option<&Path>) -> Arc<Database> {
    let mut db = Database::embedded();
    if let Some(path) = file {
        match std::fs::read_to_string(path)
            .map_err(|e| e.to_string())
            .and_then(|t| Database::from_json(&t).map_err(|e| e.to_string()))
        {
            Ok(top) => {
                let how = if top.replaces() { "replaces" } else { "extends" };
                db.extend(top);
                tracing::info!("offsets database {}: {how} the embedded one", path.display());
            }
            Err(e) => tracing::error!("offsets database {} ignored, embedded one used: {e}", path.display()),
        }
    }
    Arc::new(db)
}

/// Database lookups for one binary's module versions.
pub struct DatabaseSource {
    db: Arc<Database>,
    versions: ModuleVersions,
}

impl DatabaseSource {
    pub fn new(db: Arc<Database>, versions: ModuleVersions) -> DatabaseSource {
        DatabaseSource { db, versions }
    }

    /// One line per module version this binary needs that the database does not
    /// cover (for the log), given the structs in use.
    pub fn coverage_notes<'a>(&self, structs: impl IntoIterator<Item = &'a str>) -> Vec<String> {
        let mut notes = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        for s in structs {
            let lv = self.versions.for_struct(s);
            if !seen.insert(lv.display.clone()) {
                continue;
            }
            let Some(version) = lv.version else { continue };
            match self.db.coverage(&lv.module, &version) {
                Coverage::Measured | Coverage::Between => {}
                Coverage::Uncovered => {
                    let newest = self.db.versions(&lv.module).last().map(|v| v.to_string());
                    let hint = newest.map(|n| format!(" (newest known: {n}; run offsets-tracker or lay a newer file over it with --offsets-db)")).unwrap_or_default();
                    notes.push(format!("{}: not in the offsets database{hint}", lv.display))
                }
            }
        }
        notes
    }

    /// One line saying how the database answers for the GOEXPERIMENTs the binary was
    /// built with (`None` for a plain build): per experiment, whether the database
    /// measured it for the versions in use (and which of the `fields` it moves
    /// there), or not — then the plain offsets are used, experiments rarely moving
    /// a field the probes read.
    pub fn experiment_note<'a>(&self, fields: impl IntoIterator<Item = (&'a str, &'a str)> + Clone) -> Option<String> {
        let exps = self.versions.experiments();
        if exps.is_empty() {
            return None;
        }
        let mut parts = Vec::new();
        for exp in exps {
            let mut measured = std::collections::BTreeSet::new();
            let mut unmeasured = std::collections::BTreeSet::new();
            let mut moved = std::collections::BTreeSet::new();
            for (s, f) in fields.clone() {
                let lv = self.versions.for_struct(s);
                let Some(version) = lv.version else { continue };
                match self.db.experiment_effect(exp, &lv.module, &version, s, f) {
                    Effect::Unmeasured => {
                        unmeasured.insert(lv.display);
                    }
                    effect => {
                        measured.insert(lv.display);
                        if effect != Effect::Same {
                            moved.insert(format!("{s}.{f}"));
                        }
                    }
                }
            }
            let list = |set: std::collections::BTreeSet<String>| set.into_iter().collect::<Vec<_>>().join(", ");
            let mut said = Vec::new();
            if !measured.is_empty() {
                let what = if moved.is_empty() {
                    "moves no field the probes read".to_string()
                } else {
                    format!("its offsets used for {}", list(moved))
                };
                said.push(format!("measured for {} ({what})", list(measured)));
            }
            if !unmeasured.is_empty() {
                said.push(format!("NOT measured for {}: plain offsets used", list(unmeasured)));
            }
            parts.push(format!("{exp} {}", said.join("; ")));
        }
        Some(format!("GOEXPERIMENT {}", parts.join("; ")))
    }
}

impl OffsetSource for DatabaseSource {
    fn name(&self) -> &'static str {
        "offsets database"
    }

    fn lookup(&self, strukt: &str, field: &str) -> Lookup {
        let lv = self.versions.for_struct(strukt);
        let Some(version) = lv.version else { return Lookup::Unknown };
        let exps: Vec<&str> = self.versions.experiments().iter().map(String::as_str).collect();
        match self.db.lookup_built(&lv.module, &version, &exps, strukt, field) {
            Some(Value::Offset(o)) => Lookup::Offset(o),
            Some(Value::Absent) => Lookup::Absent,
            None => Lookup::Unknown,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, text: &str) -> std::path::PathBuf {
        let p = std::env::temp_dir().join(format!("gosight-db-{}-{name}.json", std::process::id()));
        std::fs::write(&p, text).unwrap();
        p
    }

    /// Layout versions name the standard library as the database keys it.
    #[test]
    fn the_standard_library_has_one_name() {
        assert_eq!(gosight_goexe::modules::STD, gosight_offsets_db::STD);
    }

    #[test]
    fn a_binary_built_with_experiments_is_looked_up_by_its_release() {
        use gosight_goexe::{BuildInfo, GoVersion};
        let field = |o| -> std::collections::BTreeMap<(String, String), Value> {
            [(("net/http.Request".to_string(), "Method".to_string()), Value::Offset(o))].into()
        };
        let mut db = Database::default();
        db.record("std", "go1.26.8", &field(0)).unwrap();
        db.record_experiment("jsonv2", "std", "go1.26.8", &Default::default()).unwrap();
        db.record_experiment("noswissmap", "std", "go1.26.8", &field(8)).unwrap();
        let db = Arc::new(db);
        let source = |raw: &str| {
            let build = BuildInfo { go_version: GoVersion::parse(raw).unwrap(), ..BuildInfo::default() };
            DatabaseSource::new(db.clone(), ModuleVersions::of(&build))
        };
        let fields = [("net/http.Request", "Method")];
        let plain = source("go1.26.8");
        assert_eq!(plain.lookup("net/http.Request", "Method"), Lookup::Offset(0));
        assert_eq!(plain.experiment_note(fields), None);
        let json = source("go1.26.8-X:jsonv2,arenas");
        assert_eq!(json.lookup("net/http.Request", "Method"), Lookup::Offset(0));
        assert_eq!(
            json.experiment_note(fields).unwrap(),
            "GOEXPERIMENT jsonv2 measured for go1.26.8 (moves no field the probes read); \
             arenas NOT measured for go1.26.8: plain offsets used"
        );
        let moved = source("go1.26.8-X:noswissmap");
        assert_eq!(moved.lookup("net/http.Request", "Method"), Lookup::Offset(8));
        assert!(moved.experiment_note(fields).unwrap().contains("its offsets used for net/http.Request.Method"));
    }

    #[test]
    fn a_file_extends_or_replaces_and_a_bad_one_leaves_the_embedded_database() {
        let embedded = Database::embedded();
        let top = r#"{"format": 1, "modules": {"example.com/lib": {"versions": ["v1.2.3"],
            "structs": {"example.com/lib.T": {"f": [{"from": "v1.2.3", "to": "v1.2.3", "offset": 24}]}}}}}"#;
        let extended = load(Some(&file("extend", top)));
        assert_eq!(extended.lookup("example.com/lib", "v1.2.3", "example.com/lib.T", "f"), Some(Value::Offset(24)));
        for m in embedded.modules() {
            assert_eq!(extended.versions(m), embedded.versions(m), "{m} kept");
        }
        let replacing = top.replacen("\"modules\"", "\"replace\": true, \"modules\"", 1);
        let replaced = load(Some(&file("replace", &replacing)));
        assert_eq!(replaced.modules().collect::<Vec<_>>(), ["example.com/lib"]);
        assert_eq!(*load(Some(&file("bad", "{\"format\": 9, \"modules\": {}}"))), embedded);
        assert_eq!(*load(Some(std::path::Path::new("/nonexistent/offsets.json"))), embedded);
    }
}
