//! The offsets database agrees with DWARF: for every binary the end-to-end suites
//! build (each Go toolchain, each grpc-go release, the oldest and newest
//! go-redis, sarama and kafka-go), every tracked struct field the binary's own
//! DWARF describes has exactly that offset — or is absent — in the
//! embedded database, looked up by the binary's Go and module versions. And a
//! stripped binary built with a grpc-go release the database does not cover gets
//! one line per gRPC probe naming the missing fields and that version, while its
//! net/http probes still produce spans. A stripped binary built with a GOEXPERIMENT
//! (`go1.26.8-X:jsonv2` in its build info) is looked up by its release, with the
//! database's experiment layer where it measured the experiment and the plain
//! offsets (and one line saying so) where it did not.

use std::process::Command;
use std::time::Duration;

use gosight_e2e::collector::{require_collector, Collector};
use gosight_e2e::process::{App, Child, HttpConn};
use gosight_e2e::*;
use gosight_goexe::dwarf::struct_fields;
use gosight_goexe::modules::ModuleVersions;
use gosight_goexe::GoBinary;
use gosight_offsets_db::{Database, Value};
use gosight_uprobes::tracked::tracked_fields;

/// Compares one binary; returns (fields compared, mismatches).
fn compare(db: &Database, path: &std::path::Path) -> (usize, Vec<String>) {
    let bin = GoBinary::open(path).unwrap();
    let tracked = tracked_fields();
    let structs: Vec<&str> = tracked.iter().map(|(s, _)| *s).collect();
    let dwarf = struct_fields(&bin, &structs).unwrap();
    assert!(!dwarf.is_empty(), "{}: no DWARF", path.display());
    let versions = ModuleVersions::of(&bin.build);
    let mut compared = 0;
    let mut bad = Vec::new();
    for (s, f) in tracked {
        if !dwarf.has_struct(s) {
            continue; // this program does not use the struct
        }
        let want = dwarf.offset(s, f).map_or(Value::Absent, Value::Offset);
        let lv = versions.for_struct(s);
        let got = lv.version.as_deref().and_then(|v| db.lookup(&lv.module, v, s, f));
        compared += 1;
        if got != Some(want) {
            bad.push(format!("{}: {s}.{f} ({}): DWARF {want:?}, database {got:?}", path.display(), lv.display));
        }
    }
    (compared, bad)
}

#[test]
fn database_offsets_equal_dwarf_for_every_version_the_suites_build() {
    if !require("go", go_bin().is_some()) {
        return;
    }
    let db = Database::embedded();
    let mut binaries = Vec::new();
    for toolchain in [Some("go1.22.12"), Some("go1.24.13"), None] {
        for app in ["httpserver", "chain"] {
            binaries.push(build_go_app(app, toolchain, false));
        }
    }
    for (grpc, toolchain) in
        [("1.60", None), ("1.69", Some("go1.22.12")), ("1.77", Some("go1.24.13")), ("latest", None)]
    {
        let (server, client) = build_grpc_apps(grpc, toolchain, false);
        binaries.extend([server, client]);
    }
    // go-redis v9.7.0 and v9.24.0 (tests/go-apps/redisapp); sarama v1.45.0 and
    // v1.62.0, kafka-go v0.4.47 and v0.4.51 (tests/go-apps/kafkaapp, which links
    // go-redis too).
    for app in ["redisapp", "kafkaapp"] {
        for set in ["old", "new"] {
            binaries.push(build_release_set(app, set, false));
        }
    }
    let mut mismatches = Vec::new();
    for b in &binaries {
        let (n, bad) = compare(&db, b);
        println!("{}: {n} fields compared, {} differ", b.display(), bad.len());
        assert!(n >= 20, "{}: only {n} tracked fields in its DWARF", b.display());
        mismatches.extend(bad);
    }
    assert!(mismatches.is_empty(), "database disagrees with DWARF:\n{}", mismatches.join("\n"));
}

#[test]
fn uncovered_grpc_release_stands_down_and_http_keeps_working() {
    if !require_all() {
        return;
    }
    let _serial = serial();
    let Some(col) = require_collector() else { return };
    let collector = Collector::start(&col);
    let (server_bin, _) = build_grpc_apps("1.59", None, true);
    let dir = tmpdir("uncovered");
    let svc = dir.join("uncovered-grpc");
    std::fs::copy(&server_bin, &svc).unwrap();

    let mut cmd = Command::new(gosight_bin());
    cmd.arg("--target-exe")
        .arg(&svc)
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &collector.http_endpoint)
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .env("RUST_LOG", "gosight=info");
    let mut gs = Child::spawn("gosight", cmd, &dir);
    gs.wait_for_log("gosight starting", Duration::from_secs(30));
    let mut b = Command::new(&svc);
    b.args(["-addr", "127.0.0.1:0", "-http-addr", "127.0.0.1:0"]);
    let bridge = Child::spawn("bridge", b, &dir);
    let http_addr = bridge
        .wait_for_log("http listening on", Duration::from_secs(10))
        .rsplit(' ')
        .next()
        .unwrap()
        .trim()
        .to_string();
    let pid = format!("pid={}", bridge.pid());
    for probe in ["grpc_server", "grpc_client"] {
        let line = gs.wait_for_line(&["probe stands down", &pid, probe], Duration::from_secs(10));
        println!("{}", line.trim());
        assert!(line.contains("offsets not found for google.golang.org/grpc"), "{line}");
        assert!(line.contains("(google.golang.org/grpc v1.59.0)"), "names the version: {line}");
    }
    let note =
        gs.wait_for_line(&["google.golang.org/grpc v1.59.0: not in the offsets database"], Duration::from_secs(5));
    println!("{}", note.trim());
    for probe in ["net_http_server", "net_http_client"] {
        gs.wait_for_line(&["probe attached", &pid, probe], Duration::from_secs(10));
    }
    std::thread::sleep(Duration::from_millis(300));

    let x = HttpConn::connect(&http_addr).request("GET", "/grpc?service=ok", &[], b"");
    assert_eq!(x.status, 200, "{}", String::from_utf8_lossy(&x.body));
    let spans = collector.wait_for(Duration::from_secs(15), |sp| sp.iter().any(|s| s.name == "GET /grpc"));
    assert_eq!(gs.terminate(Duration::from_secs(10)), Some(0));
    let server = spans.iter().find(|s| s.name == "GET /grpc").unwrap();
    assert_eq!(server.kind, 2);
    assert_eq!(server.attr_int("http.response.status_code"), Some(200));
    assert!(spans.iter().all(|s| s.attr_str("rpc.system").is_none()), "no gRPC spans: {spans:#?}");
    println!("uncovered grpc v1.59.0: HTTP span {} exported, gRPC probes stood down", server.name);
}

