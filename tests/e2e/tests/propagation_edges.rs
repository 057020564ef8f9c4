//! In-kernel trace context propagation at its edges: sockets a Go program has
//! enrolled keep their ordinary semantics (FIONREAD, netpoller wake-ups, bytes);
//! HTTP/1 and gRPC connections opened before gosight started get `traceparent`
//! once it attaches; a malformed `traceparent` an app passes on is replaced by a
//! well-formed one; two gosight instances never insert twice; a failed start-up
//! self-check turns propagation off (spans still flow); `kill -9` of gosight
//! leaves no pinned state and breaks no connection. The log lines and counters
//! read here are the sidecar's interface (`context propagation: target
//! registered`, `context propagation for target`, `... totals`, `stood down`,
//! `self-check failed`).
//!
//! `GOSIGHT_PROPAGATION=off cargo test ... --test propagation_edges` runs the same
//! harness without propagation (the tests then fail on the traceparent checks).

mod edges_support;

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use edges_support::*;
use gosight_e2e::collector::{require_collector, Collector, Span};
use gosight_e2e::process::{App, Child, HttpConn};
use gosight_e2e::*;
use serde_json::Value;

const SECS: fn(u64) -> Duration = Duration::from_secs;

fn pid_of(s: &Span) -> i64 {
    s.resource_int("process.pid").unwrap_or(-1)
}

/// Waits until every traceparent in `tps` names a CLIENT span of `pid` (same
/// trace id and span id), then asserts it.
fn assert_client_spans(collector: &Collector, pid: u32, tps: &[String], gs: &Child) {
    let is_span = |sp: &[Span], tp: &str| {
        let (t, s) = ids(tp);
        sp.iter().any(|x| x.kind == CLIENT && pid_of(x) == pid as i64 && x.trace_id == t && x.span_id == s)
    };
    let spans = collector.wait_for(SECS(20), |sp| tps.iter().all(|tp| is_span(sp, tp)));
    let missing: Vec<&String> = tps.iter().filter(|tp| !is_span(&spans, tp)).collect();
    assert!(missing.is_empty(), "traceparents that are no CLIENT span of pid {pid}: {missing:?}\n{}", gs.output());
}

/// A counter of a log line, 0 when the line or the counter is missing.
fn counter(line: &Option<String>, key: &str) -> i64 {
    line.as_deref().and_then(|l| field(l, key)).unwrap_or(0)
}

