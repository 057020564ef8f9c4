//! The versioned offsets database: where Go struct fields live, per module version.
//!
//! A probe reads fields such as `net/http.Request.Method` out of the target's memory.
//! Their offsets come from the target's DWARF when it has one; a stripped binary has
//! none, and then this database answers instead. It stores, per module, per struct,
//! per field, the offset and the **ranges of versions** in which it holds — or the
//! knowledge that the field (or its whole struct) does not exist in those versions.
//! The standard library is stored under the module name `std` and keyed by Go
//! release; every other module (e.g. `google.golang.org/grpc`) by its own version
//! from the binary's build info. The file format is described in `offsets-db/README.md`.
//!
//! The database `gosight` embeds is `offsets-db/offsets.json`, written by
//! `tools/offsets-tracker` from real toolchains; [`Database::extend`] lays a file
//! named at start-up over it.
//!
//! What a version the tracker never measured gets is defined in [`Database::lookup`].

mod format;
pub mod version;

use std::collections::BTreeMap;

pub use format::FormatError;
pub use version::{Key, STD};

/// The database compiled into `gosight`.
pub const EMBEDDED_JSON: &str = include_str!("../offsets.json");

/// What is known of one field in one version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Value {
    Offset(u64),
    /// The field, or its whole struct, does not exist in this version.
    Absent,
}

/// A run of measured versions, `from..=to`, in which a field has one value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    pub from: String,
    pub to: String,
    pub value: Value,
}

/// How a version relates to what the tracker measured for its module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Coverage {
    /// The tracker built this very version.
    Measured,
    /// Not built (a pre-release, a pseudo-version, a skipped release), but it sorts
    /// between measured versions; a field is known when both sides agree.
    Between,
    /// The database says nothing about this version — including patch releases newer
    /// than the newest measured one: patch releases do move fields (go1.26.11 moved
    /// `net/http.response.status` from 120 to 128), so they are never extrapolated.
    Uncovered,
}

/// Everything the database knows about one module.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Module {
    /// Versions the tracker measured, ascending.
    versions: Vec<(Key, String)>,
    /// struct → field → ranges (ascending, disjoint).
    structs: BTreeMap<String, BTreeMap<String, Vec<Range>>>,
}

/// The whole database.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Database {
    modules: BTreeMap<String, Module>,
    /// Set in a file that is meant to replace, not extend, the database below it.
    replace: bool,
}

impl Database {
    /// The embedded database.
    pub fn embedded() -> Database {
        Database::from_json(EMBEDDED_JSON).expect("the embedded offsets database is valid (checked by its tests)")
    }

    pub fn from_json(text: &str) -> Result<Database, FormatError> {
        format::parse(text)
    }

    /// The canonical text: sorted, one range per line, stable across runs.
    pub fn to_json(&self) -> String {
        format::write(self)
    }

    /// Whether this database asked to replace rather than extend the one below it.
    pub fn replaces(&self) -> bool {
        self.replace
    }

    /// Lays `top` over `self`: a file marked `"replace": true` takes the place of
    /// everything; otherwise its measurements win for the versions it lists and the
    /// rest of `self` stays.
    pub fn extend(&mut self, top: Database) {
        if top.replace {
            *self = Database { replace: false, ..top };
            return;
        }
        for (name, m) in top.modules {
            let base = self.modules.entry(name.clone()).or_default();
            let mut values = base.expand(&name);
            for (field, per_version) in m.expand(&name) {
                values.entry(field).or_default().extend(per_version);
            }
            let mut versions: BTreeMap<Key, String> = base.versions.drain(..).collect();
            versions.extend(m.versions);
            *base = Module::compress(versions.into_iter().collect(), values);
        }
    }

    pub fn modules(&self) -> impl Iterator<Item = &str> {
        self.modules.keys().map(String::as_str)
    }

    /// Measured versions of `module`, ascending.
    pub fn versions(&self, module: &str) -> Vec<&str> {
        self.modules.get(module).map(|m| m.versions.iter().map(|(_, v)| v.as_str()).collect()).unwrap_or_default()
    }

    /// Every `(struct, field)` stored for `module`.
    pub fn fields(&self, module: &str) -> Vec<(&str, &str)> {
        let Some(m) = self.modules.get(module) else { return Vec::new() };
        m.structs.iter().flat_map(|(s, fs)| fs.keys().map(move |f| (s.as_str(), f.as_str()))).collect()
    }

    pub fn ranges(&self, module: &str, strukt: &str, field: &str) -> &[Range] {
        self.modules.get(module).and_then(|m| m.structs.get(strukt)?.get(field)).map(Vec::as_slice).unwrap_or(&[])
    }

