//! net/http SERVER spans from an unmodified Go binary, end to end: the app built
//! with the machine's Go and with Go 1.22, and stripped (`-s -w`: offsets from the
//! embedded database, functions from the pclntab) with Go 1.22, 1.24 and the
//! machine's Go — the same assertions hold for every build. gosight attached with real uprobes, spans
//! exported to a real OpenTelemetry Collector and read back from its file exporter.

use std::collections::HashSet;
use std::process::Command;
use std::time::Duration;

use gosight_e2e::collector::{require_collector, Collector, Span};
use gosight_e2e::process::{App, Child, Exchange, HttpConn};
use gosight_e2e::*;

/// A request the test sends and what its span must say.
struct Case {
    method: &'static str,
    path: String,
    status: u16,
    /// http.route (Go >= 1.23 only, where Request.Pattern exists).
    route: Option<&'static str>,
    /// The handler sleeps at least this long.
    min_duration_ms: u64,
    body: &'static [u8],
    headers: &'static [(&'static str, &'static str)],
    /// The handler sent the whole response itself before returning: the client
    /// may have read it before the span ends (by scheduling, not by design), so
    /// the span's end is bounded by `LATE_END_MS` after the client's read.
    flushed: bool,
}

/// How long after the client read a response the handler flushed itself the
/// span may end (the server's return is not ordered with the client's read).
const LATE_END_MS: u128 = 50;

fn cases() -> Vec<Case> {
    let c = |method, path: &str, status, route, min_duration_ms| Case {
        method,
        path: path.to_string(),
        status,
        route,
        min_duration_ms,
        body: b"",
        headers: &[],
        flushed: false,
    };
    let mut v = Vec::new();
    for id in 1..=5 {
        v.push(c("GET", &format!("/users/{id}"), 200, Some("/users/{id}"), 0));
    }
    v.push(c("GET", "/missing", 404, Some("/missing"), 0));
    v.push(c("GET", "/fail", 500, Some("/fail"), 0));
    v.push(c("GET", "/sleep/120", 200, Some("/sleep/{ms}"), 120));
    v.push(c("GET", "/sleep/30", 200, Some("/sleep/{ms}"), 30));
    v.push(c("GET", "/deep/2000", 200, Some("/deep/{n}"), 0));
    v.push(c("GET", "/health", 200, Some("/health"), 0));
    v.push(c("GET", "/no/such/route", 404, None, 0));
    v.push(Case { body: b"hello gosight", ..c("POST", "/echo", 201, Some("/echo"), 0) });
    // The handler's own socket writes (256 KiB) do not end the span; the last chunk
    // does, after it returns.
    v.push(c("GET", "/stream/256", 200, Some("/stream/{kb}"), 0));
    // Nothing is sent after the handler returns: the span ends at the connection's
    // next read (keep-alive) or at its close. The close case comes last: its
    // connection takes no more requests.
    v.push(Case { flushed: true, ..c("GET", "/flushed/idle", 200, Some("/flushed/{how}"), 0) });
    v.push(Case {
        flushed: true,
        headers: &[("Connection", "close")],
        ..c("GET", "/flushed/close", 200, Some("/flushed/{how}"), 0)
    });
    v
}

enum Select {
    Pid,
    ExeGlob,
}

struct Scenario {
    toolchain: Option<&'static str>,
    stripped: bool,
    protocol: &'static str,
    select: Select,
}

