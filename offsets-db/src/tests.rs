use std::collections::BTreeMap;

use super::*;

const GRPC: &str = "google.golang.org/grpc";

fn measure(db: &mut Database, module: &str, version: &str, fields: &[(&str, &str, Value)]) {
    let map: BTreeMap<(String, String), Value> =
        fields.iter().map(|(s, f, v)| ((s.to_string(), f.to_string()), *v)).collect();
    db.record(module, version, &map).unwrap();
}

fn sample() -> Database {
    let mut db = Database::default();
    for (v, pattern) in [
        ("go1.22.0", Value::Absent),
        ("go1.22.1", Value::Absent),
        ("go1.23.0", Value::Offset(248)),
        ("go1.23.1", Value::Offset(248)),
    ] {
        measure(
            &mut db,
            STD,
            v,
            &[("net/http.Request", "Method", Value::Offset(0)), ("net/http.Request", "Pattern", pattern)],
        );
    }
    measure(&mut db, GRPC, "v1.60.0", &[("google.golang.org/grpc.csAttempt", "t", Value::Offset(16))]);
    measure(&mut db, GRPC, "v1.62.0", &[("google.golang.org/grpc.csAttempt", "t", Value::Offset(16))]);
    db
}

#[test]
fn measurements_compress_into_ranges_and_survive_a_round_trip() {
    let db = sample();
    assert_eq!(
        db.ranges(STD, "net/http.Request", "Pattern"),
        &[
            Range { from: "go1.22.0".into(), to: "go1.22.1".into(), value: Value::Absent },
            Range { from: "go1.23.0".into(), to: "go1.23.1".into(), value: Value::Offset(248) },
        ]
    );
    assert_eq!(db.ranges(STD, "net/http.Request", "Method").len(), 1);
    let text = db.to_json();
    let back = Database::from_json(&text).unwrap();
    assert_eq!(back, db);
    assert_eq!(back.to_json(), text, "canonical text is stable");
}

#[test]
fn recording_in_any_order_gives_the_same_text() {
    let mut a = Database::default();
    let mut b = Database::default();
    let f = |o| [("net/url.URL", "Path", Value::Offset(o))];
    for v in ["go1.22.0", "go1.22.1", "go1.23.0"] {
        measure(&mut a, STD, v, &f(56));
    }
    for v in ["go1.23.0", "go1.22.0", "go1.22.1"] {
        measure(&mut b, STD, v, &f(56));
    }
    assert_eq!(a.to_json(), b.to_json());
    measure(&mut b, STD, "go1.22.1", &f(64));
    assert_eq!(b.ranges(STD, "net/url.URL", "Path").len(), 3, "re-measuring replaces the old value");
}

#[test]
fn unmeasured_versions_have_defined_answers() {
    let db = sample();
    let look = |v: &str| db.lookup(STD, v, "net/http.Request", "Pattern");
    assert_eq!(look("go1.22.0"), Some(Value::Absent));
    assert_eq!(look("go1.23.1"), Some(Value::Offset(248)));
    // Between measured versions where both sides agree: known.
    assert_eq!(db.lookup(STD, "go1.22.1", "net/http.Request", "Method"), Some(Value::Offset(0)));
    assert_eq!(db.lookup(STD, "go1.23rc1", "net/http.Request", "Method"), Some(Value::Offset(0)));
    // ... where the value changed: unknown.
    assert_eq!(look("go1.23rc1"), None);
    assert_eq!(db.coverage(STD, "go1.23rc1"), Coverage::Between);
    // A newer patch release is not extrapolated (patch releases do move fields).
    assert_eq!(look("go1.23.7"), None);
    assert_eq!(db.coverage(STD, "go1.23.7"), Coverage::Uncovered);
    // Older, newer minor, devel: nothing.
    assert_eq!(look("go1.21.13"), None);
    assert_eq!(look("go1.24.0"), None);
    assert_eq!(look("go1.24rc1"), None);
    assert_eq!(look("devel go1.24-abcdef"), None);
    assert_eq!(db.coverage(STD, "go1.24.0"), Coverage::Uncovered);
    // Module versions: pseudo-version between two agreeing releases.
    let t = |v: &str| db.lookup(GRPC, v, "google.golang.org/grpc.csAttempt", "t");
    assert_eq!(t("v1.61.0-0.20240102030405-abcdef012345"), Some(Value::Offset(16)));
    assert_eq!(t("v1.61.3"), Some(Value::Offset(16)), "a release the tracker skipped, between agreeing ones");
    assert_eq!(t("v1.62.1"), None);
    assert_eq!(t("v1.59.0"), None);
    assert_eq!(t("(devel)"), None);
    assert_eq!(db.lookup("example.com/other", "v1.0.0", "x.T", "f"), None);
    assert_eq!(db.lookup(STD, "go1.22.0", "net/http.Request", "NoSuchField"), None);
}

