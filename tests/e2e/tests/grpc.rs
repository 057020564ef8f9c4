//! gRPC SERVER and CLIENT spans from unmodified Go binaries built against grpc-go
//! 1.60, 1.69 (with Go 1.22), 1.77 (with Go 1.24) and the newest release
//! (tests/go-apps/grpc), each also stripped, end to end against
//! a real OpenTelemetry Collector: one span per RPC per side, names, attributes,
//! status codes, unary and server-streaming; every client span is the parent of its
//! server span (the `traceparent` field inserted in the kernel into the HEADERS
//! frame); an app that sends its own `traceparent` metadata keeps it.

use std::process::Command;
use std::time::Duration;

use gosight_e2e::collector::{require_collector, Collector, Span};
use gosight_e2e::process::Child;
use gosight_e2e::*;

const SERVER: i64 = 2;
const CLIENT: i64 = 3;
const INCOMING: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// Runs the client once (after gosight attached to it) and returns its pid.
fn run_client(
    client: &std::path::Path,
    dir: &std::path::Path,
    gs: &Child,
    target: &str,
    args: &[&str],
    tag: &str,
) -> u32 {
    let go = dir.join(format!("go-{tag}"));
    let mut cmd = Command::new(client);
    cmd.args(["-target", target, "-wait-file"]).arg(&go).args(args);
    let mut c = Child::spawn(&format!("client-{tag}"), cmd, dir);
    c.wait_for_log("ready", Duration::from_secs(10));
    gs.wait_for_line(&["probe attached", "grpc_client", &format!("pid={}", c.pid())], Duration::from_secs(10));
    std::fs::write(&go, b"").unwrap();
    let st = c.child.wait().unwrap();
    assert!(st.success(), "client {tag}: {}", c.output());
    c.pid()
}

