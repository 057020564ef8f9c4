//! The kernel socket probe end to end: a non-Go server (Python's http.server) on
//! IPv4 and IPv6 loopback and Go services (tests/go-apps/chain), driven by a client
//! whose every byte is counted; gosight's connection metrics arrive at a real
//! OpenTelemetry Collector with the right tuples and byte counts for both ends, and
//! the Go spans carry the connection their request travelled on.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

use gosight_e2e::collector::{require_collector, Collector, MetricPoint};
use gosight_e2e::process::{App, Child};
use gosight_e2e::*;

/// One request over a fresh connection, read to EOF: (local address, bytes
/// written, bytes read).
fn exchange(server: SocketAddr, request: &[u8]) -> (SocketAddr, u64, u64) {
    let mut s = TcpStream::connect(server).unwrap();
    let local = s.local_addr().unwrap();
    s.write_all(request).unwrap();
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).unwrap();
    (local, request.len() as u64, answer.len() as u64)
}

fn python_server(dir: &std::path::Path, bind: &str) -> (Child, SocketAddr) {
    let port = free_port();
    let mut cmd = Command::new("python3");
    cmd.args(["-u", "-m", "http.server", &port.to_string(), "--bind", bind]).current_dir(dir);
    let child = Child::spawn(&format!("python-{bind}"), cmd, dir);
    let addr: SocketAddr =
        if bind.contains(':') { format!("[{bind}]:{port}") } else { format!("{bind}:{port}") }.parse().unwrap();
    for _ in 0..100 {
        if TcpStream::connect(addr).is_ok() {
            return (child, addr);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("python http.server on {addr} did not start: {}", child.output());
}

/// The io counter of one series: process, role and direction.
fn io(points: &[MetricPoint], pid: u32, role: &str, direction: &str, peer: &dyn Fn(&MetricPoint) -> bool) -> u64 {
    points
        .iter()
        .filter(|p| p.name == "process.network.io")
        .filter(|p| p.attr_int("process.pid") == Some(pid as i64))
        .filter(|p| p.attr_str("gosight.connection.role") == Some(role))
        .filter(|p| p.attr_str("network.io.direction") == Some(direction))
        .filter(|p| peer(p))
        .map(|p| p.value as u64)
        .sum()
}

#[test]
fn connections_of_go_and_non_go_processes_reach_the_collector() {
    if !require_all() || !require("python3", Command::new("python3").arg("-V").output().is_ok()) {
        return;
    }
    let _serial = serial();
    let Some(col) = require_collector() else { return };
    let collector = Collector::start(&col);
    let dir = tmpdir("connections");
    let svc = dir.join("conn-chain");
    std::fs::copy(build_go_app("chain", None, false), &svc).unwrap();

    let mut cmd = collector.gosight_command();
    cmd.arg("--target-exe").arg(&svc);
    let mut gs = Child::spawn("gosight", cmd, &dir);
    gs.wait_for_log("socket probe attached", Duration::from_secs(30));

    let (py4, py4_addr) = python_server(&dir, "127.0.0.1");
    let (py6, py6_addr) = python_server(&dir, "::1");
    let leaf = App::start_with(&svc, &dir, "leaf", &["-name".into(), "leaf".into()]);
    let front = App::start_with(
        &svc,
        &dir,
        "front",
        &[
            "-name".into(),
            "front".into(),
            "-addr".into(),
            "[::1]:0".into(),
            "-next".into(),
            format!("http://{}", leaf.addr),
        ],
    );
    for app in [&leaf, &front] {
        gs.wait_for_line(
            &["probe attached", &format!("pid={}", app.child.pid()), "net_http_server"],
            Duration::from_secs(10),
        );
    }
    std::thread::sleep(Duration::from_millis(300));

    let me = std::process::id();
    let get = |host: &str| format!("GET / HTTP/1.0\r\nHost: {host}\r\nUser-Agent: gosight-e2e\r\n\r\n").into_bytes();
    let mut expected: Vec<(&str, u32, SocketAddr, SocketAddr, u64, u64)> = Vec::new();
    for (name, server, pid) in [("python v4", py4_addr, py4.pid()), ("python v6", py6_addr, py6.pid())] {
        let (local, sent, read) = exchange(server, &get("x"));
        expected.push((name, pid, server, local, sent, read));
    }
    let leaf_addr: SocketAddr = leaf.addr.parse().unwrap();
    let front_addr: SocketAddr = front.addr.parse().unwrap();
    let (leaf_local, s, r) = exchange(leaf_addr, b"GET /leaf-echo HTTP/1.1\r\nHost: leaf\r\nConnection: close\r\n\r\n");
    expected.push(("go v4", leaf.child.pid(), leaf_addr, leaf_local, s, r));
    let (front_local, s, r) = exchange(front_addr, b"GET /hop HTTP/1.1\r\nHost: front\r\nConnection: close\r\n\r\n");
    expected.push(("go v6 (calls leaf)", front.child.pid(), front_addr, front_local, s, r));

    // Metrics: both ends of every exchange, bytes equal to what the client wrote and read.
    let check = |points: &[MetricPoint]| -> Vec<String> {
        let mut bad = Vec::new();
        for (name, pid, server, local, sent, read) in &expected {
            let to_server = |p: &MetricPoint| p.attr_int("network.peer.port") == Some(server.port() as i64);
            let from_me = |p: &MetricPoint| {
                p.attr_int("server.port") == Some(server.port() as i64)
                    && p.attr_str("network.peer.address") == Some(&local.ip().to_string())
            };
            let got = [
                io(points, me, "client", "transmit", &to_server),
                io(points, me, "client", "receive", &to_server),
                io(points, *pid, "server", "receive", &from_me),
                io(points, *pid, "server", "transmit", &from_me),
            ];
            if got != [*sent, *read, *sent, *read] {
                bad.push(format!("{name}: client tx/rx and server rx/tx {got:?}, want {:?}", [sent, read, sent, read]));
            }
        }
        bad
    };
    let mut bad = Vec::new();
    for _ in 0..100 {
        bad = check(&collector.metric_points());
        if bad.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let points = collector.metric_points();
    assert!(bad.is_empty(), "{}\n{}", bad.join("\n"), gs.output());
    for (name, pid, server, local, sent, read) in &expected {
        println!("{name}: server {server} (pid {pid}) <- client {local}: {sent} bytes sent, {read} read, on both ends");
    }
    for p in points.iter().filter(|p| p.attr_int("process.pid") == Some(py6.pid() as i64)) {
        assert_eq!(p.attr_str("network.type"), Some("ipv6"), "{p:?}");
        assert_eq!(p.attr_str("process.executable.name"), Some("python3"), "{p:?}");
        assert_eq!(p.attr_str("network.transport"), Some("tcp"), "{p:?}");
    }
    let names: HashMap<&str, usize> = points.iter().fold(HashMap::new(), |mut m, p| {
        *m.entry(p.name.as_str()).or_default() += 1;
        m
    });
    for n in [
        "process.network.io",
        "gosight.tcp.connections",
        "gosight.tcp.connection.duration",
        "gosight.tcp.connection.rtt",
    ] {
        assert!(names.contains_key(n), "metric {n} missing: {names:?}");
    }

    // Spans: the Go server spans name the client's socket; front's client span names leaf's.
    let spans = collector.wait_for(Duration::from_secs(10), |sp| {
        sp.iter().filter(|s| s.attrs.contains_key("network.peer.address")).count() >= 3
    });
    assert_eq!(gs.terminate(Duration::from_secs(10)), Some(0));
    let by = |pid: u32, kind: i64| {
        spans
            .iter()
            .find(|s| s.resource_int("process.pid") == Some(pid as i64) && s.kind == kind)
            .unwrap_or_else(|| panic!("no span pid {pid} kind {kind}: {spans:#?}"))
    };
    let leaf_direct = spans
        .iter()
        .find(|s| {
            s.resource_int("process.pid") == Some(leaf.child.pid() as i64)
                && s.attr_int("network.peer.port") == Some(leaf_local.port() as i64)
        })
        .unwrap_or_else(|| panic!("leaf span with the test's port {}: {spans:#?}", leaf_local.port()));
    assert_eq!(leaf_direct.attr_str("network.peer.address"), Some("127.0.0.1"));
    assert_eq!(leaf_direct.attr_str("network.transport"), Some("tcp"));
    assert_eq!(leaf_direct.attr_str("network.type"), Some("ipv4"));
    let front_server = by(front.child.pid(), 2);
    assert_eq!(front_server.attr_str("network.peer.address"), Some("::1"));
    assert_eq!(front_server.attr_int("network.peer.port"), Some(front_local.port() as i64));
    assert_eq!(front_server.attr_str("network.type"), Some("ipv6"));
    let front_client = by(front.child.pid(), 3);
    assert_eq!(front_client.attr_str("network.peer.address"), Some("127.0.0.1"), "{front_client:#?}");
    assert_eq!(front_client.attr_int("network.peer.port"), Some(leaf_addr.port() as i64));
    assert!(gs.output().contains("socket probe totals"), "{}", gs.output());
    let totals = gs.output().lines().find(|l| l.contains("socket probe totals")).unwrap_or_default().to_string();
    println!("{}", totals.trim());
    assert!(totals.contains("lost_records=0"), "{totals}");
}
