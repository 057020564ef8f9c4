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
//!
//! A binary built with GOEXPERIMENTs (`go1.26.8-X:jsonv2` in its build info) is
//! looked up by its release ([`version::split_go_version`]) through
//! [`Database::lookup_built`]: the optional experiment layer holds, per experiment,
//! the versions the tracker built with it and the fields it moves there; an
//! experiment the layer has not measured leaves the plain offsets.

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
    /// The experiment layer: GOEXPERIMENT token as build info writes it (`jsonv2`,
    /// `nogreenteagc`) → module → the versions built with it, and only the fields
    /// whose value differs from the plain build of the same version.
    experiments: BTreeMap<String, BTreeMap<String, Module>>,
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
            self.modules.entry(name.clone()).or_default().extend(&name, m, false);
        }
        for (exp, modules) in top.experiments {
            let layer = self.experiments.entry(exp).or_default();
            for (name, m) in modules {
                layer.entry(name.clone()).or_default().extend(&name, m, true);
            }
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
        match (self.modules.get(module), Key::parse(module, version)) {
            (Some(m), Some(key)) => m.coverage(&key),
            _ => Coverage::Uncovered,
        }
    }

    /// The value of `strukt.field` in `version` of `module`, if the database knows it:
    /// a measured version gets its measurement; a version between measured ones gets
    /// the value of the range around it (none if it falls where the value changed);
    /// anything else — `(devel)`, older or newer releases — gets `None`.
    pub fn lookup(&self, module: &str, version: &str, strukt: &str, field: &str) -> Option<Value> {
        let m = self.modules.get(module)?;
        let key = Key::parse(module, version)?;
        match m.coverage(&key) {
            Coverage::Measured | Coverage::Between => m.value_at(module, &key, strukt, field),
            Coverage::Uncovered => None,
        }
    }

    /// Records what the tracker measured: `fields` maps `(struct, field)` to its value
    /// in `version`. Replaces any earlier measurement of that version.
    pub fn record(
        &mut self,
        module: &str,
        version: &str,
        fields: &BTreeMap<(String, String), Value>,
    ) -> Result<(), FormatError> {
        self.modules.entry(module.to_string()).or_default().record(module, version, fields)
    }

    /// Records what the tracker measured in `version` of `module` built with
    /// GOEXPERIMENT `experiment`: `differs` holds only the fields whose value is not
    /// the plain build's (empty: the experiment moves nothing). Replaces any earlier
    /// measurement of that version with that experiment.
    pub fn record_experiment(
        &mut self,
        experiment: &str,
        module: &str,
        version: &str,
        differs: &BTreeMap<(String, String), Value>,
    ) -> Result<(), FormatError> {
        if !version::is_experiment(experiment) {
            return Err(FormatError::Experiment(experiment.into()));
        }
        let layer = self.experiments.entry(experiment.to_string()).or_default();
        layer.entry(module.to_string()).or_default().record(module, version, differs)
    }

    /// Drops everything measured with `experiment`; whether there was anything.
    pub fn remove_experiment(&mut self, experiment: &str) -> bool {
        self.experiments.remove(experiment).is_some()
    }

    /// The experiments the layer holds.
    pub fn experiments(&self) -> impl Iterator<Item = &str> {
        self.experiments.keys().map(String::as_str)
    }

    /// Versions of `module` measured with `experiment`, ascending.
    pub fn experiment_versions(&self, experiment: &str, module: &str) -> Vec<&str> {
        self.experiment_module(experiment, module)
            .map(|m| m.versions.iter().map(|(_, v)| v.as_str()).collect())
            .unwrap_or_default()
    }

    /// Every `(struct, field)` that `experiment` moves in some version of `module`.
    pub fn experiment_fields(&self, experiment: &str, module: &str) -> Vec<(&str, &str)> {
        let Some(m) = self.experiment_module(experiment, module) else { return Vec::new() };
        m.structs.iter().flat_map(|(s, fs)| fs.keys().map(move |f| (s.as_str(), f.as_str()))).collect()
    }

    /// The ranges of `strukt.field` where `experiment` gives it another value than
    /// the plain build.
    pub fn experiment_ranges(&self, experiment: &str, module: &str, strukt: &str, field: &str) -> &[Range] {
        self.experiment_module(experiment, module)
            .and_then(|m| m.structs.get(strukt)?.get(field))
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    fn experiment_module(&self, experiment: &str, module: &str) -> Option<&Module> {
        self.experiments.get(experiment)?.get(module)
    }

    /// How `version` of `module` built with `experiment` is covered by the layer
    /// (the same rule as [`Database::coverage`], over the versions built with it).
    pub fn experiment_coverage(&self, experiment: &str, module: &str, version: &str) -> Coverage {
        match (self.experiment_module(experiment, module), Key::parse(module, version)) {
            (Some(m), Some(key)) => m.coverage(&key),
            _ => Coverage::Uncovered,
        }
    }

    /// What `experiment` does to `strukt.field` in `version` of `module`.
    pub fn experiment_effect(
        &self,
        experiment: &str,
        module: &str,
        version: &str,
        strukt: &str,
        field: &str,
    ) -> Effect {
        let (Some(m), Some(key)) = (self.experiment_module(experiment, module), Key::parse(module, version)) else {
            return Effect::Unmeasured;
        };
        let at = |k: &Key| m.value_at(module, k, strukt, field);
        match m.coverage(&key) {
            Coverage::Measured => at(&key).map_or(Effect::Same, Effect::Differs),
            Coverage::Between => {
                // The measured neighbours must agree, as in [`Database::lookup`].
                let below = m.versions.iter().rev().find(|(k, _)| *k < key).map(|(k, _)| at(k));
                let above = m.versions.iter().find(|(k, _)| *k > key).map(|(k, _)| at(k));
                match (below, above) {
                    (Some(a), Some(b)) if a == b => a.map_or(Effect::Same, Effect::Differs),
                    _ => Effect::Unknown,
                }
            }
            Coverage::Uncovered => Effect::Unmeasured,
        }
    }

    /// The value of `strukt.field` in `version` of `module` in a binary built with
    /// the GOEXPERIMENT tokens `experiments` (from its build info; empty for a plain
    /// build): the plain value ([`Database::lookup`]) unless a measured experiment
    /// gives the field another one. An experiment the layer has not measured for
    /// this version counts as moving nothing (the caller says so in its log); one
    /// whose effect is unknown here, or two that disagree, make the value unknown.
    pub fn lookup_built(
        &self,
        module: &str,
        version: &str,
        experiments: &[&str],
        strukt: &str,
        field: &str,
    ) -> Option<Value> {
        let mut moved: Option<Value> = None;
        for exp in experiments {
            match self.experiment_effect(exp, module, version, strukt, field) {
                Effect::Differs(v) if moved.is_some_and(|m| m != v) => return None,
                Effect::Differs(v) => moved = Some(v),
                Effect::Unknown => return None,
                Effect::Same | Effect::Unmeasured => {}
            }
        }
        moved.or_else(|| self.lookup(module, version, strukt, field))
    }

    /// Only the measured versions `keep` accepts, everything else dropped (for
    /// comparing a partial regeneration with the committed database).
    /// The experiment layer is restricted alike (`keep` sees the plain module name).
    pub fn restrict(&self, keep: impl Fn(&str, &str) -> bool) -> Database {
        let mut out = Database::default();
        for (name, m) in &self.modules {
            if let Some(m) = m.restrict(name, |v| keep(name, v)) {
                out.modules.insert(name.clone(), m);
            }
        }
        for (exp, modules) in &self.experiments {
            for (name, m) in modules {
                if let Some(m) = m.restrict(name, |v| keep(name, v)) {
                    out.experiments.entry(exp.clone()).or_default().insert(name.clone(), m);
                }
            }
        }
        out
    }

    /// The database without its experiment layer.
    pub fn without_experiments(&self) -> Database {
        Database { experiments: BTreeMap::new(), ..self.clone() }
    }
}

