//! go-redis v9 CLIENT spans (uprobes/go_redis) from tests/go-apps/redisapp, end to
//! end: a real Redis server (tests/e2e/src/redis.rs), the app built against the
//! oldest (v9.7.0) and the newest (v9.24.0) go-redis release (and stripped),
//! gosight attached, spans read back from a real OpenTelemetry Collector. Per
//! command exactly one CLIENT span named after its operation, with
//! `db.system.name` `redis`, `db.operation.name`, `db.query.text` without the
//! arguments, `db.namespace` (the database index), `server.address`/`server.port`;
//! one span per pipeline (`PIPELINE`) and transaction (`MULTI`) listing its
//! commands with `db.operation.batch.size`; a missing key (redis.Nil) is not an
//! error, the server's WRONGTYPE error is; each a child of the HTTP server span
//! of the request that ran it (also from another goroutine handed the request's
//! context, and after a panic inside go-redis that the handler recovered) and
//! inside it in time. The connection set-up go-redis runs inside the
//! first command on a connection makes spans that are children of that command.

use std::time::Duration;

use gosight_e2e::collector::{require_collector, Collector, Span};
use gosight_e2e::process::{App, Child, HttpConn};
use gosight_e2e::redis::{require_redis, Redis};
use gosight_e2e::*;

const SERVER: i64 = 2;
const CLIENT: i64 = 3;

/// The database index the app uses (not the default, to see it in db.namespace).
const DB: &str = "2";

/// One route: its path, its HTTP status, and the Redis spans it must make —
/// (name, db.query.text, batch size, error.type), in order.
struct Route {
    path: &'static str,
    status: u16,
    spans: &'static [(&'static str, &'static str, Option<i64>, Option<&'static str>)],
}

fn routes() -> Vec<Route> {
    let r = |path, status, spans| Route { path, status, spans };
    vec![
        r("/health", 200, &[("PING", "PING", None, None)]),
        r("/set?key=user:1&value=secret", 200, &[("SET", "SET ? ?", None, None)]),
        // A panic inside go-redis (the value's MarshalBinary), recovered by the
        // handler: that SET never returns (no span), and the goroutine's later
        // commands still are children of their own server spans.
        r("/panic?key=boom", 500, &[]),
        r("/get?key=user:1", 200, &[("GET", "GET ?", None, None)]),
        // redis.Nil: a 404 for the app, not an error.
        r("/get?key=missing", 404, &[("GET", "GET ?", None, None)]),
        r("/pipeline?key=counter", 200, &[("PIPELINE", "SET ? ?;INCR ?;GET ?;EXPIRE ? ?", Some(4), None)]),
        r("/tx?key=txcounter", 200, &[("MULTI", "INCR ?;INCRBY ? ?;GET ?", Some(3), None)]),
        r(
            "/wrongtype?key=wrong",
            500,
            &[("SET", "SET ? ?", None, None), ("LPUSH", "LPUSH ? ?", None, Some("WRONGTYPE"))],
        ),
        r("/config", 200, &[("CONFIG GET", "CONFIG GET ?", None, None)]),
        // GET on another goroutine, handed the request's context.
        r("/async?key=user:1", 200, &[("GET", "GET ?", None, None)]),
    ]
}

