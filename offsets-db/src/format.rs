//! Reading and writing the database's JSON text (format 1, see `offsets-db/README.md`).

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::Deserialize;

use crate::{Database, Key, Module, Range, Value};

pub const FORMAT: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("not an offsets database: {0}")]
    Json(#[from] serde_json::Error),
    #[error("offsets database format {0} is not supported (this gosight reads format {FORMAT})")]
    Format(u32),
    #[error("offsets database: {module}: version {version:?} is not a version of that module")]
    Version { module: String, version: String },
    #[error(
        "offsets database: {module} {strukt}.{field}: a range needs exactly one of \"offset\" and \"absent\": true"
    )]
    Value { module: String, strukt: String, field: String },
    #[error("offsets database: {module} {strukt}.{field}: ranges must be ascending and disjoint")]
    Order { module: String, strukt: String, field: String },
    #[error("offsets database: {0:?} is not a GOEXPERIMENT name")]
    Experiment(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDb {
    format: u32,
    #[serde(default)]
    replace: bool,
    #[serde(default, rename = "_about")]
    _about: Option<String>,
    modules: BTreeMap<String, FileModule>,
    #[serde(default)]
    experiments: BTreeMap<String, BTreeMap<String, FileModule>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileModule {
    versions: Vec<String>,
    structs: BTreeMap<String, BTreeMap<String, Vec<FileRange>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRange {
    from: String,
    to: String,
    offset: Option<u64>,
    #[serde(default)]
    absent: bool,
}

pub fn parse(text: &str) -> Result<Database, FormatError> {
    let file: FileDb = serde_json::from_str(text)?;
    if file.format != FORMAT {
        return Err(FormatError::Format(file.format));
    }
    let mut db = Database { replace: file.replace, ..Database::default() };
    for (name, fm) in file.modules {
        let m = module(&name, fm)?;
        db.modules.insert(name, m);
    }
    for (exp, modules) in file.experiments {
        if !crate::version::is_experiment(&exp) {
            return Err(FormatError::Experiment(exp));
        }
        let layer = db.experiments.entry(exp).or_default();
        for (name, fm) in modules {
            let m = module(&name, fm)?;
            layer.insert(name, m);
        }
    }
    Ok(db)
}

fn module(name: &str, fm: FileModule) -> Result<Module, FormatError> {
    let key =
        |v: &str| Key::parse(name, v).ok_or_else(|| FormatError::Version { module: name.into(), version: v.into() });
    let mut versions = Vec::new();
    for v in &fm.versions {
        versions.push((key(v)?, v.clone()));
    }
    versions.sort();
    versions.dedup_by(|a, b| a.0 == b.0);
    let mut structs = BTreeMap::new();
    for (s, fields) in fm.structs {
        let mut out = BTreeMap::new();
        for (f, ranges) in fields {
            let mut prev: Option<Key> = None;
            let mut parsed = Vec::new();
            for r in ranges {
                let value = match (r.offset, r.absent) {
                    (Some(o), false) => Value::Offset(o),
                    (None, true) => Value::Absent,
                    _ => return Err(FormatError::Value { module: name.into(), strukt: s.clone(), field: f.clone() }),
                };
                let (from, to) = (key(&r.from)?, key(&r.to)?);
                if from > to || prev.as_ref().is_some_and(|p| *p >= from) {
                    return Err(FormatError::Order { module: name.into(), strukt: s.clone(), field: f.clone() });
                }
                prev = Some(to);
                parsed.push(Range { from: r.from, to: r.to, value });
            }
            out.insert(f, parsed);
        }
        structs.insert(s, out);
    }
    Ok(Module { versions, structs })
}

/// Canonical text: keys sorted, versions ascending, one version or range per line.
pub fn write(db: &Database) -> String {
    let q = |s: &str| serde_json::to_string(s).expect("strings serialise");
    let mut out = String::new();
    out.push_str("{\n");
    let _ = writeln!(out, "  \"format\": {FORMAT},");
    let _ = writeln!(
        out,
        "  \"_about\": {},",
        q("Go struct field offsets by module version; written by tools/offsets-tracker, format in offsets-db/README.md")
    );
    if db.replace {
        out.push_str("  \"replace\": true,\n");
    }
    out.push_str("  \"modules\": {");
    write_modules(&mut out, &db.modules, "    ");
    out.push_str(if db.modules.is_empty() { "}" } else { "\n  }" });
    // The experiment layer only when there is one: a database without stays as it was.
    if !db.experiments.is_empty() {
        out.push_str(",\n  \"experiments\": {");
        for (ei, (exp, modules)) in db.experiments.iter().enumerate() {
            out.push_str(if ei == 0 { "\n" } else { ",\n" });
            let _ = write!(out, "    {}: {{", q(exp));
            write_modules(&mut out, modules, "      ");
            out.push_str(if modules.is_empty() { "}" } else { "\n    }" });
        }
        out.push_str("\n  }");
    }
    out.push_str("\n}\n");
    out
}

/// The modules of a `"modules"` object (or of one experiment), each indented by `ind`.
fn write_modules(out: &mut String, modules: &BTreeMap<String, Module>, ind: &str) {
    let q = |s: &str| serde_json::to_string(s).expect("strings serialise");
    for (mi, (name, m)) in modules.iter().enumerate() {
        out.push_str(if mi == 0 { "\n" } else { ",\n" });
        let _ = writeln!(out, "{ind}{}: {{", q(name));
        let _ = write!(out, "{ind}  \"versions\": [");
        for (vi, (_, v)) in m.versions.iter().enumerate() {
            out.push_str(if vi == 0 { "\n" } else { ",\n" });
            let _ = write!(out, "{ind}    {}", q(v));
        }
        if m.versions.is_empty() {
            out.push_str("],\n");
        } else {
            let _ = write!(out, "\n{ind}  ],\n");
        }
        let _ = write!(out, "{ind}  \"structs\": {{");
        for (si, (s, fields)) in m.structs.iter().enumerate() {
            out.push_str(if si == 0 { "\n" } else { ",\n" });
            let _ = write!(out, "{ind}    {}: {{", q(s));
            for (fi, (f, ranges)) in fields.iter().enumerate() {
                out.push_str(if fi == 0 { "\n" } else { ",\n" });
                let _ = write!(out, "{ind}      {}: [", q(f));
                for (ri, r) in ranges.iter().enumerate() {
                    out.push_str(if ri == 0 { "\n" } else { ",\n" });
                    let value = match r.value {
                        Value::Offset(o) => format!("\"offset\": {o}"),
                        Value::Absent => "\"absent\": true".to_string(),
                    };
                    let _ = write!(out, "{ind}        {{\"from\": {}, \"to\": {}, {value}}}", q(&r.from), q(&r.to));
                }
                let _ = write!(out, "\n{ind}      ]");
            }
            if fields.is_empty() {
                out.push('}');
            } else {
                let _ = write!(out, "\n{ind}    }}");
            }
        }
        if m.structs.is_empty() {
            out.push_str("}\n");
        } else {
            let _ = write!(out, "\n{ind}  }}\n");
        }
        let _ = write!(out, "{ind}}}");
    }
}