/// What an experiment does to one field in one version ([`Database::experiment_effect`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Measured: the field has this value instead of the plain build's.
    Differs(Value),
    /// Measured: the field has the plain build's value.
    Same,
    /// Between measured versions that disagree.
    Unknown,
    /// The layer has no measurement of this experiment around this version.
    Unmeasured,
}

type Values = BTreeMap<(String, String), BTreeMap<Key, Value>>;

impl Module {
    fn coverage(&self, key: &Key) -> Coverage {
        let (Some((first, _)), Some((last, _))) = (self.versions.first(), self.versions.last()) else {
            return Coverage::Uncovered;
        };
        if self.versions.iter().any(|(k, _)| k == key) {
            Coverage::Measured
        } else if key > first && key < last {
            Coverage::Between
        } else {
            Coverage::Uncovered
        }
    }

    /// The value of the range holding `key`, if one does.
    fn value_at(&self, module: &str, key: &Key, strukt: &str, field: &str) -> Option<Value> {
        let ranges = self.structs.get(strukt)?.get(field)?;
        ranges
            .iter()
            .find(|r| {
                let from = Key::parse(module, &r.from);
                let to = Key::parse(module, &r.to);
                matches!((from, to), (Some(f), Some(t)) if f <= *key && *key <= t)
            })
            .map(|r| r.value)
    }

    fn record(
        &mut self,
        module: &str,
        version: &str,
        fields: &BTreeMap<(String, String), Value>,
    ) -> Result<(), FormatError> {
        let key = Key::parse(module, version)
            .ok_or_else(|| FormatError::Version { module: module.into(), version: version.into() })?;
        let mut values = self.expand(module);
        for per_version in values.values_mut() {
            per_version.remove(&key);
        }
        for ((s, f), v) in fields {
            values.entry((s.clone(), f.clone())).or_default().insert(key.clone(), *v);
        }
        let mut versions: BTreeMap<Key, String> = self.versions.drain(..).collect();
        versions.insert(key, version.to_string());
        *self = Module::compress(versions.into_iter().collect(), values);
        Ok(())
    }

    /// `top`'s measurements win for the versions it lists; with `whole_versions`
    /// (an experiment layer, which lists only moved fields) a version `top` lists is
    /// replaced as a whole, so a field it no longer lists is no longer moved.
    fn extend(&mut self, module: &str, top: Module, whole_versions: bool) {
        let mut values = self.expand(module);
        if whole_versions {
            let top_versions: Vec<&Key> = top.versions.iter().map(|(k, _)| k).collect();
            for per_version in values.values_mut() {
                per_version.retain(|k, _| !top_versions.contains(&k));
            }
        }
        for (field, per_version) in top.expand(module) {
            values.entry(field).or_default().extend(per_version);
        }
        let mut versions: BTreeMap<Key, String> = self.versions.drain(..).collect();
        versions.extend(top.versions);
        *self = Module::compress(versions.into_iter().collect(), values);
    }

    /// Only the versions `keep` accepts; `None` when none is left.
    fn restrict(&self, module: &str, keep: impl Fn(&str) -> bool) -> Option<Module> {
        let versions: Vec<(Key, String)> = self.versions.iter().filter(|(_, v)| keep(v)).cloned().collect();
        if versions.is_empty() {
            return None;
        }
        let mut values = self.expand(module);
        for per_version in values.values_mut() {
            per_version.retain(|k, _| versions.iter().any(|(vk, _)| vk == k));
        }
        Some(Module::compress(versions, values))
    }

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