/// Edge 1: A Go client whose sockets are enrolled (sockcheck, traced with its server)
/// sees FIONREAD, epoll wake-ups and bytes exactly as without gosight; the server
/// sees exactly one well-formed traceparent per request.
#[test]
fn enrolled_go_sockets_keep_their_semantics() {
    if !require_all() {
        return;
    }
    let _serial = serial();
    let Some(col) = require_collector() else { return };
    let collector = Collector::start(&col);
    let dir = tmpdir("sockcheck");
    let svc = dir.join("sockcheck-svc");
    std::fs::copy(build_go_app("sockcheck", None, false), &svc).unwrap();
    let mut gs = spawn_gosight(gosight_cmd(None, &svc, Some(&collector), &[]), &dir, "gosight");
    let server = App::start_with(&svc, &dir, "server", &["-mode".into(), "server".into()]);
    wait_attached(&gs, server.child.pid(), &["net_http_server"]);

    let (conns, load) = (50, 200);
    let go = dir.join("go");
    let mut cmd = Command::new(&svc);
    cmd.args(["-mode", "client", "-target", &format!("http://{}", server.addr)])
        .args(["-conns", &conns.to_string(), "-load", &load.to_string(), "-wait-file"])
        .arg(&go);
    let mut client = Child::spawn("client", cmd, &dir);
    client.wait_for_log("ready", SECS(10));
    let cpid = client.pid();
    wait_attached(&gs, cpid, &["net_http_client"]);
    let reg = registered(&gs, cpid);
    std::fs::write(&go, b"").unwrap();
    let st = wait_exit(&mut client, SECS(45));
    let out = client.output();
    assert!(st.success(), "client: {out}");
    let res: Value = out
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str::<Value>(l).ok().filter(|v| v.get("load_requests").is_some()))
        .unwrap_or_else(|| panic!("no result line: {out}"));
    println!("sockcheck client: {res}");
    // Every check runs; the failures are reported together.
    let mut problems = Vec::new();
    for (k, want) in [
        ("conns", conns),
        ("conn_errors", 0),
        ("bursts", conns * 4),
        ("wrong_fionread", 0),
        ("missed_wakeups", 0),
        ("wrong_bytes", 0),
        ("load_requests", load),
        ("load_errors", 0),
    ] {
        if res[k].as_i64() != Some(want) {
            problems.push(format!("{k} = {}, want {want}", res[k]));
        }
    }
    let seen = get_json(&server.addr, "/seen");
    let seen = seen.as_array().expect("list");
    let count = |p: &str| seen.iter().filter(|e| e["path"] == p).count() as i64;
    if (count("/upgrade"), count("/echo")) != (conns, load) {
        problems.push(format!("the server saw {} /upgrade and {} /echo requests", count("/upgrade"), count("/echo")));
    }
    let bad: Vec<&Value> =
        seen.iter().filter(|e| e["n"] != 1 || !valid_traceparent(e["traceparent"].as_str().unwrap_or(""))).collect();
    if !bad.is_empty() {
        problems.push(format!(
            "{} of {} requests without exactly one well-formed traceparent, e.g. {:?}",
            bad.len(),
            seen.len(),
            &bad[..bad.len().min(3)]
        ));
    } else {
        let tps: Vec<String> = seen.iter().map(|e| e["traceparent"].as_str().unwrap().to_string()).collect();
        assert_eq!(tps.iter().collect::<HashSet<_>>().len(), tps.len(), "one client span per request");
        assert_client_spans(&collector, cpid, &tps, &gs);
    }
    let head: Vec<&str> = out.lines().take(40).collect();
    assert!(problems.is_empty(), "{}\nclient output (head):\n{}", problems.join("\n"), head.join("\n"));

    assert_eq!(gs.terminate(SECS(30)), Some(0));
    let line = target_counters(&gs, cpid);
    println!("{reg:?}\n{line:?}\n{:?}", totals(&gs));
    assert!(reg.is_some(), "no `target registered` line for the client (pid {cpid}):\n{}", gs.output());
    assert!(
        counter(&line, "enrolled") > 0 && counter(&line, "kept_http1") > 0,
        "client counters: {line:?}\n{}",
        gs.output()
    );
}

