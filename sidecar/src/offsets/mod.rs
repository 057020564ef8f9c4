//! Stage 3 — resolve the struct field offsets each probe reads.
//!
//! A probe declares the fields it needs as [`FieldSpec`]s. The [`Resolver`] asks its
//! sources in order — the binary's own DWARF first, then the versioned offsets
//! database (`offsets-db/`) for the module version the struct belongs to — and
//! returns, per field, an offset or the knowledge that the field does not exist in
//! this version. A required field nobody knows makes that one probe stand down with
//! one line naming the field and the version; the others keep running.

pub mod database;

use std::collections::HashMap;
use std::sync::Arc;

use gosight_goexe::dwarf;
use gosight_goexe::modules::ModuleVersions;
use gosight_goexe::{GoBinary, InspectError};
use gosight_offsets_db::Database;
use gosight_uprobes::tracked::tracked_fields;
use gosight_uprobes::{FieldSpec, ProbeSpec, OFF_ABSENT};

use database::DatabaseSource;

/// What a source knows about one field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    Offset(u64),
    /// The struct is known and has no such field (e.g. `Request.Pattern` before Go 1.23).
    Absent,
    /// The source cannot say.
    Unknown,
}

/// A place field offsets come from.
pub trait OffsetSource: Send + Sync {
    fn name(&self) -> &'static str;
    fn lookup(&self, strukt: &str, field: &str) -> Lookup;
}

/// Offsets read from the target binary's DWARF (exact for that binary).
pub struct DwarfSource(dwarf::StructFields);

impl DwarfSource {
    /// Reads every struct of [`tracked_fields`]. An absent DWARF gives an empty
    /// source (every lookup Unknown), not an error.
    pub fn load(bin: &GoBinary) -> Result<DwarfSource, InspectError> {
        let mut wanted: Vec<&str> = tracked_fields().into_iter().map(|(s, _)| s).collect();
        wanted.dedup();
        Ok(DwarfSource(dwarf::struct_fields(bin, &wanted)?))
    }
}

impl OffsetSource for DwarfSource {
    fn name(&self) -> &'static str {
        "DWARF"
    }

    fn lookup(&self, strukt: &str, field: &str) -> Lookup {
        match self.0.offset(strukt, field) {
            Some(off) => Lookup::Offset(off),
            None if self.0.has_struct(strukt) => Lookup::Absent,
            None => Lookup::Unknown,
        }
    }
}

/// Why a probe's fields could not be resolved.
#[derive(Debug, thiserror::Error)]
#[error("offsets not found for {}", .missing.join(", "))]
pub struct MissingOffsets {
    /// `struct.field (version)` of each required field nobody knows.
    pub missing: Vec<String>,
}

/// Asks the sources in order.
pub struct Resolver {
    sources: Vec<Box<dyn OffsetSource>>,
    /// The binary's module versions, for messages.
    versions: ModuleVersions,
}

impl Resolver {
    pub fn new(sources: Vec<Box<dyn OffsetSource>>, versions: ModuleVersions) -> Resolver {
        Resolver { sources, versions }
    }

    /// The usual chain for a binary: its DWARF, then the database.
    pub fn for_binary(bin: &GoBinary, db: Arc<Database>) -> Resolver {
        let versions = ModuleVersions::of(&bin.build);
        let mut sources: Vec<Box<dyn OffsetSource>> = Vec::new();
        match DwarfSource::load(bin) {
            Ok(d) if d.0.is_empty() => {}
            Ok(d) => sources.push(Box::new(d)),
            Err(e) => tracing::warn!("{}: DWARF unreadable ({e}); offsets from the database only", bin.path.display()),
        }
        let db = DatabaseSource::new(db, versions.clone());
        if sources.is_empty() {
            for note in db.coverage_notes(tracked_fields().into_iter().map(|(s, _)| s)) {
                tracing::info!("{}: {note}", bin.path.display());
            }
            if let Some(note) = db.experiment_note(tracked_fields()) {
                tracing::info!("{}: offsets database: {note}", bin.path.display());
            }
        }
        sources.push(Box::new(db));
        Resolver::new(sources, versions)
    }

    /// What the first source that knows says about `field`, trying each of its
    /// `a|b` alternatives in order.
    pub fn lookup(&self, f: &FieldSpec) -> (Lookup, &'static str) {
        let mut best = (Lookup::Unknown, "none");
        for alt in f.field.split('|') {
            match self.lookup_one(f.strukt, alt) {
                found @ (Lookup::Offset(_), _) => return found,
                (Lookup::Absent, src) => best = (Lookup::Absent, src),
                (Lookup::Unknown, _) => {}
            }
        }
        best
    }

    fn lookup_one(&self, strukt: &str, field: &str) -> (Lookup, &'static str) {
        for s in &self.sources {
            match s.lookup(strukt, field) {
                Lookup::Unknown => continue,
                found => return (found, s.name()),
            }
        }
        (Lookup::Unknown, "none")
    }

    /// The offset of a field, if a source knows it (for settings a probe derives).
    pub fn offset(&self, strukt: &str, field: &str) -> Option<u64> {
        match self.lookup_one(strukt, field).0 {
            Lookup::Offset(o) => Some(o),
            _ => None,
        }
    }

    /// Offsets for every field of `spec`, keyed by the C global's name
    /// ([`OFF_ABSENT`] for optional fields that are absent or unknown).
    pub fn resolve(&self, spec: &ProbeSpec) -> Result<HashMap<&'static str, u64>, MissingOffsets> {
        let mut out = HashMap::new();
        let mut missing = Vec::new();
        for f in spec.all_fields() {
            match self.lookup(f).0 {
                Lookup::Offset(off) => {
                    out.insert(f.global, off);
                }
                _ if f.required => {
                    let version = self.versions.for_struct(f.strukt).display;
                    missing.push(format!("{}.{} ({version})", f.strukt, f.field.replace('|', " or ")));
                }
                _ => {
                    out.insert(f.global, OFF_ABSENT);
                }
            }
        }
        if missing.is_empty() {
            Ok(out)
        } else {
            Err(MissingOffsets { missing })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(&'static str, Lookup);
    impl OffsetSource for Fixed {
        fn name(&self) -> &'static str {
            self.0
        }
        fn lookup(&self, _: &str, _: &str) -> Lookup {
            self.1
        }
    }

    const F: FieldSpec = FieldSpec { global: "g", strukt: "a.B", field: "C", required: true };

    fn go1_22() -> ModuleVersions {
        let build = gosight_goexe::BuildInfo {
            go_version: gosight_goexe::GoVersion::parse("go1.22.0").unwrap(),
            ..Default::default()
        };
        ModuleVersions::of(&build)
    }

    #[test]
    fn first_source_that_knows_wins() {
        let r = Resolver::new(
            vec![Box::new(Fixed("one", Lookup::Unknown)), Box::new(Fixed("two", Lookup::Offset(8)))],
            go1_22(),
        );
        assert_eq!(r.lookup(&F), (Lookup::Offset(8), "two"));
    }

    #[test]
    fn required_missing_is_named_with_version() {
        let r = Resolver::new(vec![Box::new(Fixed("one", Lookup::Absent))], go1_22());
        let spec = ProbeSpec { fields: &[&[F]], ..gosight_uprobes::net_http::server::SPEC };
        let err = r.resolve(&spec).unwrap_err();
        assert_eq!(err.to_string(), "offsets not found for a.B.C (go1.22.0)");
    }
}