fn run(s: Scenario) {
    if !require_all() {
        return;
    }
    let _serial = serial();
    let Some(col_bin) = require_collector() else { return };

    let exe = build_go_app("httpserver", s.toolchain, s.stripped);
    let go_version = go_version_of(&exe);
    let dir = tmpdir("http");
    // A second copy under another name: running, Go, and not selected.
    let other_exe = dir.join("httpserver-unselected");
    std::fs::copy(&exe, &other_exe).unwrap();
    let selected_exe = dir.join("httpserver-selected");
    std::fs::copy(&exe, &selected_exe).unwrap();

    let collector = Collector::start(&col_bin);
    let app = App::start(&selected_exe, &dir, "app");
    let other = App::start(&other_exe, &dir, "other");

    let mut cmd = Command::new(gosight_bin());
    match s.select {
        Select::Pid => cmd.arg("--pid").arg(app.child.pid().to_string()),
        Select::ExeGlob => cmd.env("OTEL_GO_AUTO_TARGET_EXE", dir.join("*-selected")),
    };
    let endpoint = if s.protocol == "grpc" { &collector.grpc_endpoint } else { &collector.http_endpoint };
    cmd.env("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", s.protocol)
        .env("OTEL_BSP_SCHEDULE_DELAY", "200")
        .env("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=e2e")
        .env_remove("OTEL_SERVICE_NAME")
        .env("RUST_LOG", "gosight=debug");
    let mut gosight = Child::spawn("gosight", cmd, &dir);
    let attached = gosight.wait_for_line(
        &["probe attached", &format!("pid={}", app.child.pid()), "net_http_server"],
        Duration::from_secs(60),
    );
    // One uprobe hit per request wherever the offsets are known (DWARF: always).
    let one_hit = attached.contains("kernel_end=true");
    assert!(one_hit || s.stripped, "an unstripped binary ends its spans in the kernel: {attached}");

    // A handler that panics first: no response, no span (with either ending), and
    // its goroutine's entry must not become a span when its g serves again.
    {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(&app.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(s, "GET /panic HTTP/1.1\r\nHost: {}\r\n\r\n", app.addr).unwrap();
        let mut answer = Vec::new();
        let _ = s.read_to_end(&mut answer); // EOF or a reset
        assert!(answer.is_empty(), "a panicking handler answered: {}", String::from_utf8_lossy(&answer));
    }
    // Known requests, each timed by the client, on one keep-alive connection
    // (and a second connection for half of them).
    let mut conns = [HttpConn::connect(&app.addr), HttpConn::connect(&app.addr)];
    let cases = cases();
    let mut exchanges: Vec<(Exchange, &Case)> = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        let x = conns[i % 2].request(c.method, &c.path, c.headers, c.body);
        assert_eq!(x.status, c.status, "{} {} answered {}", c.method, c.path, x.status);
        exchanges.push((x, c));
    }
    // Traffic to the unselected process.
    let mut oc = HttpConn::connect(&other.addr);
    for i in 0..5 {
        oc.request("GET", &format!("/users/other{i}"), &[], b"");
    }

    let pid = app.child.pid() as i64;
    let spans = collector.wait_for(Duration::from_secs(20), |sp| {
        sp.iter().filter(|s| s.resource_int("process.pid") == Some(pid)).count() >= cases.len()
    });
    // Let any duplicate arrive before counting.
    std::thread::sleep(Duration::from_millis(800));
    let code = gosight.terminate(Duration::from_secs(10));
    let log = gosight.output();
    assert_eq!(code, Some(0), "gosight did not exit cleanly on SIGTERM:\n{log}");
    let spans = {
        let after = collector.spans();
        assert!(after.len() >= spans.len());
        after
    };

    // Nothing from the process that was not selected.
    let other_pid = other.child.pid() as i64;
    assert!(
        spans.iter().all(|s| s.resource_int("process.pid") != Some(other_pid)),
        "spans exported for an unselected process"
    );
    let mine: Vec<&Span> = spans.iter().filter(|s| s.resource_int("process.pid") == Some(pid)).collect();
    assert_eq!(mine.len(), cases.len(), "exactly one span per request; got:\n{mine:#?}\ngosight log:\n{log}");
    assert!(mine.iter().all(|s| s.attr_str("url.path") != Some("/panic")), "a span for the panicking handler");
    let (entry_hits, return_hits) = server_hits(&log, pid);
    let requests = cases.len() as u64 + 1; // and /panic
    assert!(entry_hits >= requests, "{entry_hits} entry hits for {requests} requests");
    if one_hit {
        assert_eq!(return_hits, 0, "one hit per request, yet RET probes were hit:\n{log}");
    } else {
        assert!(return_hits >= cases.len() as u64, "two-hit fallback: {return_hits} RET hits\n{log}");
        // (The panicking handler never reaches a RET.)
    }

    let has_route = !go_version.starts_with("go1.22");
    let mut ids = HashSet::new();
    // Margins against the client's window: how far inside it each span lies.
    let (mut min_lead_us, mut min_tail_us) = (i128::MAX, i128::MAX);
    for (x, c) in &exchanges {
        let matching: Vec<&&Span> = mine.iter().filter(|s| s.attr_str("url.path") == Some(c.path.as_str())).collect();
        assert_eq!(matching.len(), 1, "{} {}: spans {matching:#?}", c.method, c.path);
        let s = matching[0];
        check_span(s, x, c, has_route, &app.addr);
        check_resource(s, &selected_exe, pid, &go_version);
        assert!(ids.insert(s.span_id.clone()), "span id reused");
        min_lead_us = min_lead_us.min((s.start_ns as i128 - x.sent_ns as i128) / 1000);
        if !c.flushed {
            min_tail_us = min_tail_us.min((x.done_ns as i128 - s.end_ns as i128) / 1000);
        }
    }
    println!(
        "{} spans checked for {go_version} over {}; span start - client send >= {min_lead_us} us, \
         client done - span end >= {min_tail_us} us",
        mine.len(),
        s.protocol
    );
    let ends = log.lines().find(|l| l.contains("probe detached") && l.contains("net_http_server")).unwrap_or("");
    let ends = ends.split("kernel_ends=").nth(1).unwrap_or("");
    println!("net_http_server: {entry_hits} entry hits, {return_hits} RET hits (one hit: {one_hit}) {ends}");
}