#[test]
fn a_file_extends_or_replaces_the_database_below_it() {
    let mut base = sample();
    let mut top = Database::default();
    measure(&mut top, STD, "go1.24.0", &[("net/http.Request", "Pattern", Value::Offset(256))]);
    measure(&mut top, STD, "go1.23.1", &[("net/http.Request", "Pattern", Value::Offset(250))]);
    let top_text = top.to_json();
    base.extend(Database::from_json(&top_text).unwrap());
    assert_eq!(base.lookup(STD, "go1.24.0", "net/http.Request", "Pattern"), Some(Value::Offset(256)));
    assert_eq!(base.lookup(STD, "go1.23.1", "net/http.Request", "Pattern"), Some(Value::Offset(250)));
    assert_eq!(base.lookup(STD, "go1.22.0", "net/http.Request", "Pattern"), Some(Value::Absent));
    assert_eq!(base.lookup(STD, "go1.23.0", "net/http.Request", "Method"), Some(Value::Offset(0)));
    assert_eq!(base.lookup(GRPC, "v1.60.0", "google.golang.org/grpc.csAttempt", "t"), Some(Value::Offset(16)));

    let mut base = sample();
    let replacing = top_text.replacen("\"modules\"", "\"replace\": true,\n  \"modules\"", 1);
    base.extend(Database::from_json(&replacing).unwrap());
    assert_eq!(base.lookup(GRPC, "v1.60.0", "google.golang.org/grpc.csAttempt", "t"), None);
    assert_eq!(base.lookup(STD, "go1.24.0", "net/http.Request", "Pattern"), Some(Value::Offset(256)));
}

#[test]
fn restricting_to_a_window_equals_measuring_only_that_window() {
    let db = sample();
    let window = db.restrict(|m, v| m == STD && (v == "go1.22.1" || v == "go1.23.0"));
    let mut direct = Database::default();
    measure(
        &mut direct,
        STD,
        "go1.22.1",
        &[("net/http.Request", "Method", Value::Offset(0)), ("net/http.Request", "Pattern", Value::Absent)],
    );
    measure(
        &mut direct,
        STD,
        "go1.23.0",
        &[("net/http.Request", "Method", Value::Offset(0)), ("net/http.Request", "Pattern", Value::Offset(248))],
    );
    assert_eq!(window.to_json(), direct.to_json());
}