fn run(set: &str, stripped: bool) {
    if !require_all() || !require_redis() {
        return;
    }
    let _serial = serial();
    let Some(col_bin) = require_collector() else { return };
    let exe = build_release_set("redisapp", set, stripped);
    let redis = Redis::start();
    let collector = Collector::start(&col_bin);
    let dir = tmpdir("redis");
    let app = App::start_with(&exe, &dir, "redisapp", &["-redis".into(), redis.addr(), "-db".into(), DB.into()]);
    let pid = app.child.pid();

    let mut cmd = collector.gosight_command();
    cmd.arg("--pid").arg(pid.to_string());
    let mut gs = Child::spawn("gosight", cmd, &dir);
    gs.wait_for_line(&["probe attached", "go_redis_client", &format!("pid={pid}")], Duration::from_secs(60));
    gs.wait_for_line(&["probe attached", "net_http_server", &format!("pid={pid}")], Duration::from_secs(10));

    let mut conn = HttpConn::connect(&app.addr);
    let mut expected = 0;
    for r in routes() {
        let x = conn.request("GET", r.path, &[], b"");
        assert_eq!(x.status, r.status, "{}: {}", r.path, String::from_utf8_lossy(&x.body));
        expected += 1 + r.spans.len();
    }
    let pid = pid as i64;
    let mine = |sp: &[Span]| -> Vec<Span> {
        sp.iter().filter(|s| s.resource_int("process.pid") == Some(pid)).cloned().collect::<Vec<_>>()
    };
    collector.wait_for(Duration::from_secs(20), |sp| mine(sp).len() >= expected);
    std::thread::sleep(Duration::from_millis(800)); // any duplicate arrives
    let code = gs.terminate(Duration::from_secs(10));
    let log = gs.output();
    assert_eq!(code, Some(0), "gosight exit:\n{log}");
    let spans = mine(&collector.spans());
    let hits: Vec<&str> = log.lines().filter(|l| l.contains("probe detached") && l.contains("go_redis")).collect();
    let what = format!("go-redis {set}{}", if stripped { " stripped" } else { "" });
    println!("{what}: {} spans; {hits:?}", spans.len());

    let mut commands = 0;
    for r in routes() {
        let path = r.path.split('?').next().unwrap();
        let what = format!("{what}: {}", r.path);
        let servers: Vec<&Span> =
            spans.iter().filter(|s| s.kind == SERVER && s.attr_str("url.path") == Some(path)).collect();
        let srv = servers
            .iter()
            .find(|s| s.attr_int("http.response.status_code") == Some(r.status as i64))
            .unwrap_or_else(|| panic!("{what}: no server span with status {}: {servers:#?}", r.status));
        let mut db: Vec<&Span> = spans.iter().filter(|s| s.kind == CLIENT && s.parent_span_id == srv.span_id).collect();
        db.sort_by_key(|s| s.start_ns);
        let names: Vec<&str> = db.iter().map(|s| s.name.as_str()).collect();
        let want: Vec<&str> = r.spans.iter().map(|s| s.0).collect();
        assert_eq!(names, want, "{what}: redis spans {db:#?}\ngosight log:\n{log}");
        for (s, (name, text, batch, error)) in db.iter().zip(r.spans) {
            commands += 1;
            assert_eq!(s.trace_id, srv.trace_id, "{what}");
            assert!(s.start_ns >= srv.start_ns && s.end_ns <= srv.end_ns, "{what}: {name} inside its server span");
            assert_eq!(s.attr_str("db.system.name"), Some("redis"), "{what}: {s:#?}");
            assert_eq!(s.attr_str("db.operation.name"), Some(*name), "{what}: {s:#?}");
            assert_eq!(s.attr_str("db.query.text"), Some(*text), "{what}: {s:#?}");
            assert_eq!(s.attr_int("db.operation.batch.size"), *batch, "{what}: {s:#?}");
            assert_eq!(s.attr_str("db.namespace"), Some(DB), "{what}: {s:#?}");
            assert_eq!(s.attr_str("server.address"), Some("127.0.0.1"), "{what}: {s:#?}");
            assert_eq!(s.attr_int("server.port"), Some(redis.port as i64), "{what}: {s:#?}");
            assert_eq!(s.attr_str("error.type"), *error, "{what}: {s:#?}");
            assert_eq!(s.attr_str("db.response.status_code"), *error, "{what}: {s:#?}");
            assert_eq!(s.status_code, if error.is_some() { 2 } else { 0 }, "{what}: status {s:#?}");
        }
    }
    // Every other go-redis span is the connection's set-up, inside a command's span.
    let redis_spans: Vec<&Span> = spans.iter().filter(|s| s.attr_str("db.system.name") == Some("redis")).collect();
    let nested: Vec<&&Span> = redis_spans
        .iter()
        .filter(|s| !spans.iter().any(|p| p.kind == SERVER && p.span_id == s.parent_span_id))
        .collect();
    for s in &nested {
        let parent = redis_spans.iter().find(|p| p.span_id == s.parent_span_id);
        let parent = parent.unwrap_or_else(|| panic!("{what}: {} has no parent: {s:#?}", s.name));
        assert!(
            parent.start_ns <= s.start_ns && s.end_ns <= parent.end_ns,
            "{what}: {} inside {}",
            s.name,
            parent.name
        );
    }
    println!(
        "{what}: connection set-up spans: {:?}",
        nested.iter().map(|s| (s.name.as_str(), s.attr_str("db.query.text"))).collect::<Vec<_>>()
    );
    assert_eq!(redis_spans.len(), commands + nested.len(), "{what}: spans beyond one per command");
    // Arguments never leave the process.
    for s in &redis_spans {
        let q = s.attr_str("db.query.text").unwrap_or_default();
        assert!(!q.contains("secret") && !q.contains("user") && !q.contains("maxmemory"), "argument in {q}");
    }

    // RED: one db.client.operation.duration observation per span, by operation
    // (flushed at SIGTERM).
    let mut want: std::collections::BTreeMap<String, u64> = Default::default();
    for s in &redis_spans {
        *want.entry(s.attr_str("db.operation.name").unwrap_or_default().to_string()).or_default() += 1;
    }
    let mut got: std::collections::BTreeMap<String, u64> = Default::default();
    for _ in 0..50 {
        got.clear();
        for p in collector.metric_points() {
            if p.name == "db.client.operation.duration" && p.attr_str("db.system.name") == Some("redis") {
                assert_eq!(p.attr_str("db.namespace"), Some(DB), "{what}: {p:?}");
                assert!(p.attr_str("db.query.text").is_none(), "{what}: query text in a metric: {p:?}");
                *got.entry(p.attr_str("db.operation.name").unwrap_or_default().to_string()).or_default() +=
                    p.value as u64;
            }
        }
        if got == want {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(got, want, "{what}: db.client.operation.duration counts by operation");

    // Uprobe hits: one entry (more when the stack grew inside it) and one RET per
    // command or pipeline (the panicked SET: an entry only).
    let count = |key: &str| -> u64 {
        hits.iter()
            .flat_map(|l| l.split_whitespace())
            .filter_map(|w| w.strip_prefix(key))
            .filter_map(|n| n.parse::<u64>().ok())
            .sum()
    };
    let (entries, ends) = (count("entry_hits="), count("return_hits="));
    println!("{what}: {entries} entry and {ends} return hits for {} spans", redis_spans.len());
    assert_eq!(ends, redis_spans.len() as u64, "{what}: one RET hit per span");
    assert!(entries >= ends && entries <= ends * 2, "{what}: {entries} entries for {ends} calls");
}

#[test]
fn go_redis_new() {
    run("new", false);
}

#[test]
fn go_redis_new_stripped() {
    run("new", true);
}

#[test]
fn go_redis_old() {
    run("old", false);
}

#[test]
fn go_redis_old_stripped() {
    run("old", true);
}