/// (entry hits, RET hits) of the net_http_server probe on `pid`, from gosight's
/// "probe detached" line.
fn server_hits(log: &str, pid: i64) -> (u64, u64) {
    let pid = format!("pid={pid} ");
    let line = log
        .lines()
        .find(|l| l.contains("probe detached") && l.contains("net_http_server") && l.contains(&pid))
        .unwrap_or_else(|| panic!("no probe detached line for net_http_server:\n{log}"));
    let value = |key: &str| -> u64 {
        let at = line.find(key).unwrap_or_else(|| panic!("{key} missing: {line}")) + key.len();
        line[at..].split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap()
    };
    (value("entry_hits="), value("return_hits="))
}

fn check_span(s: &Span, x: &Exchange, c: &Case, has_route: bool, addr: &str) {
    let what = format!("{} {}", c.method, c.path);
    let route = if has_route { c.route } else { None };
    let name = match route {
        Some(r) => format!("{} {r}", c.method),
        None => c.method.to_string(),
    };
    assert_eq!(s.name, name, "{what}: name");
    assert_eq!(s.kind, 2, "{what}: SERVER kind");
    assert_eq!(s.attr_str("http.request.method"), Some(c.method), "{what}");
    assert_eq!(s.attr_str("url.scheme"), Some("http"), "{what}");
    assert_eq!(s.attr_str("http.route"), route, "{what}: http.route");
    assert_eq!(s.attr_int("http.response.status_code"), Some(c.status as i64), "{what}: status");
    let (host, port) = addr.rsplit_once(':').unwrap();
    assert_eq!(s.attr_str("server.address"), Some(host), "{what}");
    assert_eq!(s.attr_int("server.port"), Some(port.parse::<i64>().unwrap()), "{what}");
    assert_eq!(s.attr_str("client.address"), Some("127.0.0.1"), "{what}");
    assert!(s.attr_int("client.port").is_some_and(|p| p > 0), "{what}: client.port");
    assert_eq!(s.attr_str("network.protocol.version"), Some("1.1"), "{what}");
    assert_eq!(s.status_code, if c.status >= 500 { 2 } else { 0 }, "{what}: span status");

    // W3C ids: hex, right length, not zero.
    assert!(s.trace_id.len() == 32 && s.trace_id.chars().all(|ch| ch.is_ascii_hexdigit()), "{what}: trace id");
    assert!(s.span_id.len() == 16 && s.span_id.chars().all(|ch| ch.is_ascii_hexdigit()), "{what}: span id");
    assert!(s.trace_id.chars().any(|ch| ch != '0') && s.span_id.chars().any(|ch| ch != '0'), "{what}: zero id");
    assert!(s.parent_span_id.is_empty(), "{what}: root span has no parent");

    // Times against the client's own clock, within 2 ms.
    let slack = 2_000_000u128;
    assert!(
        s.start_ns + slack >= x.sent_ns,
        "{what}: span starts {} ns before the request was sent",
        x.sent_ns - s.start_ns
    );
    let late = if c.flushed { LATE_END_MS * 1_000_000 } else { slack };
    assert!(s.end_ns <= x.done_ns + late, "{what}: span ends {} ns after the response was read", s.end_ns - x.done_ns);
    assert!(s.end_ns >= s.start_ns, "{what}: negative duration");
    let dur_ms = (s.end_ns - s.start_ns) / 1_000_000;
    assert!(dur_ms >= c.min_duration_ms as u128, "{what}: lasted {dur_ms} ms, handler slept {}", c.min_duration_ms);
}

