//! Regenerates a small window — Go go1.24.12..go1.24.13 (standard library),
//! grpc-go v1.69.2..v1.69.4 and one release of every other tracked module (each
//! bounded, so a new upstream release never enters the window) — from an empty database and an empty cache, and checks
//! the result byte for byte against the committed `offsets-db/offsets.json`
//! restricted to exactly the versions the run measured.
//!
//! Two releases per module: go1.24.12 is published but missing from the proxy's
//! toolchain list (the tracker finds it by its `.info`); grpc v1.69.3 was never
//! published, so the grpc window reaches down to v1.69.2.
//!
//! Needs Go on PATH and the Go module proxy (toolchains and modules are downloaded
//! unless GOMODCACHE has them). Without them the test prints a skip line, or fails
//! when `CI=true`.

use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use gosight_offsets_db::{Database, STD};

const GRPC: &str = "google.golang.org/grpc";

fn committed_db() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../offsets-db/offsets.json")
}

/// `host:port` of the first http(s) proxy in GOPROXY (environment, else `go env`).
fn proxy_address() -> Option<String> {
    let from_env = std::env::var("GOPROXY").ok().filter(|v| !v.trim().is_empty());
    let goproxy = from_env.or_else(|| {
        let out = Command::new("go").args(["env", "GOPROXY"]).env("GOTOOLCHAIN", "local").output().ok()?;
        Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
    })?;
    let url =
        goproxy.split([',', '|']).map(str::trim).find(|e| e.starts_with("http://") || e.starts_with("https://"))?;
    let (scheme, rest) = url.split_once("://")?;
    let host = rest.split('/').next()?;
    Some(if host.contains(':') {
        host.to_string()
    } else {
        format!("{host}:{}", if scheme == "https" { 443 } else { 80 })
    })
}

/// Why the test cannot run here, if it cannot.
fn missing_prerequisite() -> Option<String> {
    match Command::new("go").arg("version").env("GOTOOLCHAIN", "local").output() {
        Ok(out) if out.status.success() => {}
        _ => return Some("Go (`go version` does not run)".into()),
    }
    let Some(addr) = proxy_address() else {
        return Some("an http(s) Go module proxy in GOPROXY".into());
    };
    let reachable = addr
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .is_some_and(|a| TcpStream::connect_timeout(&a, Duration::from_secs(10)).is_ok());
    if !reachable {
        return Some(format!("network access to the Go module proxy ({addr})"));
    }
    None
}

/// The first line where two texts differ, for a readable failure.
fn first_difference(a: &str, b: &str) -> String {
    for (i, (x, y)) in a.lines().zip(b.lines()).enumerate() {
        if x != y {
            return format!("line {}: regenerated {x:?}, committed {y:?}", i + 1);
        }
    }
    format!("one text is a prefix of the other ({} vs {} lines)", a.lines().count(), b.lines().count())
}

#[test]
fn small_window_regenerates_the_committed_database() {
    if let Some(what) = missing_prerequisite() {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("the offsets-tracker window test needs {what} (CI=true: not skipping)");
        }
        println!("skipped: the offsets-tracker window test needs {what}");
        return;
    }
    let tmp = std::env::temp_dir().join(format!("offsets-tracker-window-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).unwrap();
    let out = tmp.join("offsets.json");
    let started = Instant::now();
    let run = Command::new(env!("CARGO_BIN_EXE_offsets-tracker"))
        .args(["--db-empty", "--jobs", "2"])
        .args(["--go-from", "go1.24.12", "--go-to", "go1.24.13"])
        .args(["--from", "grpc=v1.69.2", "--to", "grpc=v1.69.4"])
        .args(["--from", "pgx=v5.13.0", "--to", "pgx=v5.13.0"])
        .args(["--from", "pq=v1.12.3", "--to", "pq=v1.12.3"])
        .args(["--from", "mysql=v1.11.0", "--to", "mysql=v1.11.0"])
        .args(["--from", "goredis=v9.24.0", "--to", "goredis=v9.24.0"])
        .args(["--from", "sarama=v1.62.0", "--to", "sarama=v1.62.0"])
        .args(["--from", "kafka-go=v0.4.51", "--to", "kafka-go=v0.4.51"])
        .arg("--out")
        .arg(&out)
        .arg("--cache")
        .arg(tmp.join("cache"))
        .output()
        .expect("run offsets-tracker");
    println!("offsets-tracker ran {:.0} s", started.elapsed().as_secs_f64());
    let report = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "offsets-tracker failed:\n{report}\n{}", String::from_utf8_lossy(&run.stderr));

    let text = std::fs::read_to_string(&out).unwrap();
    let regenerated = Database::from_json(&text).unwrap();
    assert_eq!(regenerated.versions(STD), ["go1.24.12", "go1.24.13"]);
    assert_eq!(regenerated.versions(GRPC), ["v1.69.2", "v1.69.4"]);
    assert_eq!(regenerated.versions("github.com/jackc/pgx/v5"), ["v5.13.0"]);
    assert_eq!(regenerated.versions("github.com/lib/pq"), ["v1.12.3"]);
    assert_eq!(regenerated.versions("github.com/go-sql-driver/mysql"), ["v1.11.0"]);
    assert_eq!(regenerated.versions("github.com/redis/go-redis/v9"), ["v9.24.0"]);
    assert_eq!(regenerated.versions("github.com/IBM/sarama"), ["v1.62.0"]);
    assert_eq!(regenerated.versions("github.com/segmentio/kafka-go"), ["v0.4.51"]);
    assert!(regenerated.modules().count() >= 6, "grpc's genproto module is measured too:\n{text}");

    let committed = Database::from_json(&std::fs::read_to_string(committed_db()).unwrap()).unwrap();
    let expected = committed.restrict(|m, v| regenerated.versions(m).contains(&v)).to_json();
    assert!(
        text == expected,
        "regenerated window differs from offsets-db/offsets.json: {}\n{report}",
        first_difference(&text, &expected)
    );
    let _ = std::fs::remove_dir_all(&tmp);
}
