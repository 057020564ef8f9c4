//! W3C trace context across unmodified Go services, end to end: curl-like client →
//! A → B → C (tests/go-apps/chain, built with Go 1.22, 1.24 and the machine's Go,
//! each also stripped),
//! with gosight inserting `traceparent` in the kernel (sockops + sk_msg) as requests
//! leave; the spans are read back from a real OpenTelemetry Collector.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use gosight_e2e::collector::{require_collector, Collector, Span};
use gosight_e2e::process::{App, Child, HttpConn};
use gosight_e2e::*;
use serde_json::Value;

const SERVER: i64 = 2;
const CLIENT: i64 = 3;
const INCOMING: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

struct Chain {
    a: App,
    b: App,
    c: App,
    gosight: Child,
}

fn start_app(exe: &Path, dir: &Path, name: &str, next: Option<&str>) -> App {
    let mut args = vec!["-name".to_string(), name.to_string()];
    if let Some(n) = next {
        args.push("-next".into());
        args.push(format!("http://{n}"));
    }
    App::start_with(exe, dir, name, &args)
}

/// The chain app's toolchain (None: the machine's Go) and whether it is stripped.
type Build = (Option<&'static str>, bool);

fn start_chain(build: Build, collector: &Collector, propagation: bool, env: &[(&str, &str)]) -> Chain {
    let exe = build_go_app("chain", build.0, build.1);
    let dir = tmpdir("chain");
    let svc = dir.join("chain-svc");
    std::fs::copy(&exe, &svc).unwrap();

    let mut cmd = Command::new(gosight_bin());
    cmd.arg("--target-exe")
        .arg(&svc)
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &collector.http_endpoint)
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .env("GOSIGHT_PROPAGATION", if propagation { "on" } else { "off" })
        .env("RUST_LOG", "gosight=debug");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let gosight = Child::spawn("gosight", cmd, &dir);
    gosight.wait_for_log("gosight starting", Duration::from_secs(30));
    let mechanism = gosight.wait_for_log("context propagation", Duration::from_secs(10));
    assert_eq!(mechanism.contains("in-kernel"), propagation, "{mechanism}");

    let c = start_app(&svc, &dir, "C", None);
    let b = start_app(&svc, &dir, "B", Some(&c.addr));
    let a = start_app(&svc, &dir, "A", Some(&b.addr));
    for app in [&a, &b, &c] {
        for probe in ["net_http_server", "net_http_client"] {
            gosight.wait_for_line(
                &["probe attached", &format!("pid={}", app.child.pid()), probe],
                Duration::from_secs(10),
            );
        }
    }
    Chain { a, b, c, gosight }
}

fn get_json(addr: &str, path: &str, headers: &[(&str, &str)]) -> Value {
    let x = HttpConn::connect(addr).request("GET", path, headers, b"");
    assert_eq!(x.status, 200, "GET {path}: {}", String::from_utf8_lossy(&x.body));
    serde_json::from_slice(&x.body).expect("json")
}

fn by_service<'a>(spans: &'a [Span], chain: &Chain, pid_of: &str) -> Vec<&'a Span> {
    let pid = match pid_of {
        "A" => chain.a.child.pid(),
        "B" => chain.b.child.pid(),
        _ => chain.c.child.pid(),
    } as i64;
    spans.iter().filter(|s| s.resource_int("process.pid") == Some(pid)).collect()
}

fn one<'a>(v: Vec<&'a Span>, what: &str) -> &'a Span {
    assert_eq!(v.len(), 1, "{what}: {v:#?}");
    v[0]
}