/// Edge 2: A → B → C serve and pool keep-alive connections before gosight starts; once
/// it attaches, requests over those same connections carry traceparent, and
/// bodies pass byte for byte.
#[test]
fn existing_http1_connections_get_traceparent() {
    if !require_all() {
        return;
    }
    let _serial = serial();
    let Some(col) = require_collector() else { return };
    let collector = Collector::start(&col);
    let dir = tmpdir("existing-http1");
    let svc = chain_exe(&dir);
    let (a, b, c) = start_chain(&svc, &dir, None);
    for _ in 0..10 {
        assert_eq!(get_json(&a.addr, "/fanout?n=8").as_array().map(Vec::len), Some(8));
        if dials(&a.addr) >= 4 && dials(&b.addr) >= 4 {
            break;
        }
    }
    let (a_dials, b_dials) = (dials(&a.addr), dials(&b.addr));
    assert!(a_dials >= 2 && b_dials >= 2, "pooled connections: A {a_dials}, B {b_dials}");
    let mut conn = HttpConn::connect(&a.addr);
    assert_eq!(json_on(&mut conn, "GET", "/hop", &[], b"")["downstream"]["traceparent"], "", "no gosight yet");

    let mut gs = spawn_gosight(gosight_cmd(None, &svc, Some(&collector), &[]), &dir, "gosight");
    for app in [&a, &b, &c] {
        wait_attached(&gs, app.child.pid(), HTTP_PROBES);
    }
    let reg = registered(&gs, a.child.pid());
    println!("A: {reg:?}");

    let mut rng = Rng::seeded();
    let mut at_b = Vec::new(); // what B received from A
    let mut at_c = Vec::new(); // what C received from B
    for i in 0..40 {
        let len = (rng.next() % 300_000) as usize + 1;
        let body = rng.bytes(len);
        let v = json_on(&mut conn, "POST", "/post-next", &[], &body);
        assert_eq!(v["len"].as_u64(), Some(body.len() as u64), "request {i}");
        assert_eq!(v["sha256"].as_str(), Some(sha256_hex(&body).as_str()), "request {i}: body changed");
        let got = strings(&v["traceparent"]);
        assert!(got.len() == 1 && valid_traceparent(&got[0]), "request {i}: B got {got:?}\n{}", gs.output());
        at_b.push(got[0].clone());
        let got = strings(&json_on(&mut conn, "GET", "/forward-headers?to=/leaf-echo", &[], b""));
        assert!(got.len() == 1 && valid_traceparent(&got[0]), "request {i}: B got {got:?}");
        at_b.push(got[0].clone());
        let v = json_on(&mut conn, "GET", "/hop", &[], b"");
        let (tb, tc) = (
            v["downstream"]["traceparent"].as_str().unwrap(),
            v["downstream"]["downstream"]["traceparent"].as_str().unwrap(),
        );
        assert!(valid_traceparent(tb) && valid_traceparent(tc), "request {i}: B got {tb:?}, C got {tc:?}");
        assert_eq!(ids(tb).0, ids(tc).0, "one trace across A, B and C");
        at_b.push(tb.to_string());
        at_c.push(tc.to_string());
    }
    // Several pooled connections at once.
    let n = a_dials.min(b_dials).min(4);
    for _ in 0..5 {
        for echo in get_json(&a.addr, &format!("/fanout?n={n}&to=/leaf-echo")).as_array().unwrap() {
            let got = strings(echo);
            assert!(got.len() == 1 && valid_traceparent(&got[0]), "fan-out: B got {got:?}");
            at_b.push(got[0].clone());
        }
    }
    assert_eq!(dials(&a.addr), a_dials, "A dialled new connections: the pooled ones were not reused");
    assert_eq!(dials(&b.addr), b_dials, "B dialled new connections");
    assert_client_spans(&collector, a.child.pid(), &at_b, &gs);
    assert_client_spans(&collector, b.child.pid(), &at_c, &gs);

    assert_eq!(gs.terminate(SECS(30)), Some(0));
    let line = target_counters(&gs, a.child.pid());
    println!("{line:?}\n{:?}", totals(&gs));
    let reg = reg.unwrap_or_else(|| panic!("no `target registered` line for A:\n{}", gs.output()));
    assert!(field(&reg, "existing_enrolled").is_some_and(|n| n > 0), "A's pooled connections enrolled: {reg}");
    assert!(counter(&line, "existing_enrolled") > 0, "{line:?}");
}

/// Edge 3: A gRPC client that connected and made calls before gosight started keeps
/// calling on the same ClientConn: every call after gosight attached has its
/// server span as the child of its client span.
#[test]
fn existing_grpc_connection_gets_traceparent() {
    if !require_all() {
        return;
    }
    let _serial = serial();
    let Some(col) = require_collector() else { return };
    let collector = Collector::start(&col);
    let (server_bin, client_bin) = build_grpc_apps("latest", None, false);
    let dir = tmpdir("existing-grpc");
    let (server_exe, client_exe) = (dir.join("grpc-server"), dir.join("grpc-client"));
    std::fs::copy(&server_bin, &server_exe).unwrap();
    std::fs::copy(&client_bin, &client_exe).unwrap();
    let mut scmd = Command::new(&server_exe);
    scmd.args(["-addr", "127.0.0.1:0"]);
    let server = Child::spawn("server", scmd, &dir);
    let target = server.wait_for_log("listening on", SECS(10)).rsplit(' ').next().unwrap().trim().to_string();
    let (warmup, calls) = (3, 15);
    let go = dir.join("go");
    let mut ccmd = Command::new(&client_exe);
    ccmd.args(["-target", &target, "-warmup", &warmup.to_string(), "-n", &calls.to_string(), "-wait-file"]).arg(&go);
    let mut client = Child::spawn("client", ccmd, &dir);
    client.wait_for_log("ready", SECS(15)); // connected, warm-up calls done

    let mut gs = spawn_gosight(gosight_cmd(None, &dir.join("grpc-*"), Some(&collector), &[]), &dir, "gosight");
    wait_attached(&gs, server.pid(), &["grpc_server"]);
    wait_attached(&gs, client.pid(), &["grpc_client"]);
    let reg = registered(&gs, client.pid());
    std::fs::write(&go, b"").unwrap();
    let st = wait_exit(&mut client, SECS(30));
    assert!(st.success(), "client: {}", client.output());

    let incoming: Vec<String> = server
        .output()
        .lines()
        .filter_map(|l| l.strip_prefix("incoming traceparent:"))
        .map(|v| v.trim().to_string())
        .collect();
    assert_eq!(incoming.len(), warmup + calls, "{incoming:?}");
    assert!(incoming[..warmup].iter().all(String::is_empty), "warm-up calls were made without gosight: {incoming:?}");
    let after: Vec<String> = incoming[warmup..].to_vec();
    assert!(
        after.iter().all(|v| valid_traceparent(v)),
        "calls on the existing conn after attach: {after:?}\n{}",
        gs.output()
    );

    let spans = collector.wait_for(SECS(20), |sp| sp.iter().filter(|s| s.kind == SERVER).count() >= calls);
    let servers: Vec<&Span> = spans.iter().filter(|s| s.kind == SERVER).collect();
    let parented = servers
        .iter()
        .filter(|srv| {
            spans.iter().any(|c| {
                c.kind == CLIENT
                    && c.span_id == srv.parent_span_id
                    && c.trace_id == srv.trace_id
                    && pid_of(c) == client.pid() as i64
            })
        })
        .count();
    println!("{parented} of {} server spans are children of their client span; {reg:?}", servers.len());
    assert_eq!(servers.len(), calls, "{servers:#?}\n{}", gs.output());
    assert!(parented >= 10 && parented == calls, "{parented} of {calls} parented\n{}", gs.output());
    assert_eq!(gs.terminate(SECS(30)), Some(0));
    let reg = reg.unwrap_or_else(|| panic!("no `target registered` line for the client:\n{}", gs.output()));
    assert!(field(&reg, "existing_enrolled").is_some_and(|n| n > 0), "{reg}");
}