fn check_resource(s: &Span, exe: &std::path::Path, pid: i64, go_version: &str) {
    assert_eq!(s.resource_str("service.name"), exe.file_name().unwrap().to_str());
    assert_eq!(s.resource_int("process.pid"), Some(pid));
    assert_eq!(s.resource_str("process.executable.path"), exe.to_str());
    assert_eq!(s.resource_str("process.runtime.name"), Some("go"));
    assert_eq!(s.resource_str("process.runtime.version"), Some(go_version));
    assert_eq!(s.resource_str("telemetry.distro.name"), Some("gosight"));
    assert_eq!(s.resource_str("deployment.environment.name"), Some("e2e"));
}

#[test]
fn http_server_spans_go_local_http_protobuf_exe_glob() {
    run(Scenario { toolchain: None, stripped: false, protocol: "http/protobuf", select: Select::ExeGlob });
}

#[test]
fn http_server_spans_stripped_go_local() {
    run(Scenario { toolchain: None, stripped: true, protocol: "http/protobuf", select: Select::ExeGlob });
}

#[test]
fn http_server_spans_stripped_go_1_24() {
    run(Scenario { toolchain: Some("go1.24.13"), stripped: true, protocol: "http/protobuf", select: Select::Pid });
}

#[test]
fn http_server_spans_stripped_go_1_22() {
    run(Scenario { toolchain: Some("go1.22.12"), stripped: true, protocol: "grpc", select: Select::Pid });
}

#[test]
fn http_server_spans_go_1_22_grpc_pid() {
    run(Scenario { toolchain: Some("go1.22.12"), stripped: false, protocol: "grpc", select: Select::Pid });
}

/// A binary that can hijack connections (websockets) keeps the two-hit fallback: a
/// hijacked handler's goroutine exits with no socket event after it, so only a RET
/// probe can end its span. gosight says so once, and both spans come, the
/// hijacked one lasting as long as its handler.
#[test]
fn http_server_hijack_capable_binary_keeps_return_probes() {
    if !require_all() {
        return;
    }
    let _serial = serial();
    let Some(col_bin) = require_collector() else { return };
    let exe = build_go_app("hijackserver", None, false);
    let dir = tmpdir("hijack");
    let collector = Collector::start(&col_bin);
    let app = App::start(&exe, &dir, "app");
    let mut cmd = Command::new(gosight_bin());
    cmd.arg("--pid")
        .arg(app.child.pid().to_string())
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &collector.http_endpoint)
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
        .env("OTEL_BSP_SCHEDULE_DELAY", "200")
        .env("RUST_LOG", "gosight=debug");
    let mut gosight = Child::spawn("gosight", cmd, &dir);
    let attached = gosight.wait_for_line(&["probe attached", "net_http_server"], Duration::from_secs(60));
    assert!(attached.contains("kernel_end=false"), "{attached}");
    assert!(gosight.output().contains("two uprobe hits per span: it may hijack connections"), "{}", gosight.output());

    let plain = HttpConn::connect(&app.addr).request("GET", "/plain", &[], b"");
    assert_eq!(plain.status, 200);
    // The upgrade, by hand: 101, one echoed line, then the server closes.
    use std::io::{BufRead, BufReader, Read, Write};
    let mut stream = std::net::TcpStream::connect(&app.addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(stream, "GET /upgrade HTTP/1.1\r\nHost: {}\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n", app.addr)
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert!(line.contains(" 101 "), "{line}");
    while line.trim_end() != "" {
        line.clear();
        reader.read_line(&mut line).unwrap();
    }
    stream.write_all(b"hello\n").unwrap();
    line.clear();
    reader.read_line(&mut line).unwrap();
    assert_eq!(line, "hello\n");
    let mut rest = Vec::new();
    reader.read_to_end(&mut rest).unwrap();

    collector.wait_for(Duration::from_secs(20), |sp| sp.len() >= 2);
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(gosight.terminate(Duration::from_secs(10)), Some(0));
    let log = gosight.output();
    let spans = collector.spans();
    assert_eq!(spans.len(), 2, "{spans:#?}\n{log}");
    let by_path = |p: &str| spans.iter().find(|s| s.attr_str("url.path") == Some(p)).unwrap();
    assert_eq!(by_path("/plain").attr_int("http.response.status_code"), Some(200));
    let upgrade = by_path("/upgrade");
    assert_eq!(upgrade.name, "GET /upgrade");
    let ms = (upgrade.end_ns - upgrade.start_ns) / 1_000_000;
    assert!(ms >= 50, "the hijacked span ends when its handler returns: {ms} ms");
    assert_eq!(server_hits(&log, app.child.pid() as i64), (2, 2), "{log}");
}