/// One grpc-go release built with one Go toolchain (None: the machine's), stripped
/// or not: the same assertions hold for every build.
fn check_version(grpc: &str, toolchain: Option<&str>, stripped: bool) {
    if !require_all() {
        return;
    }
    let _serial = serial();
    let Some(col) = require_collector() else { return };
    let collector = Collector::start(&col);
    let (server_bin, client_bin) = build_grpc_apps(grpc, toolchain, stripped);
    let dir = tmpdir(&format!("grpc-{grpc}"));
    let server_exe = dir.join("grpc-server");
    let client_exe = dir.join("grpc-client");
    std::fs::copy(&server_bin, &server_exe).unwrap();
    std::fs::copy(&client_bin, &client_exe).unwrap();

    let mut cmd = Command::new(gosight_bin());
    cmd.arg("--target-exe")
        .arg(dir.join("grpc-*"))
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &collector.http_endpoint)
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .env("RUST_LOG", "gosight=info");
    let mut gs = Child::spawn("gosight", cmd, &dir);
    gs.wait_for_log("gosight starting", Duration::from_secs(30));
    let mut scmd = Command::new(&server_exe);
    scmd.args(["-addr", "127.0.0.1:0"]);
    let server = Child::spawn("server", scmd, &dir);
    let target =
        server.wait_for_log("listening on", Duration::from_secs(10)).rsplit(' ').next().unwrap().trim().to_string();
    gs.wait_for_line(&["probe attached", "grpc_server", &format!("pid={}", server.pid())], Duration::from_secs(10));

    let ok = run_client(&client_exe, &dir, &gs, &target, &["-method", "check", "-n", "3"], "ok");
    let fail = run_client(&client_exe, &dir, &gs, &target, &["-method", "check-fail", "-n", "2"], "fail");
    let unknown =
        run_client(&client_exe, &dir, &gs, &target, &["-method", "check", "-service", "nosuch", "-n", "1"], "unknown");
    let watch = run_client(&client_exe, &dir, &gs, &target, &["-method", "watch", "-n", "2"], "watch");
    let own = run_client(
        &client_exe,
        &dir,
        &gs,
        &target,
        &["-method", "check", "-n", "1", "-metadata-traceparent", INCOMING],
        "own",
    );

    let total = 3 + 2 + 1 + 2 + 1;
    collector.wait_for(Duration::from_secs(20), |sp| sp.len() >= 2 * total);
    std::thread::sleep(Duration::from_millis(500)); // a duplicate would have arrived too
    let spans = collector.spans();
    assert_eq!(gs.terminate(Duration::from_secs(10)), Some(0));
    let servers: Vec<&Span> = spans.iter().filter(|s| s.kind == SERVER).collect();
    let clients: Vec<&Span> = spans.iter().filter(|s| s.kind == CLIENT).collect();
    assert_eq!(servers.len(), total, "one SERVER span per RPC: {servers:#?}\n{}", gs.output());
    assert_eq!(clients.len(), total, "one CLIENT span per RPC: {clients:#?}");

    let port: i64 = target.rsplit(':').next().unwrap().parse().unwrap();
    for s in spans.iter() {
        assert_eq!(s.attr_str("rpc.system"), Some("grpc"), "{s:#?}");
        assert_eq!(s.attr_str("rpc.service"), Some("grpc.health.v1.Health"), "{s:#?}");
        assert_eq!(s.attr_str("server.address"), Some("127.0.0.1"), "{s:#?}");
        assert_eq!(s.attr_int("server.port"), Some(port), "{s:#?}");
        assert!(s.trace_id.len() == 32 && s.span_id.len() == 16 && s.end_ns >= s.start_ns);
        if s.kind == SERVER {
            assert_eq!(s.attr_str("client.address"), Some("127.0.0.1"));
            assert!(s.attr_int("client.port").is_some_and(|p| p > 0));
        }
    }
    // Codes and names, per client process (each ran one kind of RPC).
    let by_pid = |pid: u32| -> Vec<&Span> {
        clients.iter().copied().filter(|s| s.resource_int("process.pid") == Some(pid as i64)).collect()
    };
    for (pid, n, method, code, error) in [
        (ok, 3, "Check", 0, false),
        (fail, 2, "Check", 14, true),
        (unknown, 1, "Check", 5, true),
        (watch, 2, "Watch", 0, false),
        (own, 1, "Check", 0, false),
    ] {
        let mine = by_pid(pid);
        assert_eq!(mine.len(), n, "client pid {pid}: {mine:#?}");
        for s in mine {
            assert_eq!(s.name, format!("grpc.health.v1.Health/{method}"));
            assert_eq!(s.attr_str("rpc.method"), Some(method));
            assert_eq!(s.attr_int("rpc.grpc.status_code"), Some(code));
            assert_eq!(s.status_code, if error { 2 } else { 0 }, "client status: {s:#?}");
        }
    }
    let server_codes: Vec<i64> = {
        let mut v: Vec<i64> = servers.iter().map(|s| s.attr_int("rpc.grpc.status_code").unwrap()).collect();
        v.sort();
        v
    };
    assert_eq!(server_codes, vec![0, 0, 0, 0, 0, 0, 5, 14, 14], "server status codes");
    for s in &servers {
        let code = s.attr_int("rpc.grpc.status_code").unwrap();
        // NotFound is not a server error; Unavailable is.
        assert_eq!(s.status_code, if code == 14 { 2 } else { 0 }, "server status: {s:#?}");
    }
    let watches = servers.iter().filter(|s| s.attr_str("rpc.method") == Some("Watch")).count();
    assert_eq!(watches, 2);
    // An app's own traceparent metadata is kept (nothing added): that server span
    // joins the app's trace.
    let joined: Vec<&&Span> = servers.iter().filter(|s| s.trace_id == INCOMING[3..35]).collect();
    assert_eq!(joined.len(), 1, "{servers:#?}");
    assert_eq!(joined[0].parent_span_id, &INCOMING[36..52]);
    // Every other server span is the child of its client span, inside it in time.
    for srv in servers.iter().filter(|s| s.trace_id != INCOMING[3..35]) {
        let cli = clients
            .iter()
            .find(|c| c.span_id == srv.parent_span_id)
            .unwrap_or_else(|| panic!("server span without its client parent: {srv:#?}\n{}", gs.output()));
        assert_eq!(cli.trace_id, srv.trace_id);
        assert_eq!(cli.name, srv.name);
        assert!(cli.start_ns <= srv.start_ns && srv.end_ns <= cli.end_ns, "client encloses server: {cli:#?} {srv:#?}");
    }
    println!(
        "grpc {grpc} ({}, stripped: {stripped}): {} server + {} client spans checked",
        go_version_of(&server_exe),
        servers.len(),
        clients.len()
    );
}