/// Edge 4: An app that passes on a malformed traceparent (a proxy copying its incoming
/// headers) has it replaced by one well-formed value naming its client span; a
/// valid one passes unchanged.
#[test]
fn malformed_traceparent_is_replaced() {
    if !require_all() {
        return;
    }
    let _serial = serial();
    let Some(col) = require_collector() else { return };
    let collector = Collector::start(&col);
    let dir = tmpdir("malformed");
    let svc = chain_exe(&dir);
    let mut gs = spawn_gosight(gosight_cmd(None, &svc, Some(&collector), &[]), &dir, "gosight");
    let (a, b, c) = start_chain(&svc, &dir, None);
    for app in [&a, &b, &c] {
        wait_attached(&gs, app.child.pid(), HTTP_PROBES);
    }
    let (t, s) = ids(INCOMING);
    let cases: Vec<(&str, Vec<String>)> = vec![
        ("all-zero trace id", vec![format!("00-{}-{s}-01", "0".repeat(32))]),
        ("all-zero span id", vec![format!("00-{t}-{}-01", "0".repeat(16))]),
        ("version ff", vec![format!("ff-{t}-{s}-01")]),
        ("uppercase hex", vec![INCOMING.to_ascii_uppercase()]),
        ("bad hex char", vec![format!("00-{}g-{s}-01", &t[..31])]),
        ("54 bytes", vec![INCOMING[..54].to_string()]),
        ("56 bytes", vec![format!("{INCOMING}0")]),
        (
            "two headers",
            vec![INCOMING.to_string(), "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".to_string()],
        ),
    ];
    let mut conn = HttpConn::connect(&a.addr);
    // Every case runs; the failures are reported together.
    let (mut replaced, mut problems) = (Vec::new(), Vec::new());
    for (what, values) in &cases {
        let headers: Vec<(&str, &str)> = values.iter().map(|v| ("traceparent", v.as_str())).collect();
        let got = strings(&json_on(&mut conn, "GET", "/forward-headers?to=/leaf-echo", &headers, b""));
        if got.len() == 1 && valid_traceparent(&got[0]) && !values.contains(&got[0]) {
            replaced.push(got[0].clone());
        } else {
            problems.push(format!("{what}: sent {values:?}, B got {got:?}"));
        }
    }
    let got = strings(&json_on(&mut conn, "GET", "/forward-headers?to=/leaf-echo", &[("traceparent", INCOMING)], b""));
    if got != [INCOMING] {
        problems.push(format!("a valid traceparent passes unchanged: B got {got:?}"));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert_client_spans(&collector, a.child.pid(), &replaced, &gs);

    assert_eq!(gs.terminate(SECS(30)), Some(0));
    let line = target_counters(&gs, a.child.pid());
    println!("{line:?}\n{:?}", totals(&gs));
    assert!(counter(&line, "replaced_malformed") >= cases.len() as i64, "{line:?}\n{}", gs.output());
    assert!(counter(&line, "kept_valid") >= 1, "{line:?}");
}

/// One request through A to B's echo of what it received: B's traceparent values.
fn b_received(conn: &mut HttpConn, i: usize, rng: &mut Rng) -> Vec<String> {
    if i.is_multiple_of(2) {
        strings(&json_on(conn, "GET", "/forward-headers?to=/leaf-echo", &[], b""))
    } else {
        let body = rng.bytes(1000 + i);
        let v = json_on(conn, "POST", "/post-next", &[], &body);
        assert_eq!(v["sha256"].as_str(), Some(sha256_hex(&body).as_str()));
        strings(&v["traceparent"])
    }
}

/// Edge 5: Two gosight instances trace the same chain (one watching the root cgroup,
/// one a child cgroup holding the apps): over connections born under the first
/// one and over connections born while both run, a request never carries two
/// traceparent values, and carries one unless an instance says it stood down.
#[test]
fn two_instances() {
    if !require_all() {
        return;
    }
    let _serial = serial();
    let Some(col) = require_collector() else { return };
    let cg = Cgroup::create("two");
    if !require("a writable cgroup v2 hierarchy", cg.is_some()) {
        return;
    }
    let cg = cg.unwrap();
    let collector = Collector::start(&col);
    let dir = tmpdir("two-instances");
    let svc = chain_exe(&dir);
    let mut gs1 = spawn_gosight(gosight_cmd(None, &svc, Some(&collector), &[]), &dir, "gosight1");
    let (a, b, c) = start_chain(&svc, &dir, Some(&cg.path));
    for app in [&a, &b, &c] {
        wait_attached(&gs1, app.child.pid(), HTTP_PROBES);
    }
    let mut conn = HttpConn::connect(&a.addr);
    let mut rng = Rng::seeded();
    for i in 0..10 {
        let got = b_received(&mut conn, i, &mut rng);
        assert!(
            got.len() == 1 && valid_traceparent(&got[0]),
            "one instance, request {i}: B got {got:?}\n{}",
            gs1.output()
        );
    }

    let cg_dir = cg.path.to_string_lossy().into_owned();
    let env = [("GOSIGHT_PROPAGATION_CGROUP", cg_dir.as_str())];
    let mut gs2 = spawn_gosight(gosight_cmd(Some(&cg.path), &svc, Some(&collector), &env), &dir, "gosight2");
    for app in [&a, &b, &c] {
        wait_attached(&gs2, app.child.pid(), HTTP_PROBES);
    }
    std::thread::sleep(Duration::from_millis(500));
    let mut counts = Vec::new();
    for i in 0..20 {
        let got = b_received(&mut conn, i, &mut rng);
        assert!(got.len() <= 1, "two instances, request {i}: B got {got:?}\n{}\n{}", gs1.output(), gs2.output());
        assert!(got.iter().all(|v| valid_traceparent(v)), "request {i}: {got:?}");
        counts.push(got.len());
    }
    // Connections born while both instances run: A dials more than its pool holds.
    let a_dials = dials(&a.addr);
    for _ in 0..3 {
        for echo in get_json(&a.addr, "/fanout?n=16&to=/leaf-echo").as_array().unwrap() {
            let got = strings(echo);
            assert!(got.len() <= 1, "two instances, fan-out: B got {got:?}\n{}\n{}", gs1.output(), gs2.output());
            assert!(got.iter().all(|v| valid_traceparent(v)), "fan-out: {got:?}");
            counts.push(got.len());
        }
    }
    println!("A dialled {} connections while both instances ran", dials(&a.addr) - a_dials);
    let stood_down =
        [&gs1, &gs2].iter().find_map(|g| g.output().lines().find(|l| l.contains("stood down")).map(str::to_string));
    println!("traceparents per request with two instances: {counts:?}; stood down: {stood_down:?}");
    assert_eq!(gs2.terminate(SECS(30)), Some(0));
    assert_eq!(gs1.terminate(SECS(30)), Some(0));
    println!("gosight1: {:?}\ngosight2: {:?}", totals(&gs1), totals(&gs2));
    assert!(
        counts.iter().all(|&n| n == 1) || stood_down.is_some(),
        "requests without traceparent and no instance stood down: {counts:?}\n{}\n{}",
        gs1.output(),
        gs2.output()
    );
}

/// Edge 6: A failed start-up self-check turns propagation off with a WARN line; spans
/// still reach the collector and no hop receives a traceparent.
#[test]
fn selfcheck_failure_turns_propagation_off() {
    if !require_all() {
        return;
    }
    let _serial = serial();
    let Some(col) = require_collector() else { return };
    let collector = Collector::start(&col);
    let dir = tmpdir("selfcheck");
    let svc = chain_exe(&dir);
    let env = [("GOSIGHT_TEST_SELFCHECK_FAIL", "1")];
    let mut gs = spawn_gosight(gosight_cmd(None, &svc, Some(&collector), &env), &dir, "gosight");
    let warn = try_line(&gs, SECS(10), |l| l.contains("context propagation: off: self-check failed"));
    let (a, b, c) = start_chain(&svc, &dir, None);
    for app in [&a, &b, &c] {
        wait_attached(&gs, app.child.pid(), HTTP_PROBES);
    }
    let v = get_json(&a.addr, "/hop");
    let spans = collector.wait_for(SECS(15), |sp| sp.len() >= 5);
    assert_eq!(gs.terminate(SECS(30)), Some(0));
    assert_eq!(spans.len(), 5, "A server+client, B server+client, C server: {spans:#?}");
    assert_eq!(v["downstream"]["traceparent"], "", "B received a traceparent: {v}");
    assert_eq!(v["downstream"]["downstream"]["traceparent"], "", "C received a traceparent: {v}");
    for pid in [b.child.pid(), c.child.pid()] {
        let srv: Vec<&Span> = spans.iter().filter(|s| s.kind == SERVER && pid_of(s) == pid as i64).collect();
        assert!(srv.len() == 1 && srv[0].parent_span_id.is_empty(), "pid {pid} starts its own trace: {srv:#?}");
    }
    let warn = warn.unwrap_or_else(|| panic!("no self-check WARN line:\n{}", gs.output()));
    assert!(warn.contains("WARN") && warn.contains("kernel="), "{warn}");
    assert!(!gs.output().contains("self_check=passed"), "{}", gs.output());
}

/// Edge 7: `kill -9` of gosight leaves no pinned directory on the BPF filesystem, and
/// the apps' existing keep-alive connections keep working.
#[test]
fn kill9_leaves_nothing() {
    if !require_all() {
        return;
    }
    let _serial = serial();
    let bpffs = PathBuf::from(std::env::var("GOSIGHT_BPFFS").unwrap_or_else(|_| "/sys/fs/bpf".into()));
    let before = pin_dirs(&bpffs);
    let dir = tmpdir("kill9");
    let svc = chain_exe(&dir);
    let mut gs = spawn_gosight(gosight_cmd(None, &svc, None, &[]), &dir, "gosight");
    let (a, b, c) = start_chain(&svc, &dir, None);
    for app in [&a, &b, &c] {
        wait_attached(&gs, app.child.pid(), HTTP_PROBES);
    }
    let reg = registered(&gs, a.child.pid());
    let mut conn = HttpConn::connect(&a.addr);
    for _ in 0..5 {
        let v = json_on(&mut conn, "GET", "/hop", &[], b"");
        assert!(v["downstream"]["downstream"]["name"] == "C", "{v}");
    }
    let during = pin_dirs(&bpffs);
    let (a_dials, b_dials) = (dials(&a.addr), dials(&b.addr));
    // SAFETY: signalling our own child.
    unsafe { libc::kill(gs.pid() as i32, libc::SIGKILL) };
    let killed = std::time::Instant::now();
    wait_exit(&mut gs, SECS(30)); // the kernel detaching many uprobes takes seconds
    println!("gosight gone {:?} after SIGKILL", killed.elapsed());
    std::thread::sleep(SECS(1));
    let left: Vec<String> = pin_dirs(&bpffs).into_iter().filter(|d| !before.contains(d)).collect();
    println!("pinned before {before:?}, while running {during:?}, left {left:?}; {reg:?}");
    for i in 0..20 {
        let x = conn.request("GET", "/hop", &[], b"");
        assert_eq!(x.status, 200, "request {i} after kill -9: {}", String::from_utf8_lossy(&x.body));
    }
    assert_eq!((dials(&a.addr), dials(&b.addr)), (a_dials, b_dials), "the existing connections were used");
    assert!(left.is_empty(), "left on {}: {left:?}", bpffs.display());
}