    /// How `version` of `module` is covered.
    pub fn coverage(&self, module: &str, version: &str) -> Coverage {
        let (Some(m), Some(key)) = (self.modules.get(module), Key::parse(module, version)) else {
            return Coverage::Uncovered;
        };
        let (Some((first, _)), Some((last, _))) = (m.versions.first(), m.versions.last()) else {
            return Coverage::Uncovered;
        };
        if m.versions.iter().any(|(k, _)| *k == key) {
            Coverage::Measured
        } else if key > *first && key < *last {
            Coverage::Between
        } else {
            Coverage::Uncovered
        }
    }

    /// The value of `strukt.field` in `version` of `module`, if the database knows it:
    /// a measured version gets its measurement; a version between measured ones gets
    /// the value of the range around it (none if it falls where the value changed);
    /// anything else — `(devel)`, older or newer releases — gets `None`.
    pub fn lookup(&self, module: &str, version: &str, strukt: &str, field: &str) -> Option<Value> {
        let m = self.modules.get(module)?;
        let key = match self.coverage(module, version) {
            Coverage::Measured | Coverage::Between => Key::parse(module, version)?,
            Coverage::Uncovered => return None,
        };
        let ranges = m.structs.get(strukt)?.get(field)?;
        ranges
            .iter()
            .find(|r| {
                let from = Key::parse(module, &r.from);
                let to = Key::parse(module, &r.to);
                matches!((from, to), (Some(f), Some(t)) if f <= key && key <= t)
            })
            .map(|r| r.value)
    }

    /// Records what the tracker measured: `fields` maps `(struct, field)` to its value
    /// in `version`. Replaces any earlier measurement of that version.
    pub fn record(
        &mut self,
        module: &str,
        version: &str,
        fields: &BTreeMap<(String, String), Value>,
    ) -> Result<(), FormatError> {
        let key = Key::parse(module, version)
            .ok_or_else(|| FormatError::Version { module: module.into(), version: version.into() })?;
        let m = self.modules.entry(module.to_string()).or_default();
        let mut values = m.expand(module);
        for per_version in values.values_mut() {
            per_version.remove(&key);
        }
        for ((s, f), v) in fields {
            values.entry((s.clone(), f.clone())).or_default().insert(key.clone(), *v);
        }
        let mut versions: BTreeMap<Key, String> = m.versions.drain(..).collect();
        versions.insert(key, version.to_string());
        *m = Module::compress(versions.into_iter().collect(), values);
        Ok(())
    }

    /// Only the measured versions `keep` accepts, everything else dropped (for
    /// comparing a partial regeneration with the committed database).
    pub fn restrict(&self, keep: impl Fn(&str, &str) -> bool) -> Database {
        let mut out = Database::default();
        for (name, m) in &self.modules {
            let versions: Vec<(Key, String)> = m.versions.iter().filter(|(_, v)| keep(name, v)).cloned().collect();
            if versions.is_empty() {
                continue;
            }
            let mut values = m.expand(name);
            for per_version in values.values_mut() {
                per_version.retain(|k, _| versions.iter().any(|(vk, _)| vk == k));
            }
            out.modules.insert(name.clone(), Module::compress(versions, values));
        }
        out
    }
}

type Values = BTreeMap<(String, String), BTreeMap<Key, Value>>;

impl Module {
    /// Per field, the value at each measured version (`module` says how versions parse).
    fn expand(&self, module: &str) -> Values {
        let mut out = Values::new();
        for (s, fields) in &self.structs {
            for (f, ranges) in fields {
                let per_version = out.entry((s.clone(), f.clone())).or_default();
                for r in ranges {
                    let (Some(from), Some(to)) = (Key::parse(module, &r.from), Key::parse(module, &r.to)) else {
                        continue;
                    };
                    for (k, _) in self.versions.iter().filter(|(k, _)| from <= *k && *k <= to) {
                        per_version.insert(k.clone(), r.value);
                    }
                }
            }
        }
        out
    }

    /// Runs of consecutive measured versions with one value become one range; a
    /// measured version without a value for a field breaks that field's run.
    fn compress(versions: Vec<(Key, String)>, values: Values) -> Module {
        let mut structs: BTreeMap<String, BTreeMap<String, Vec<Range>>> = BTreeMap::new();
        for ((s, f), per_version) in values {
            let mut ranges: Vec<Range> = Vec::new();
            let mut open = false;
            for (k, text) in &versions {
                match per_version.get(k) {
                    Some(v) => match ranges.last_mut() {
                        Some(last) if open && last.value == *v => last.to = text.clone(),
                        _ => {
                            ranges.push(Range { from: text.clone(), to: text.clone(), value: *v });
                            open = true;
                        }
                    },
                    None => open = false,
                }
            }
            if !ranges.is_empty() {
                structs.entry(s).or_default().insert(f, ranges);
            }
        }
        Module { versions, structs }
    }
}

#[cfg(test)]
mod tests;
