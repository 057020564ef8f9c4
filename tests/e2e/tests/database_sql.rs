//! database/sql CLIENT spans (uprobes/database_sql) from tests/go-apps/sqlapp,
//! end to end: real PostgreSQL and MariaDB servers (tests/e2e/src/databases.rs),
//! the app built against the old and the new driver releases (and stripped),
//! gosight attached, spans read back from a real OpenTelemetry Collector. Per
//! statement exactly one CLIENT span, named `<operation> <table>`, with
//! `db.system.name` by driver (pgx stdlib, lib/pq, go-sql-driver/mysql, and pgx's
//! own API through pgxpool and pgx.Conn),
//! `db.operation.name`, `db.collection.name`, `db.query.text` without literal
//! values, `server.address`/`server.port` of the server it went to, `db.namespace`
//! (pgx, mysql, lib/pq from v1.11), ERROR on a failed statement with the server's code
//! (`db.response.status_code`, `error.type`), child of the HTTP server span of the
//! request that ran it and inside it in time.

use std::process::Command;
use std::time::Duration;

use gosight_e2e::collector::{require_collector, Collector, Span};
use gosight_e2e::databases::{require_databases, MariaDb, Postgres};
use gosight_e2e::process::{App, Child, HttpConn};
use gosight_e2e::*;

const SERVER: i64 = 2;
const CLIENT: i64 = 3;

/// The app's SQL clients (route prefixes) and their `db.system.name`: database/sql
/// with pgx's stdlib driver, lib/pq and go-sql-driver/mysql; pgx's own API through
/// a pgxpool.Pool and through single pgx.Conns.
const DRIVERS: [(&str, &str); 5] = [
    ("pgx", "postgresql"),
    ("pq", "postgresql"),
    ("mysql", "mysql"),
    ("pgxnative", "postgresql"),
    ("pgxconn", "postgresql"),
];

/// The server's code of a failed statement: PostgreSQL's SQLSTATE, MySQL's
/// error number.
fn server_code(driver: &str, route: &str) -> &'static str {
    match (driver == "mysql", route) {
        (false, "syntax") => "42601",
        (false, "unique") => "23505",
        (true, "syntax") => "1064",
        (true, "unique") => "1062",
        _ => unreachable!("{driver}/{route} does not fail"),
    }
}

/// One route: its path (after `/<driver>/`), its HTTP status, and the database
/// spans it must make — (name, error), in order.
struct Route {
    path: &'static str,
    status: u16,
    spans: &'static [(&'static str, bool)],
    /// db.query.text of the first span (`$` for the driver's placeholder).
    text: Option<&'static str>,
}

fn routes() -> Vec<Route> {
    let r = |path, status, spans, text| Route { path, status, spans, text };
    vec![
        r("select?id=5", 200, &[("SELECT users", false)], Some("SELECT id, name FROM users WHERE id = $1")),
        r("literal", 200, &[("SELECT users", false)], Some("SELECT name FROM users WHERE id = ? AND name <> ?")),
        r("insert", 200, &[("INSERT orders", false)], Some("INSERT INTO orders (user_id, amount) VALUES ($1, $2)")),
        r("prepared", 200, &[("SELECT users", false)], Some("SELECT id, name FROM users WHERE id = $1")),
        r("conn", 200, &[("SELECT users", false)], Some("SELECT id, name FROM users WHERE id = $1")),
        r("tx", 200, &[("BEGIN", false), ("UPDATE users", false), ("COMMIT", false)], None),
        r("rollback", 200, &[("BEGIN", false), ("UPDATE users", false), ("ROLLBACK", false)], None),
        r("syntax", 500, &[("SELECT", true)], Some("SELECT * FORM users")),
        r("unique", 500, &[("INSERT users", true)], Some("INSERT INTO users (id, name) VALUES ($1, $2)")),
        r("hello", 200, &[("SELECT", false)], Some("SELECT ?")),
    ]
}