#[test]
fn bad_files_are_clear_errors() {
    let err = |t: &str| Database::from_json(t).unwrap_err().to_string();
    assert!(err("not json").starts_with("not an offsets database"));
    assert!(err(r#"{"format": 2, "modules": {}}"#).contains("format 2 is not supported"));
    assert!(err(r#"{"format": 1, "modules": {"std": {"versions": ["1.2"], "structs": {}}}}"#).contains("\"1.2\""));
    let both = r#"{"format": 1, "modules": {"std": {"versions": ["go1.22.0"], "structs": {"a.B": {"c": [{"from": "go1.22.0", "to": "go1.22.0", "offset": 8, "absent": true}]}}}}}"#;
    assert!(err(both).contains("exactly one"));
    let order = r#"{"format": 1, "modules": {"std": {"versions": ["go1.22.0"], "structs": {"a.B": {"c": [{"from": "go1.23.0", "to": "go1.22.0", "offset": 8}]}}}}}"#;
    assert!(err(order).contains("ascending"));
}

#[test]
fn the_embedded_database_parses_and_is_canonical() {
    let db = Database::embedded();
    assert_eq!(db.to_json(), EMBEDDED_JSON, "offsets.json is written in canonical form");
}

fn moved(db: &mut Database, exp: &str, version: &str, fields: &[(&str, &str, Value)]) {
    let map: BTreeMap<(String, String), Value> =
        fields.iter().map(|(s, f, v)| ((s.to_string(), f.to_string()), *v)).collect();
    db.record_experiment(exp, STD, version, &map).unwrap();
}

#[test]
fn the_experiment_layer_moves_only_what_it_measured_moved() {
    let mut db = sample();
    // noswissmap moves Method in go1.23.0 and go1.23.1, nothing in go1.22.0.
    moved(&mut db, "noswissmap", "go1.22.0", &[]);
    moved(&mut db, "noswissmap", "go1.23.0", &[("net/http.Request", "Method", Value::Offset(8))]);
    moved(&mut db, "noswissmap", "go1.23.1", &[("net/http.Request", "Method", Value::Offset(8))]);
    moved(&mut db, "jsonv2", "go1.22.1", &[]);
    moved(&mut db, "jsonv2", "go1.23.1", &[]);
    let text = db.to_json();
    assert!(text.contains("\"experiments\": {\n    \"jsonv2\": {\n      \"std\": {"), "{text}");
    let back = Database::from_json(&text).unwrap();
    assert_eq!(back, db);
    assert_eq!(back.to_json(), text, "canonical text is stable");
    assert_eq!(db.experiments().collect::<Vec<_>>(), ["jsonv2", "noswissmap"]);
    assert_eq!(db.experiment_versions("noswissmap", STD), ["go1.22.0", "go1.23.0", "go1.23.1"]);

    let m = |v: &str, exps: &[&str]| db.lookup_built(STD, v, exps, "net/http.Request", "Method");
    assert_eq!(m("go1.23.1", &[]), Some(Value::Offset(0)));
    assert_eq!(m("go1.23.1", &["noswissmap"]), Some(Value::Offset(8)), "measured and moved");
    assert_eq!(m("go1.22.0", &["noswissmap"]), Some(Value::Offset(0)), "measured, not moved");
    assert_eq!(m("go1.23.1", &["jsonv2"]), Some(Value::Offset(0)));
    assert_eq!(m("go1.23.1", &["jsonv2", "noswissmap"]), Some(Value::Offset(8)));
    // Unmeasured experiment (or version): the plain value.
    assert_eq!(m("go1.22.0", &["jsonv2"]), Some(Value::Offset(0)));
    assert_eq!(db.experiment_effect("jsonv2", STD, "go1.22.0", "net/http.Request", "Method"), Effect::Unmeasured);
    assert_eq!(m("go1.23.1", &["arenas"]), Some(Value::Offset(0)));
    // Between measured versions: known where both sides agree.
    assert_eq!(db.experiment_effect("noswissmap", STD, "go1.23rc1", "net/http.Request", "Method"), Effect::Unknown);
    assert_eq!(m("go1.23rc1", &["noswissmap"]), None);
    assert_eq!(db.experiment_coverage("noswissmap", STD, "go1.22.1"), Coverage::Between);
    assert_eq!(m("go1.22.1", &["noswissmap"]), None, "go1.22.0 and go1.23.0 disagree");
    assert_eq!(db.experiment_effect("jsonv2", STD, "go1.23.0", "net/http.Request", "Method"), Effect::Same);
    assert_eq!(m("go1.23.0", &["jsonv2"]), Some(Value::Offset(0)));
    // Fields the experiment never moves keep their plain value.
    assert_eq!(
        db.lookup_built(STD, "go1.23.1", &["noswissmap"], "net/http.Request", "Pattern"),
        Some(Value::Offset(248))
    );

    // Re-measuring a version replaces it as a whole; restricting keeps the layer.
    moved(&mut db, "noswissmap", "go1.23.1", &[]);
    assert_eq!(db.lookup_built(STD, "go1.23.1", &["noswissmap"], "net/http.Request", "Method"), Some(Value::Offset(0)));
    let window = db.restrict(|_, v| v == "go1.23.0");
    assert_eq!(window.experiment_versions("noswissmap", STD), ["go1.23.0"]);
    assert!(window.experiment_versions("jsonv2", STD).is_empty());
    assert_eq!(window.experiments().collect::<Vec<_>>(), ["noswissmap"]);
    assert_eq!(window.without_experiments().experiments().count(), 0);
    let mut fewer = db.clone();
    assert!(fewer.remove_experiment("jsonv2") && !fewer.remove_experiment("jsonv2"));
    assert_eq!(fewer.experiments().collect::<Vec<_>>(), ["noswissmap"]);
    assert_eq!(Database::from_json(&sample().to_json()).unwrap().experiments().count(), 0);
}

#[test]
fn an_extending_file_replaces_experiment_versions_as_a_whole() {
    let mut base = sample();
    moved(&mut base, "noswissmap", "go1.23.0", &[("net/http.Request", "Method", Value::Offset(8))]);
    let mut top = Database::default();
    moved(&mut top, "noswissmap", "go1.23.0", &[]);
    moved(&mut top, "noswissmap", "go1.23.1", &[("net/http.Request", "Pattern", Value::Offset(256))]);
    base.extend(Database::from_json(&top.to_json()).unwrap());
    assert_eq!(
        base.lookup_built(STD, "go1.23.0", &["noswissmap"], "net/http.Request", "Method"),
        Some(Value::Offset(0))
    );
    assert_eq!(
        base.lookup_built(STD, "go1.23.1", &["noswissmap"], "net/http.Request", "Pattern"),
        Some(Value::Offset(256))
    );
    let bad = r#"{"format": 1, "modules": {}, "experiments": {"X:jsonv2": {}}}"#;
    assert!(Database::from_json(bad).unwrap_err().to_string().contains("not a GOEXPERIMENT name"));
}