#[test]
fn grpc_1_60() {
    check_version("1.60", None, false);
}

#[test]
fn grpc_1_69_go_1_22() {
    check_version("1.69", Some("go1.22.12"), false);
}

#[test]
fn grpc_1_77_go_1_24() {
    check_version("1.77", Some("go1.24.13"), false);
}

#[test]
fn grpc_latest() {
    check_version("latest", None, false);
}

#[test]
fn grpc_1_60_stripped() {
    check_version("1.60", None, true);
}

#[test]
fn grpc_1_69_go_1_22_stripped() {
    check_version("1.69", Some("go1.22.12"), true);
}

#[test]
fn grpc_1_77_go_1_24_stripped() {
    check_version("1.77", Some("go1.24.13"), true);
}

#[test]
fn grpc_latest_stripped() {
    check_version("latest", None, true);
}

/// HTTP client → Go HTTP service → gRPC service → HTTP service: one trace, every
/// parent right (HTTP/1 and gRPC propagation in the kernel, in-process parenting in
/// between).
#[test]
fn mixed_chain_http_grpc_http() {
    mixed_chain(false);
}

#[test]
fn mixed_chain_http_grpc_http_stripped() {
    mixed_chain(true);
}

fn mixed_chain(stripped: bool) {
    if !require_all() {
        return;
    }
    let _serial = serial();
    let Some(col) = require_collector() else { return };
    let collector = Collector::start(&col);
    let (server_bin, _) = build_grpc_apps("latest", None, stripped);
    let dir = tmpdir("mixed");
    let svc = dir.join("mixed-grpc");
    std::fs::copy(&server_bin, &svc).unwrap();
    let leaf_exe = dir.join("mixed-leaf");
    std::fs::copy(build_go_app("chain", None, stripped), &leaf_exe).unwrap();

    let mut cmd = Command::new(gosight_bin());
    cmd.arg("--target-exe")
        .arg(dir.join("mixed-*"))
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &collector.http_endpoint)
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .env("RUST_LOG", "gosight=info");
    let mut gs = Child::spawn("gosight", cmd, &dir);
    gs.wait_for_log("gosight starting", Duration::from_secs(30));

    let leaf = gosight_e2e::process::App::start_with(&leaf_exe, &dir, "leaf", &["-name".into(), "leaf".into()]);
    let mut g = Command::new(&svc);
    g.args(["-addr", "127.0.0.1:0", "-http-next", &format!("http://{}", leaf.addr)]);
    let grpc = Child::spawn("grpc", g, &dir);
    let grpc_addr =
        grpc.wait_for_log("listening on", Duration::from_secs(10)).rsplit(' ').next().unwrap().trim().to_string();
    let mut b = Command::new(&svc);
    b.args(["-addr", "127.0.0.1:0", "-http-addr", "127.0.0.1:0", "-grpc-target", &grpc_addr]);
    let bridge = Child::spawn("bridge", b, &dir);
    let http_addr = bridge
        .wait_for_log("http listening on", Duration::from_secs(10))
        .rsplit(' ')
        .next()
        .unwrap()
        .trim()
        .to_string();
    // Every probe the chain needs, not just the first one attached to each process.
    let needed = [
        (leaf.child.pid(), "net_http_server"),
        (grpc.pid(), "grpc_server"),
        (grpc.pid(), "net_http_client"),
        (bridge.pid(), "net_http_server"),
        (bridge.pid(), "grpc_client"),
    ];
    for (pid, probe) in needed {
        gs.wait_for_line(&["probe attached", &format!("pid={pid}"), probe], Duration::from_secs(10));
    }
    std::thread::sleep(Duration::from_millis(300));

    let x = gosight_e2e::process::HttpConn::connect(&http_addr).request(
        "GET",
        "/grpc?service=ok",
        &[("traceparent", INCOMING)],
        b"",
    );
    assert_eq!(x.status, 200, "{}", String::from_utf8_lossy(&x.body));
    let trace = &INCOMING[3..35];
    let spans =
        collector.wait_for(Duration::from_secs(15), |sp| sp.iter().filter(|s| s.trace_id == trace).count() >= 5);
    assert_eq!(gs.terminate(Duration::from_secs(10)), Some(0));
    let spans: Vec<&Span> = spans.iter().filter(|s| s.trace_id == trace).collect();
    assert_eq!(
        spans.len(),
        5,
        "HTTP server, gRPC client, gRPC server, HTTP client, HTTP server: {spans:#?}\n{}",
        gs.output()
    );
    let find = |pid: u32, kind: i64| -> &Span {
        let v: Vec<&&Span> =
            spans.iter().filter(|s| s.kind == kind && s.resource_int("process.pid") == Some(pid as i64)).collect();
        assert_eq!(v.len(), 1, "pid {pid} kind {kind}: {spans:#?}");
        v[0]
    };
    let http_in = find(bridge.pid(), SERVER);
    let grpc_out = find(bridge.pid(), CLIENT);
    let grpc_in = find(grpc.pid(), SERVER);
    let http_out = find(grpc.pid(), CLIENT);
    let leaf_in = find(leaf.child.pid(), SERVER);
    assert_eq!(http_in.parent_span_id, &INCOMING[36..52]);
    assert_eq!(grpc_out.parent_span_id, http_in.span_id);
    assert_eq!(grpc_in.parent_span_id, grpc_out.span_id);
    assert_eq!(http_out.parent_span_id, grpc_in.span_id);
    assert_eq!(leaf_in.parent_span_id, http_out.span_id);
    assert_eq!(grpc_in.name, "grpc.health.v1.Health/Check");
    println!("mixed chain: one trace of 5 spans, every parent right");
}

