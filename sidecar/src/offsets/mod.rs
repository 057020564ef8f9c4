//! Stage 3 — resolve the struct field offsets each probe reads.
//!
//! A probe declares the fields it needs as [`FieldSpec`]s. The [`Resolver`] asks its
//! sources in order — the binary's own DWARF first; a versioned database slots in
//! behind it — and returns, per field, an offset or the knowledge that the field
//! does not exist in this version. A required field nobody knows makes that one
//! probe stand down; the others keep running.

pub mod dwarf;

use std::collections::HashMap;

use gosight_uprobes::{FieldSpec, ProbeSpec, OFF_ABSENT};

use crate::inspect::{GoBinary, InspectError};

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
    /// `module` decides which version's layout applies (`std` = the Go version).
    fn lookup(&self, module: &str, strukt: &str, field: &str) -> Lookup;
}

/// Offsets read from the target binary's DWARF (exact for that binary).
pub struct DwarfSource(dwarf::StructFields);

impl DwarfSource {
    /// Reads every struct that `probes` mention. An absent DWARF gives an empty
    /// source (every lookup Unknown), not an error.
    pub fn load(bin: &GoBinary, probes: &[&ProbeSpec]) -> Result<DwarfSource, InspectError> {
        let mut wanted: Vec<&str> = probes.iter().flat_map(|p| p.all_fields().map(|f| f.strukt)).collect();
        wanted.sort();
        wanted.dedup();
        Ok(DwarfSource(dwarf::struct_fields(bin, &wanted)?))
    }
}

impl OffsetSource for DwarfSource {
    fn name(&self) -> &'static str {
        "DWARF"
    }

    fn lookup(&self, _module: &str, strukt: &str, field: &str) -> Lookup {
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
    /// `struct.field (module version)` of each required field nobody knows.
    pub missing: Vec<String>,
}

/// Asks the sources in order.
pub struct Resolver {
    sources: Vec<Box<dyn OffsetSource>>,
    /// Version of the standard library (the Go version), for messages.
    std_version: String,
}

impl Resolver {
    pub fn new(sources: Vec<Box<dyn OffsetSource>>, std_version: String) -> Resolver {
        Resolver { sources, std_version }
    }

    /// The usual chain for a binary: its DWARF.
    pub fn for_binary(bin: &GoBinary, probes: &[&ProbeSpec]) -> Resolver {
        let mut sources: Vec<Box<dyn OffsetSource>> = Vec::new();
        match DwarfSource::load(bin, probes) {
            Ok(d) => sources.push(Box::new(d)),
            Err(e) => tracing::warn!("{}: DWARF unreadable ({e}); no offsets from it", bin.path.display()),
        }
        Resolver::new(sources, bin.build.go_version.to_string())
    }

    /// What the first source that knows says about `field`, trying each of its
    /// `a|b` alternatives in order.
    pub fn lookup(&self, f: &FieldSpec) -> (Lookup, &'static str) {
        let mut best = (Lookup::Unknown, "none");
        for alt in f.field.split('|') {
            match self.lookup_one(f.module, f.strukt, alt) {
                found @ (Lookup::Offset(_), _) => return found,
                (Lookup::Absent, src) => best = (Lookup::Absent, src),
                (Lookup::Unknown, _) => {}
            }
        }
        best
    }

    fn lookup_one(&self, module: &str, strukt: &str, field: &str) -> (Lookup, &'static str) {
        for s in &self.sources {
            match s.lookup(module, strukt, field) {
                Lookup::Unknown => continue,
                found => return (found, s.name()),
            }
        }
        (Lookup::Unknown, "none")
    }

    /// The offset of a field, if a source knows it (for settings a probe derives).
    pub fn offset(&self, strukt: &str, field: &str) -> Option<u64> {
        match self.lookup_one("", strukt, field).0 {
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
                    let version = if f.module == "std" { self.std_version.as_str() } else { f.module };
                    missing.push(format!("{}.{} ({version})", f.strukt, f.field));
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
        fn lookup(&self, _: &str, _: &str, _: &str) -> Lookup {
            self.1
        }
    }

    const F: FieldSpec = FieldSpec { global: "g", module: "std", strukt: "a.B", field: "C", required: true };

    #[test]
    fn first_source_that_knows_wins() {
        let r = Resolver::new(
            vec![Box::new(Fixed("one", Lookup::Unknown)), Box::new(Fixed("two", Lookup::Offset(8)))],
            "go1.22.0".into(),
        );
        assert_eq!(r.lookup(&F), (Lookup::Offset(8), "two"));
    }

    #[test]
    fn required_missing_is_named_with_version() {
        let r = Resolver::new(vec![Box::new(Fixed("one", Lookup::Absent))], "go1.22.0".into());
        let spec = ProbeSpec { fields: &[&[F]], ..gosight_uprobes::net_http_server::SPEC };
        let err = r.resolve(&spec).unwrap_err();
        assert_eq!(err.to_string(), "offsets not found for a.B.C (go1.22.0)");
    }
}