/// `pgx_only`: the app built with `-tags pgxonly` (pgx's database/sql driver the
/// only one linked: database/sql's functions stay unprobed, pgx's make its spans).
fn run(drivers: &str, stripped: bool, pgx_only: bool) {
    if !require_all() || !require_databases() {
        return;
    }
    let _serial = serial();
    let Some(col_bin) = require_collector() else { return };
    let exe = build_sqlapp_tagged(drivers, None, stripped, pgx_only.then_some("pgxonly"));
    let clients: Vec<(&str, &str)> = DRIVERS.into_iter().filter(|(d, _)| !pgx_only || d.starts_with("pgx")).collect();
    let pg = Postgres::start();
    let my = MariaDb::start();
    let collector = Collector::start(&col_bin);
    let dir = tmpdir("database-sql");
    let app = App::start_with(&exe, &dir, "sqlapp", &["-postgres".into(), pg.url(), "-mysql".into(), my.dsn()]);
    let pid = app.child.pid();

    let mut cmd = Command::new(gosight_bin());
    cmd.arg("--pid")
        .arg(pid.to_string())
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &collector.http_endpoint)
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .env("RUST_LOG", "gosight=info");
    let mut gs = Child::spawn("gosight", cmd, &dir);
    gs.wait_for_line(&["probe attached", "database_sql_client", &format!("pid={pid}")], Duration::from_secs(60));
    gs.wait_for_line(&["probe attached", "net_http_server", &format!("pid={pid}")], Duration::from_secs(10));

    let mut conn = HttpConn::connect(&app.addr);
    let mut expected = 0;
    for &(driver, _) in &clients {
        for r in routes() {
            let x = conn.request("GET", &format!("/{driver}/{}", r.path), &[], b"");
            assert_eq!(x.status, r.status, "/{driver}/{}: {}", r.path, String::from_utf8_lossy(&x.body));
            expected += 1 + r.spans.len();
        }
        // Cancelled under a 50 ms timeout: one span, whatever the driver reports.
        conn.request("GET", &format!("/{driver}/cancel"), &[], b"");
        expected += 2;
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
    let hits: Vec<&str> = log.lines().filter(|l| l.contains("probe detached") && l.contains("database_sql")).collect();
    println!("{drivers}{}: {} spans; {hits:?}", if stripped { " stripped" } else { "" }, spans.len());

    let mut statements = 0;
    for &(driver, system) in &clients {
        for r in routes().iter().chain(std::iter::once(&Route {
            path: "cancel",
            status: 500,
            spans: &[("SELECT", false)],
            text: None,
        })) {
            let path = format!("/{driver}/{}", r.path.split('?').next().unwrap());
            let what = format!("{drivers}: {path}");
            let servers: Vec<&Span> =
                spans.iter().filter(|s| s.kind == SERVER && s.attr_str("url.path") == Some(&path)).collect();
            assert_eq!(servers.len(), 1, "{what}: one server span: {servers:#?}");
            let srv = servers[0];
            let mut db: Vec<&Span> =
                spans.iter().filter(|s| s.kind == CLIENT && s.parent_span_id == srv.span_id).collect();
            db.sort_by_key(|s| s.start_ns);
            let names: Vec<&str> = db.iter().map(|s| s.name.as_str()).collect();
            let want: Vec<&str> = r.spans.iter().map(|(n, _)| *n).collect();
            assert_eq!(names, want, "{what}: database spans {db:#?}\ngosight log:\n{log}");
            for (s, (_, error)) in db.iter().zip(r.spans) {
                statements += 1;
                assert_eq!(s.trace_id, srv.trace_id, "{what}");
                assert!(
                    s.start_ns >= srv.start_ns && s.end_ns <= srv.end_ns,
                    "{what}: {} inside its server span",
                    s.name
                );
                assert_eq!(s.attr_str("db.system.name"), Some(system), "{what}: {s:#?}");
                let port = if system == "mysql" { my.port } else { pg.port };
                assert_eq!(s.attr_str("server.address"), Some("127.0.0.1"), "{what}: {s:#?}");
                assert_eq!(s.attr_int("server.port"), Some(port as i64), "{what}: {s:#?}");
                // lib/pq keeps no database name on its connection before v1.11.
                if driver != "pq" || drivers == "new" {
                    assert_eq!(s.attr_str("db.namespace"), Some("shop"), "{what}: {s:#?}");
                }
                let op = s.name.split(' ').next().unwrap();
                assert_eq!(s.attr_str("db.operation.name"), Some(op), "{what}");
                assert_eq!(s.attr_str("db.collection.name"), s.name.split_once(' ').map(|(_, t)| t), "{what}");
                if r.path == "cancel" {
                    // The driver's own report: pgx's timeout, PostgreSQL's 57014 via
                    // lib/pq, the context's error via mysql.
                    println!("{what}: cancel: error.type {:?}", s.attr_str("error.type"));
                    assert_eq!(s.status_code, 2, "{what}: cancelled is ERROR {s:#?}");
                    assert!(s.attr_str("error.type").is_some(), "{what}: {s:#?}");
                    continue;
                }
                assert_eq!(s.status_code, if *error { 2 } else { 0 }, "{what}: status {s:#?}");
                assert_eq!(s.attr_str("error.type").is_some(), *error, "{what}: error.type {s:#?}");
                if *error {
                    let code = server_code(driver, r.path);
                    assert_eq!(s.attr_str("db.response.status_code"), Some(code), "{what}: {s:#?}");
                    assert_eq!(s.attr_str("error.type"), Some(code), "{what}: {s:#?}");
                }
            }
            if let Some(text) = r.text {
                let text =
                    if driver == "mysql" { text.replace("$1", "?").replace("$2", "?") } else { text.to_string() };
                assert_eq!(db[0].attr_str("db.query.text"), Some(text.as_str()), "{what}");
            }
        }
    }
    // Literal values never leave the process.
    for s in spans.iter().filter(|s| s.kind == CLIENT) {
        let q = s.attr_str("db.query.text").unwrap_or_default();
        assert!(!q.contains("secret") && !q.contains("42"), "literal in db.query.text: {q}");
    }
    // Exactly one span per statement: nothing else from database/sql.
    let db_total = spans.iter().filter(|s| s.attr_str("db.system.name").is_some()).count();
    assert_eq!(db_total, statements, "spans beyond one per statement");

    // Uprobe hits per statement: 2, plus pgx's Prepare from its statement cache
    // (an entry hit, once per statement text and connection: many in a short run
    // on a fresh pool, none in steady state — bench/database_sql.py) and
    // database/sql's no-op rollback after each transaction; pgx's driver among
    // other drivers pays pgx's own 2 too. Ends (return hits) tell them apart.
    let count = |key: &str| -> u64 {
        hits.iter()
            .flat_map(|l| l.split_whitespace())
            .filter_map(|w| w.strip_prefix(key))
            .filter_map(|n| n.parse::<u64>().ok())
            .sum()
    };
    let (entries, ends) = (count("entry_hits="), count("return_hits="));
    println!("{drivers}: {entries} entry and {ends} return hits for {statements} statements");
    if pgx_only {
        // database/sql's functions left out: one end per statement (a few more
        // from closing rows twice), not two.
        assert!(ends < statements as u64 * 12 / 10, "pgx-only: {ends} ends for {statements} statements");
    }
}

#[test]
fn database_sql_new_drivers() {
    run("new", false, false);
}

#[test]
fn database_sql_new_drivers_stripped() {
    run("new", true, false);
}

#[test]
fn database_sql_new_pgx_only() {
    run("new", false, true);
}

#[test]
fn database_sql_old_pgx_only_stripped() {
    run("old", true, true);
}

#[test]
fn database_sql_old_drivers() {
    run("old", false, false);
}

#[test]
fn database_sql_old_drivers_stripped() {
    run("old", true, false);
}