/// curl → A → B → C: one trace, every parent right, client spans enclosing their
/// server spans.
fn check_chain(build: Build) {
    if !require_all() {
        return;
    }
    let _serial = serial();
    let Some(col) = require_collector() else { return };
    let collector = Collector::start(&col);
    let chain = start_chain(build, &collector, true, &[]);

    let answer = get_json(&chain.a.addr, "/hop", &[("traceparent", INCOMING)]);
    let trace = &INCOMING[3..35];
    let spans =
        collector.wait_for(Duration::from_secs(15), |sp| sp.iter().filter(|s| s.trace_id == trace).count() >= 5);
    let spans: Vec<Span> = spans.into_iter().filter(|s| s.trace_id == trace).collect();
    assert_eq!(spans.len(), 5, "one trace with 3 server + 2 client spans: {spans:#?}\n{}", chain.gosight.output());

    let kind =
        |svc: &str, k: i64| one(by_service(&spans, &chain, svc).into_iter().filter(|s| s.kind == k).collect(), svc);
    let (a_srv, a_cli) = (kind("A", SERVER), kind("A", CLIENT));
    let (b_srv, b_cli) = (kind("B", SERVER), kind("B", CLIENT));
    let c_srv = kind("C", SERVER);
    assert_eq!(a_srv.parent_span_id, &INCOMING[36..52], "A server joins the caller's trace");
    assert_eq!(a_cli.parent_span_id, a_srv.span_id, "A client is a child of A server");
    assert_eq!(b_srv.parent_span_id, a_cli.span_id, "B server is a child of A client");
    assert_eq!(b_cli.parent_span_id, b_srv.span_id);
    assert_eq!(c_srv.parent_span_id, b_cli.span_id);
    for (cli, srv) in [(a_cli, b_srv), (b_cli, c_srv)] {
        assert!(cli.start_ns <= srv.start_ns && srv.end_ns <= cli.end_ns, "client encloses server: {cli:#?} {srv:#?}");
        assert_eq!(cli.name, "GET");
        assert_eq!(cli.attr_int("http.response.status_code"), Some(200));
        assert!(cli.attr_str("url.full").is_some_and(|u| u.ends_with("/hop")));
    }
    // What each hop received, as the apps themselves saw it.
    assert_eq!(answer["traceparent"], INCOMING);
    assert_eq!(answer["downstream"]["traceparent"], format!("00-{trace}-{}-01", a_cli.span_id));
    assert_eq!(answer["downstream"]["downstream"]["traceparent"], format!("00-{trace}-{}-01", b_cli.span_id));

    // In a goroutine started with the request's context, and fanned out.
    let _ = get_json(&chain.a.addr, "/hop-async", &[]);
    let fan = get_json(&chain.a.addr, "/fanout?n=4", &[]);
    let fan = fan.as_array().expect("fan-out list");
    assert_eq!(fan.len(), 4);
    let all = collector.wait_for(Duration::from_secs(15), |sp| sp.len() >= 5 + 5 + 1 + 4 * 4);
    let a_spans = by_service(&all, &chain, "A");
    let server_at = |path: &str| {
        one(
            a_spans.iter().copied().filter(|s| s.kind == SERVER && s.attr_str("url.path") == Some(path)).collect(),
            path,
        )
    };
    let async_srv = server_at("/hop-async");
    let async_cli = one(
        a_spans.iter().copied().filter(|s| s.kind == CLIENT && s.trace_id == async_srv.trace_id).collect(),
        "async client",
    );
    assert_eq!(async_cli.parent_span_id, async_srv.span_id, "client call from a goroutine given r.Context()");
    let fan_srv = server_at("/fanout");
    let fan_clis: Vec<&Span> =
        a_spans.iter().copied().filter(|s| s.kind == CLIENT && s.trace_id == fan_srv.trace_id).collect();
    assert_eq!(fan_clis.len(), 4, "{fan_clis:#?}");
    for cli in &fan_clis {
        assert_eq!(cli.parent_span_id, fan_srv.span_id);
        let b_child = one(
            by_service(&all, &chain, "B")
                .into_iter()
                .filter(|s| s.kind == SERVER && s.parent_span_id == cli.span_id)
                .collect(),
            "fan-out child",
        );
        assert_eq!(b_child.trace_id, fan_srv.trace_id);
    }
    for (i, hop) in fan.iter().enumerate() {
        let tp = hop["traceparent"].as_str().unwrap();
        assert!(fan_clis.iter().any(|c| tp == format!("00-{}-{}-01", c.trace_id, c.span_id)), "fan-out {i}: {tp}");
    }

    // A transport error (connection refused): the client span says so.
    let x = HttpConn::connect(&chain.a.addr).request("GET", "/fail-next", &[], b"");
    assert_eq!(x.status, 502);
    let spans = collector.wait_for(Duration::from_secs(15), |sp| {
        sp.iter()
            .any(|s| s.kind == CLIENT && s.attr_str("url.full").is_some_and(|u| u.starts_with("http://127.0.0.1:1/")))
    });
    let failed = one(
        spans
            .iter()
            .filter(|s| {
                s.kind == CLIENT && s.attr_str("url.full").is_some_and(|u| u.starts_with("http://127.0.0.1:1/"))
            })
            .collect(),
        "failed client call",
    );
    assert_eq!(failed.status_code, 2, "ERROR status: {failed:#?}");
    assert_eq!(failed.attr_str("error.type"), Some("*net.OpError"), "{failed:#?}");
    assert_eq!(failed.attr_int("http.response.status_code"), None);
    assert_eq!(failed.attr_int("server.port"), Some(1));

    // An app that sends its own traceparent keeps it: nothing added, no duplicate.
    let own = get_json(&chain.a.addr, "/own-traceparent?to=/leaf-echo", &[]);
    assert_eq!(own, serde_json::json!(["00-11111111111111111111111111111111-2222222222222222-01"]));
    println!("chain checked for {}", go_version_of(&chain.a.exe));
}

