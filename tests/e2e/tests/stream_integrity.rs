//! The in-kernel `traceparent` insertion never corrupts a stream. An instrumented Go
//! client (tests/go-apps/rawclient) talks to a raw-socket Python server
//! (tests/e2e/py/rawserver.py) that parses HTTP/1.1 framing itself and records
//! every header and body: bodies that begin like a request line, request lines
//! split across writes, chunked and large bodies, keep-alive sequences and parallel
//! connections. Then a sustained run: wrk → chain service → Python server for 60 s.

use std::collections::HashSet;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use gosight_e2e::collector::{require_collector, Collector};
use gosight_e2e::process::{App, Child, HttpConn};
use gosight_e2e::*;
use serde_json::Value;
use sha2::{Digest, Sha256};

const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

fn rawserver(dir: &Path) -> (Child, String) {
    let mut cmd = Command::new("python3");
    cmd.arg(repo_root().join("tests/e2e/py/rawserver.py"));
    let c = Child::spawn("rawserver", cmd, dir);
    let line = c.wait_for_log("listening on", Duration::from_secs(10));
    let addr = line.rsplit(' ').next().unwrap().trim().to_string();
    (c, addr)
}

fn gosight_for(exe: &Path, dir: &Path, collector: Option<&Collector>) -> Child {
    let mut cmd = Command::new(gosight_bin());
    cmd.arg("--target-exe").arg(exe).env("OTEL_BSP_SCHEDULE_DELAY", "100").env("RUST_LOG", "gosight=info");
    match collector {
        Some(c) => cmd.env("OTEL_EXPORTER_OTLP_ENDPOINT", &c.http_endpoint),
        None => cmd.env("OTEL_TRACES_EXPORTER", "none"),
    };
    let gs = Child::spawn("gosight", cmd, dir);
    let line = gs.wait_for_log("context propagation", Duration::from_secs(30));
    assert!(line.contains("in-kernel"), "{line}");
    gs
}

fn expected_body(prefix: &str, size: usize) -> Vec<u8> {
    let mut b = prefix.replace("\\r", "\r").replace("\\n", "\n").into_bytes();
    b.extend((0..size).map(|k| ALPHABET[k % ALPHABET.len()]));
    b
}

fn server_log(addr: &str) -> Vec<Value> {
    let x = HttpConn::connect(addr).request("GET", "/__log", &[], b"");
    serde_json::from_slice::<Value>(&x.body).unwrap().as_array().unwrap().clone()
}

fn server_stats(addr: &str) -> Value {
    let x = HttpConn::connect(addr).request("GET", "/__stats", &[], b"");
    serde_json::from_slice(&x.body).unwrap()
}