/// Runs gosight on a stripped httpserver built with `GOEXPERIMENT=<experiment>`
/// (the machine's Go, 1.26), with `db` laid over the embedded database if given;
/// checks that its requests get spans and returns gosight's log line about the
/// experiment.
fn stripped_with_experiment(experiment: &str, db: Option<&std::path::Path>) -> String {
    let _serial = serial();
    let col = require_collector().expect("collector");
    let exe = build_go_app_with("httpserver", None, true, Some(experiment));
    let version = go_version_of(&exe);
    assert!(version.ends_with(&format!("X:{experiment}")), "build info says {version}");
    let dir = tmpdir("experiment");
    let app_exe = dir.join(format!("httpserver-{experiment}"));
    std::fs::copy(&exe, &app_exe).unwrap();
    let collector = Collector::start(&col);
    let app = App::start(&app_exe, &dir, "app");
    let mut cmd = Command::new(gosight_bin());
    cmd.arg("--pid")
        .arg(app.child.pid().to_string())
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &collector.http_endpoint)
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .env("RUST_LOG", "gosight=info");
    if let Some(db) = db {
        cmd.arg("--offsets-db").arg(db);
    }
    let mut gs = Child::spawn("gosight", cmd, &dir);
    let pid = format!("pid={}", app.child.pid());
    gs.wait_for_line(&["probe attached", &pid, "net_http_server"], Duration::from_secs(60));
    let note = gs.wait_for_line(&["offsets database: GOEXPERIMENT"], Duration::from_secs(5));
    println!("{version}: {}", note.trim());
    std::thread::sleep(Duration::from_millis(300));

    let mut conn = HttpConn::connect(&app.addr);
    for path in ["/users/7", "/missing"] {
        conn.request("GET", path, &[], b"");
    }
    let want = app.child.pid() as i64;
    let spans = collector.wait_for(Duration::from_secs(20), |sp| {
        sp.iter().filter(|s| s.resource_int("process.pid") == Some(want) && s.kind == 2).count() >= 2
    });
    assert_eq!(gs.terminate(Duration::from_secs(10)), Some(0));
    let log = gs.output();
    let down: Vec<&str> = log.lines().filter(|l| l.contains("offsets not found")).collect();
    assert!(down.is_empty(), "every offset known: {down:#?}");
    let users = spans.iter().find(|s| s.attr_str("url.path") == Some("/users/7")).expect("span of /users/7");
    assert_eq!(users.attr_int("http.response.status_code"), Some(200));
    assert_eq!(users.attr_str("http.route"), Some("/users/{id}"), "Request.Pattern read at the right offset");
    let missing = spans.iter().find(|s| s.attr_str("url.path") == Some("/missing")).expect("span of /missing");
    assert_eq!(missing.attr_int("http.response.status_code"), Some(404));
    println!("{version}: {} spans, e.g. {} {:?}", spans.len(), users.name, users.attr_str("http.route"));
    note
}

#[test]
fn stripped_binaries_built_with_goexperiments_get_spans() {
    if !require_all() || require_collector().is_none() {
        return;
    }
    let go = go_version_of(&build_go_app("httpserver", None, true));
    let db = Database::embedded();
    assert!(
        db.experiment_versions("jsonv2", "std").contains(&go.as_str()),
        "the embedded database measured GOEXPERIMENT=jsonv2 for the machine's Go ({go})"
    );

    // Measured: the experiment layer answers (jsonv2 moves no field the probes read).
    let note = stripped_with_experiment("jsonv2", None);
    assert!(
        note.contains(&format!("GOEXPERIMENT jsonv2 measured for {go} (moves no field the probes read)")),
        "{note}"
    );
    assert!(!note.contains("NOT measured"), "{note}");

    // Not measured: a database without the arenas layer (laid over the embedded
    // one, replacing it) gives the plain offsets and says so in one line.
    let mut without = db.clone();
    assert!(without.remove_experiment("arenas"), "the embedded database measured arenas");
    let file = tmpdir("experiment-db").join("offsets-without-arenas.json");
    std::fs::write(&file, without.to_json().replacen("\"modules\"", "\"replace\": true,\n  \"modules\"", 1)).unwrap();
    let note = stripped_with_experiment("arenas", Some(&file));
    assert!(note.contains(&format!("GOEXPERIMENT arenas NOT measured for {go}: plain offsets used")), "{note}");
}