#[test]
fn chain_go_1_22() {
    check_chain((Some("go1.22.12"), false));
}

#[test]
fn chain_go_1_24() {
    check_chain((Some("go1.24.13"), false));
}

#[test]
fn chain_go_local() {
    check_chain((None, false));
}

#[test]
fn chain_stripped_go_1_22() {
    check_chain((Some("go1.22.12"), true));
}

#[test]
fn chain_stripped_go_1_24() {
    check_chain((Some("go1.24.13"), true));
}

#[test]
fn chain_stripped_go_local() {
    check_chain((None, true));
}

/// The sampler decides once, where a trace starts, and the decision travels: an
/// unsampled root exports nothing anywhere and propagates flags 00; a sampled
/// incoming parent is followed by every hop.
#[test]
fn sampling_decision_travels_with_the_trace() {
    if !require_all() {
        return;
    }
    let _serial = serial();
    let Some(col) = require_collector() else { return };
    let collector = Collector::start(&col);
    let env = [("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"), ("OTEL_TRACES_SAMPLER_ARG", "0")];
    let chain = start_chain((None, false), &collector, true, &env);
    let unsampled = get_json(&chain.a.addr, "/hop", &[]);
    let tp = unsampled["downstream"]["traceparent"].as_str().unwrap().to_string();
    assert!(tp.len() == 55 && tp.ends_with("-00"), "unsampled context still propagates, with flags 00: {tp}");
    assert!(unsampled["downstream"]["downstream"]["traceparent"].as_str().unwrap().ends_with("-00"));
    let sampled = get_json(&chain.a.addr, "/hop", &[("traceparent", INCOMING)]);
    assert!(sampled["downstream"]["downstream"]["traceparent"].as_str().unwrap().ends_with("-01"));
    collector.wait_for(Duration::from_secs(15), |sp| sp.len() >= 5);
    std::thread::sleep(Duration::from_millis(500)); // anything unsampled would have arrived too
    let spans = collector.spans();
    assert_eq!(spans.len(), 5, "only the sampled trace is exported: {spans:#?}");
    assert!(spans.iter().all(|s| s.trace_id == INCOMING[3..35]));
}

/// With propagation off, every hop is its own trace, and every span still right.
#[test]
fn chain_without_propagation_gives_separate_traces() {
    if !require_all() {
        return;
    }
    let _serial = serial();
    let Some(col) = require_collector() else { return };
    let collector = Collector::start(&col);
    let chain = start_chain((None, false), &collector, false, &[]);
    let answer = get_json(&chain.a.addr, "/hop", &[]);
    assert_eq!(answer["downstream"]["traceparent"], "", "nothing propagated");
    let spans = collector.wait_for(Duration::from_secs(15), |sp| sp.len() >= 5);
    assert_eq!(spans.len(), 5, "{spans:#?}");
    let traces: HashMap<&str, usize> = spans.iter().fold(HashMap::new(), |mut m, s| {
        *m.entry(s.trace_id.as_str()).or_default() += 1;
        m
    });
    assert_eq!(traces.len(), 3, "A (server+client), B (server+client), C (server): {traces:?}");
    for s in &spans {
        if s.kind == CLIENT {
            let srv = spans.iter().find(|x| x.span_id == s.parent_span_id).expect("client parent in-process");
            assert_eq!(srv.kind, SERVER);
            assert_eq!(srv.resource_int("process.pid"), s.resource_int("process.pid"));
        } else {
            assert!(s.parent_span_id.is_empty(), "server spans are roots: {s:#?}");
        }
    }
}