/// 60 s of gRPC RPCs at full speed with metadata propagation on: nothing crashes,
/// every RPC the server saw carried exactly one well-formed `traceparent`.
#[test]
fn sustained_grpc_run_with_propagation() {
    if !require_all() {
        return;
    }
    let _serial = serial();
    let secs: u64 = std::env::var("GOSIGHT_SUSTAINED_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(60);
    let (server_bin, client_bin) = build_grpc_apps("latest", None, false);
    let dir = tmpdir("grpc-sustained");
    let server_exe = dir.join("grpc-server");
    let client_exe = dir.join("grpc-client");
    std::fs::copy(&server_bin, &server_exe).unwrap();
    std::fs::copy(&client_bin, &client_exe).unwrap();
    let mut cmd = Command::new(gosight_bin());
    cmd.arg("--target-exe").arg(dir.join("grpc-*")).env("OTEL_TRACES_EXPORTER", "none").env("RUST_LOG", "gosight=info");
    let mut gs = Child::spawn("gosight", cmd, &dir);
    gs.wait_for_log("gosight starting", Duration::from_secs(30));
    let mut scmd = Command::new(&server_exe);
    scmd.args(["-addr", "127.0.0.1:0"]);
    let mut server = Child::spawn("server", scmd, &dir);
    let target =
        server.wait_for_log("listening on", Duration::from_secs(10)).rsplit(' ').next().unwrap().trim().to_string();
    gs.wait_for_line(&["probe attached", "grpc_server", &format!("pid={}", server.pid())], Duration::from_secs(10));

    let duration = format!("{secs}s");
    run_client(
        &client_exe,
        &dir,
        &gs,
        &target,
        &["-method", "check", "-duration", &duration, "-concurrency", "8"],
        "load",
    );
    assert!(server.is_running(), "the server crashed");
    assert!(gs.is_running(), "gosight crashed");
    assert_eq!(gs.terminate(Duration::from_secs(10)), Some(0));
    let out = server.output();
    let (mut rpcs, mut missing, mut bad) = (0u64, 0u64, 0u64);
    for line in out.lines().filter_map(|l| l.strip_prefix("incoming traceparent:")) {
        rpcs += 1;
        let v = line.trim();
        if v.is_empty() {
            missing += 1;
        } else if v.contains(',') || v.len() != 55 || !v.starts_with("00-") {
            bad += 1;
        }
    }
    let totals = gs.output().lines().find(|l| l.contains("context propagation totals")).unwrap_or_default().to_string();
    println!("{secs} s: {rpcs} RPCs, {missing} without traceparent, {bad} malformed or duplicated; {totals}");
    assert!(rpcs > 1000, "too few RPCs: {rpcs}");
    assert_eq!(bad, 0, "malformed or duplicated traceparent metadata");
    assert_eq!(missing, 0, "RPCs without traceparent; {totals}");
}
