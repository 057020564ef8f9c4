//! The offsets database as a source: the embedded one, optionally extended or
//! replaced by a file named at start-up (a ConfigMap mount in Kubernetes).

use std::path::Path;
use std::sync::Arc;

use gosight_offsets_db::{Coverage, Database, Value};

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
}

impl OffsetSource for DatabaseSource {
    fn name(&self) -> &'static str {
        "offsets database"
    }

    fn lookup(&self, strukt: &str, field: &str) -> Lookup {
        let lv = self.versions.for_struct(strukt);
        let Some(version) = lv.version else { return Lookup::Unknown };
        match self.db.lookup(&lv.module, &version, strukt, field) {
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
