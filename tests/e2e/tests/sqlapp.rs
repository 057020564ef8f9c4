//! tests/go-apps/sqlapp against real servers (tests/e2e/src/databases.rs), no
//! gosight: every route of every driver answers as documented, built against the
//! old and the new driver releases (and stripped). The ground the SQL probe tests
//! stand on.

use gosight_e2e::databases::{require_databases, MariaDb, Postgres};
use gosight_e2e::process::{App, HttpConn};
use gosight_e2e::*;

const DRIVERS: [&str; 5] = ["pgx", "pq", "mysql", "pgxnative", "pgxconn"];

/// Expected error codes: (PostgreSQL drivers, mysql).
type Codes = Option<(&'static str, &'static str)>;

/// (route, status, expected error code per driver family).
fn cases() -> Vec<(&'static str, u16, Codes)> {
    vec![
        ("select?id=5", 200, None),
        ("select?id=100000", 404, None),
        ("literal", 200, None),
        ("insert", 200, None),
        ("prepared", 200, None),
        ("conn", 200, None),
        ("tx", 200, None),
        ("rollback", 200, None),
        ("syntax", 500, Some(("42601", "1064"))),
        ("unique", 500, Some(("23505", "1062"))),
        ("cancel", 500, None), // code checked below: 57014 or a context error
        ("hello", 200, None),
    ]
}

fn body_json(b: &[u8]) -> serde_json::Value {
    serde_json::from_slice(b).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(b)))
}

fn run(drivers: &str, stripped: bool) {
    if !require_databases() || !require("go on PATH", go_bin().is_some()) {
        return;
    }
    let _serial = serial();
    let exe = build_sqlapp(drivers, None, stripped);
    let pg = Postgres::start();
    let my = MariaDb::start();
    let dir = tmpdir("sqlapp");
    let app = App::start_with(&exe, &dir, "sqlapp", &["-postgres".into(), pg.url(), "-mysql".into(), my.dsn()]);
    let mut conn = HttpConn::connect(&app.addr);

    for driver in DRIVERS {
        for (route, status, codes) in cases() {
            let path = format!("/{driver}/{route}");
            let ex = conn.request("GET", &path, &[], b"");
            let v = body_json(&ex.body);
            assert_eq!(ex.status, status, "{drivers}: {path}: {v}");
            let code = v["code"].as_str().unwrap_or_default();
            if status == 500 && route != "cancel" {
                eprintln!("{drivers}: {path}: code {code}: type {}", v["type"]);
            }
            if let Some((pgc, myc)) = codes {
                assert_eq!(code, if driver == "mysql" { myc } else { pgc }, "{drivers}: {path}: {v}");
            }
            if route == "cancel" {
                assert!(
                    ["57014", "context_deadline_exceeded", "context_canceled"].contains(&code),
                    "{drivers}: {path}: {v}"
                );
                eprintln!("{drivers}: {path}: code {code}: {} ({})", v["error"], v["type"]);
            }
        }
        // Results are the rows asked for.
        let v = body_json(&conn.request("GET", &format!("/{driver}/select?id=42"), &[], b"").body);
        assert_eq!(v["result"]["name"], "user-42", "{driver}: {v}");
        let v = body_json(&conn.request("GET", &format!("/{driver}/literal"), &[], b"").body);
        assert_eq!(v["result"], serde_json::json!(["user-42"]), "{driver}: {v}");
        let v = body_json(&conn.request("GET", &format!("/{driver}/hello"), &[], b"").body);
        assert_eq!(v["result"], 1, "{driver}: {v}");
    }
    // The writes reached the servers.
    let pg_orders: u32 = pg.psql("SELECT count(*) FROM orders").trim().parse().unwrap();
    assert_eq!(pg_orders, 4, "one insert per PostgreSQL driver");
    assert_eq!(pg.psql("SELECT visits FROM users WHERE id = 7").trim(), "4", "one committed tx per PostgreSQL driver");
    assert_eq!(my.mariadb("SELECT count(*) FROM orders").trim(), "1");
    assert_eq!(my.mariadb("SELECT visits FROM users WHERE id = 7").trim(), "1");
    // The cancelled queries did not wedge the pools.
    for driver in DRIVERS {
        assert_eq!(conn.request("GET", &format!("/{driver}/hello"), &[], b"").status, 200, "{driver} after cancel");
    }
    // Schema creation is idempotent: a second app on the same databases starts.
    let again = App::start_with(&exe, &dir, "sqlapp2", &["-postgres".into(), pg.url(), "-mysql".into(), my.dsn()]);
    let ex = HttpConn::connect(&again.addr).request("GET", "/pq/select?id=1", &[], b"");
    assert_eq!(ex.status, 200);
}

#[test]
fn sqlapp_routes_new_drivers() {
    run("new", false);
}

#[test]
fn sqlapp_routes_old_drivers() {
    run("old", false);
}

#[test]
fn sqlapp_routes_old_drivers_stripped() {
    run("old", true);
}