#[test]
fn inserted_headers_never_corrupt_the_stream() {
    if !require_all() {
        return;
    }
    let _serial = serial();
    let Some(col) = require_collector() else { return };
    let collector = Collector::start(&col);
    let dir = tmpdir("stream");
    let exe = dir.join("rawclient-traced");
    std::fs::copy(build_go_app("rawclient", None, false), &exe).unwrap();
    let (_server, addr) = rawserver(&dir);
    let mut gs = gosight_for(&exe, &dir, Some(&collector));

    // (label, args, body prefix, generated body size, requests)
    let trick = "GET / HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n";
    let cases: Vec<(&str, Vec<String>, &str, usize, usize)> = vec![
        (
            "keep-alive posts whose bodies start with a request line",
            vec!["-method".into(), "POST".into()],
            trick,
            1000,
            20,
        ),
        ("request line split across writes", vec!["-long-path".into(), "5000".into()], "", 0, 5),
        (
            "chunked body starting with a request line",
            vec!["-method".into(), "POST".into(), "-chunked".into()],
            trick,
            200_000,
            5,
        ),
        ("large bodies", vec!["-method".into(), "POST".into()], "", 1 << 20, 3),
        (
            "parallel connections",
            vec!["-method".into(), "POST".into(), "-concurrency".into(), "4".into()],
            trick,
            3000,
            40,
        ),
        ("no keep-alive", vec!["-keepalive=false".into()], "", 0, 10),
    ];
    let mut announced_by_server = HashSet::new();
    let mut total = 0;
    for (label, args, prefix, size, n) in &cases {
        // The client waits until gosight has attached to it, then sends.
        let go = dir.join(format!("go-{total}"));
        let mut cmd = Command::new(&exe);
        cmd.arg("-url").arg(format!("http://{addr}/upload")).arg("-n").arg(n.to_string()).args(args);
        cmd.arg("-wait-file").arg(&go);
        if !prefix.is_empty() {
            cmd.arg("-body-prefix").arg(prefix);
        }
        if *size > 0 {
            cmd.arg("-body-size").arg(size.to_string());
        }
        let mut client = Child::spawn(&format!("rawclient-{total}"), cmd, &dir);
        client.wait_for_log("ready", Duration::from_secs(10));
        gs.wait_for_line(
            &["probe attached", "net_http_client", &format!("pid={}", client.pid())],
            Duration::from_secs(10),
        );
        std::fs::write(&go, b"").unwrap();
        let status = client.child.wait().unwrap();
        assert!(status.success(), "{label}: rawclient failed: {}", client.output());
        let records = server_log(&addr);
        assert_eq!(records.len(), *n, "{label}: requests seen by the server");
        let body = if *size > 0 || !prefix.is_empty() { expected_body(prefix, *size) } else { Vec::new() };
        let want_sha = format!("{:x}", Sha256::digest(&body));
        for r in &records {
            assert_eq!(r["framing_ok"], true, "{label}: framing {r}");
            assert_eq!(r["body_len"].as_u64(), Some(body.len() as u64), "{label}: body length {r}");
            assert_eq!(r["body_sha256"].as_str(), Some(want_sha.as_str()), "{label}: body bytes changed");
            let tps = r["traceparent"].as_array().unwrap();
            assert_eq!(tps.len(), 1, "{label}: exactly one traceparent: {r}");
            let tp = tps[0].as_str().unwrap();
            assert!(tp.len() == 55 && tp.starts_with("00-") && tp.ends_with("-01"), "{label}: {tp}");
            assert!(announced_by_server.insert(tp.to_string()), "{label}: traceparent reused: {tp}");
        }
        total += n;
    }
    let stats = server_stats(&addr);
    assert_eq!(stats["bad_framing"], 0, "{stats}");

    // Each traceparent is the one a client span announced.
    let spans = collector.wait_for(Duration::from_secs(15), |sp| sp.iter().filter(|s| s.kind == 3).count() >= total);
    let announced_by_spans: HashSet<String> =
        spans.iter().filter(|s| s.kind == 3).map(|s| format!("00-{}-{}-01", s.trace_id, s.span_id)).collect();
    assert_eq!(announced_by_spans.len(), total, "one CLIENT span per request");
    assert_eq!(announced_by_spans, announced_by_server);
    // Each client run that exited left its 18 uprobes to detach, ~100 ms apiece in the
    // kernel (ARCHITECTURE.md, Lifecycle), and gosight waits for them after its final
    // export: seconds here, not a hang.
    assert_eq!(gs.terminate(Duration::from_secs(30)), Some(0));
    let log = gs.output();
    let totals = log.lines().find(|l| l.contains("context propagation totals")).unwrap_or_default();
    println!("{total} requests intact; {totals}");
}

/// 60 s at the highest rate wrk sustains through an instrumented Go service whose
/// downstream counts malformed, duplicated and missing `traceparent` headers.
#[test]
fn sustained_run_with_propagation() {
    if !require_all() || !require("wrk (apt-get install wrk)", Command::new("wrk").arg("-v").output().is_ok()) {
        return;
    }
    let _serial = serial();
    let secs: u64 = std::env::var("GOSIGHT_SUSTAINED_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(60);
    let dir = tmpdir("sustained");
    let exe = dir.join("chain-sustained");
    std::fs::copy(build_go_app("chain", None, false), &exe).unwrap();
    let (_server, server_addr) = rawserver(&dir);
    let mut gs = gosight_for(&exe, &dir, None);
    let mut app = App::start_with(
        &exe,
        &dir,
        "A",
        &["-name".into(), "A".into(), "-next".into(), format!("http://{server_addr}")],
    );
    gs.wait_for_line(
        &["probe attached", "net_http_client", &format!("pid={}", app.child.pid())],
        Duration::from_secs(10),
    );

    let out = Command::new("wrk")
        .args(["-t1", "-c8", &format!("-d{secs}s"), &format!("http://{}/hop", app.addr)])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let sent: u64 = text
        .split(" requests in")
        .next()
        .and_then(|s| s.split_whitespace().last())
        .and_then(|n| n.parse().ok())
        .expect(&text);
    let non2xx = text.lines().find(|l| l.contains("Non-2xx")).map(|l| l.to_string());
    assert!(app.child.is_running(), "the app crashed");
    assert!(gs.is_running(), "gosight crashed");
    let stats = server_stats(&server_addr);
    assert_eq!(gs.terminate(Duration::from_secs(10)), Some(0));
    println!("{secs} s: wrk sent {sent} requests ({non2xx:?}); downstream stats {stats}");
    assert!(non2xx.is_none(), "{text}");
    assert_eq!(stats["malformed"], 0, "{stats}");
    assert_eq!(stats["duplicate"], 0, "{stats}");
    assert_eq!(stats["bad_framing"], 0, "{stats}");
    assert_eq!(stats["missing"], 0, "{stats}");
    assert!(stats["requests"].as_u64().unwrap() >= sent, "{stats} vs {sent}");
}
