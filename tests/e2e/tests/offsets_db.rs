//! The offsets database agrees with DWARF: for every binary the end-to-end suites
//! build (each Go toolchain, each grpc-go release), every tracked struct field the
//! binary's own DWARF describes has exactly that offset — or is absent — in the
//! embedded database, looked up by the binary's Go and module versions. And a
//! stripped binary built with a grpc-go release the database does not cover gets
//! one line per gRPC probe naming the missing fields and that version, while its
//! net/http probes still produce spans.

use std::process::Command;
use std::time::Duration;

use gosight_e2e::collector::{require_collector, Collector};
use gosight_e2e::process::{Child, HttpConn};
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
