//! RED metrics from the probes, end to end, with traces sampled at 1 %
//! (`OTEL_TRACES_SAMPLER=parentbased_traceidratio`, ratio 0.01): a known workload
//! (N requests per route with known status codes and sleeps) against copies of
//! tests/go-apps/httpserver, partly sent by traced Go clients
//! (tests/go-apps/rawclient), and at a real OpenTelemetry Collector:
//! - `http.server.request.duration` counts exactly N per route template and
//!   status although ~1 % of the spans are exported, with `error.type` on 5xx
//!   and never a raw path;
//! - `http.client.request.duration` counts the traced clients' requests exactly;
//! - on a service whose requests all arrive sampled (a sampled `traceparent`),
//!   each histogram's count and sum equal the count and summed durations of the
//!   exported spans (sum within 1 %);
//! - a client reaching 150 distinct server addresses has its `server.address`
//!   capped at 100 values, the rest recorded as `_OTHER` and counted.

use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

use gosight_e2e::collector::{require_collector, Collector, MetricPoint, Span};
use gosight_e2e::process::{App, Child, HttpConn};
use gosight_e2e::*;

/// Requests per route.
const N: usize = 60;
/// Distinct server addresses one client reaches (over the cap of 100).
const SPREAD: usize = 150;
const SLEEP_MS: u64 = 20;

const SERVER: &str = "http.server.request.duration";
const CLIENT: &str = "http.client.request.duration";

/// The path of request i of a route.
type PathOf = Box<dyn Fn(usize) -> String>;

/// The routes of the workload: (path for request i, route template, status).
fn routes() -> Vec<(PathOf, &'static str, i64)> {
    vec![
        (Box::new(|i| format!("/users/{i}")), "/users/{id}", 200),
        (Box::new(|_| "/missing".into()), "/missing", 404),
        (Box::new(|_| "/fail".into()), "/fail", 500),
        (Box::new(|_| format!("/sleep/{SLEEP_MS}")), "/sleep/{ms}", 200),
    ]
}

fn points<'a>(all: &'a [MetricPoint], name: &str, service: &str) -> Vec<&'a MetricPoint> {
    all.iter().filter(|p| p.name == name && p.attr_str("service.name") == Some(service)).collect()
}

/// (count, sum) of the points of one route and status.
fn route_total(ps: &[&MetricPoint], route: &str, status: i64) -> (u64, f64) {
    ps.iter()
        .filter(|p| p.attr_str("http.route") == Some(route) && p.attr_int("http.response.status_code") == Some(status))
        .fold((0, 0.0), |(c, s), p| (c + p.value as u64, s + p.sum))
}

/// A traced rawclient: `n` GETs of `url`, started now, sending once `go` exists.
fn rawclient(
    exe: &std::path::Path,
    dir: &std::path::Path,
    url: &str,
    n: usize,
    go: &std::path::Path,
    extra: &[&str],
) -> Child {
    let mut cmd = Command::new(exe);
    cmd.args(["-url", url, "-n", &n.to_string(), "-concurrency", "4"]).arg("-wait-file").arg(go).args(extra);
    Child::spawn(&format!("rawclient-{}", url.rsplit('/').next().unwrap_or("")), cmd, dir)
}

#[test]
fn red_metrics_count_every_request_with_traces_sampled_at_one_percent() {
    if !require_all() {
        return;
    }
    let _serial = serial();
    let Some(col_bin) = require_collector() else { return };
    let dir = tmpdir("red");
    // Copies by name: the executable's name is each one's service.name.
    let copy = |app: &str, name: &str| {
        let to = dir.join(name);
        std::fs::copy(build_go_app(app, None, false), &to).unwrap();
        to
    };
    let ratio_exe = copy("httpserver", "red-ratio");
    let sampled_exe = copy("httpserver", "red-sampled");
    let client_exe = copy("rawclient", "red-client");

    let collector = Collector::start(&col_bin);
    // red-ratio listens on every address, for the clients spreading over 127.0.x.y.
    let ratio = App::start_with(&ratio_exe, &dir, "red-ratio", &["-addr".into(), "0.0.0.0:0".into()]);
    let ratio_port: u16 = ratio.addr.rsplit(':').next().unwrap().parse().unwrap();
    let ratio_addr = format!("127.0.0.1:{ratio_port}");
    let sampled = App::start(&sampled_exe, &dir, "red-sampled");

    let go = dir.join("go");
    let base = format!("http://{ratio_addr}");
    let mut clients = vec![
        rawclient(&client_exe, &dir, &format!("{base}/missing"), N, &go, &[]),
        rawclient(&client_exe, &dir, &format!("{base}/fail"), N, &go, &[]),
        rawclient(&client_exe, &dir, &format!("{base}/sleep/{SLEEP_MS}"), N, &go, &[]),
        rawclient(&client_exe, &dir, &format!("{base}/health"), SPREAD, &go, &["-spread-hosts"]),
    ];

    let mut cmd = Command::new(gosight_bin());
    cmd.env("OTEL_GO_AUTO_TARGET_EXE", dir.join("red-*"))
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &collector.http_endpoint)
        .env("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
        .env("OTEL_TRACES_SAMPLER_ARG", "0.01")
        .env("OTEL_BSP_SCHEDULE_DELAY", "200")
        .env("OTEL_METRIC_EXPORT_INTERVAL", "500")
        .env("GOSIGHT_SOCKET_PROBE", "off")
        .env_remove("OTEL_SERVICE_NAME")
        .env("RUST_LOG", "gosight=info");
    let mut gosight = Child::spawn("gosight", cmd, &dir);
    for pid in [ratio.child.pid(), sampled.child.pid()] {
        gosight.wait_for_line(&["probe attached", "net_http_server", &format!("pid={pid}")], Duration::from_secs(60));
    }
    for c in &clients {
        gosight.wait_for_line(
            &["probe attached", "net_http_client", &format!("pid={}", c.pid())],
            Duration::from_secs(60),
        );
    }
    gosight.wait_for_log("metrics: RED from every probe call (unsampled", Duration::from_secs(1));

    // The workload. The clients (traced, so their requests carry gosight's
    // context, sampled at 1 %) and the test itself (distinct /users ids, no
    // context) to red-ratio; the test with a sampled context to red-sampled.
    std::fs::write(&go, b"").unwrap();
    let mut conn = HttpConn::connect(&ratio_addr);
    for i in 0..N {
        assert_eq!(conn.request("GET", &format!("/users/{i}"), &[], b"").status, 200);
    }
    let mut conn = HttpConn::connect(&sampled.addr);
    let mut sent_sampled = 0u64;
    for (path, _, status) in routes() {
        for i in 0..N {
            sent_sampled += 1;
            let tp = format!("00-{:032x}-{:016x}-01", 0xabc0_0000u64 + sent_sampled, 0x1000 + sent_sampled);
            assert_eq!(conn.request("GET", &path(i), &[("traceparent", &tp)], b"").status as i64, status);
        }
    }
    for c in clients.iter_mut() {
        c.wait_for_log(r#""done":"#, Duration::from_secs(60));
        assert!(c.child.wait().unwrap().success(), "rawclient failed: {}", c.output());
        assert!(c.output().contains(r#""errors":0"#), "rawclient errors: {}", c.output());
    }

    // Everything recorded reaches the collector by the final export at SIGTERM.
    std::thread::sleep(Duration::from_millis(700));
    let code = gosight.terminate(Duration::from_secs(20));
    let log = gosight.output();
    assert_eq!(code, Some(0), "gosight did not exit cleanly:\n{log}");
    let expected_server = |ps: &[&MetricPoint]| routes().iter().all(|(_, r, s)| route_total(ps, r, *s).0 >= N as u64);
    let mut all = Vec::new();
    for _ in 0..100 {
        all = collector.metric_points();
        if expected_server(&points(&all, SERVER, "red-ratio")) && expected_server(&points(&all, SERVER, "red-sampled"))
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let spans = collector.spans();

    // 1. Exact counts per route and status at 1 % sampling.
    let server = points(&all, SERVER, "red-ratio");
    for (_, route, status) in routes() {
        let (count, sum) = route_total(&server, route, status);
        assert_eq!(count, N as u64, "{route} {status}: count; points {server:#?}\n{log}");
        if route == "/sleep/{ms}" {
            let floor = N as f64 * SLEEP_MS as f64 / 1e3;
            assert!(sum >= floor && sum < floor * 1.5, "{route}: sum {sum} s for {N} sleeps of {SLEEP_MS} ms");
        }
    }
    let (health, _) = route_total(&server, "/health", 200);
    assert_eq!(health, SPREAD as u64);
    for p in &server {
        let status = p.attr_int("http.response.status_code").unwrap();
        let error_type = (status >= 500).then(|| status.to_string());
        assert_eq!(p.attr_str("error.type").map(String::from), error_type, "{p:?}");
        assert_eq!(p.attr_str("http.request.method"), Some("GET"));
        assert!(p.attrs.keys().all(|k| !["url.path", "url.full", "client.address"].contains(&k.as_str())), "{p:?}");
        assert!(p.attr_str("http.route").is_none_or(|r| !r.chars().any(|c| c.is_ascii_digit())), "raw path: {p:?}");
    }
    let exported: Vec<&Span> =
        spans.iter().filter(|s| s.resource_str("service.name") == Some("red-ratio") && s.kind == 2).collect();
    let requests = 4 * N + SPREAD;
    assert!(
        exported.len() * 10 < requests,
        "{} of {requests} red-ratio server spans exported at a 1 % ratio",
        exported.len()
    );

    // 2. The traced clients' requests, counted exactly by status.
    let client = points(&all, CLIENT, "red-client");
    let by_status = |status: i64| -> u64 {
        client.iter().filter(|p| p.attr_int("http.response.status_code") == Some(status)).map(|p| p.value as u64).sum()
    };
    assert_eq!(by_status(404), N as u64, "{client:#?}");
    assert_eq!(by_status(500), N as u64);
    assert_eq!(by_status(200), (N + SPREAD) as u64);
    assert!(client.iter().all(|p| p.attr_int("server.port") == Some(ratio_port as i64)), "{client:#?}");

    // 3. Bounded cardinality: 100 addresses kept, the other 50 as _OTHER, counted.
    let addresses: HashMap<&str, u64> = client.iter().fold(HashMap::new(), |mut m, p| {
        *m.entry(p.attr_str("server.address").unwrap_or("")).or_default() += p.value as u64;
        m
    });
    assert_eq!(addresses.len(), 101, "{addresses:?}");
    assert_eq!(addresses.get("_OTHER"), Some(&((SPREAD - 100) as u64)), "{addresses:?}");
    let overflows: u64 = all
        .iter()
        .filter(|p| p.name == "gosight.metrics.attribute.overflows")
        .filter(|p| p.attr_str("gosight.metric.name") == Some(CLIENT))
        .filter(|p| p.attr_str("gosight.metric.attribute") == Some("server.address"))
        .map(|p| p.value as u64)
        .sum();
    assert_eq!(overflows, (SPREAD - 100) as u64);

    // 4. All sampled: the histograms agree with the exported spans.
    let server = points(&all, SERVER, "red-sampled");
    let mine: Vec<&Span> =
        spans.iter().filter(|s| s.resource_str("service.name") == Some("red-sampled") && s.kind == 2).collect();
    assert_eq!(mine.len() as u64, sent_sampled, "every request of red-sampled exported");
    for (_, route, status) in routes() {
        let (count, sum) = route_total(&server, route, status);
        let of_route: Vec<&&Span> = mine
            .iter()
            .filter(|s| {
                s.attr_str("http.route") == Some(route) && s.attr_int("http.response.status_code") == Some(status)
            })
            .collect();
        let span_sum: f64 = of_route.iter().map(|s| (s.end_ns - s.start_ns) as f64 / 1e9).sum();
        assert_eq!(count, of_route.len() as u64, "{route} {status}");
        assert_eq!(count, N as u64, "{route} {status}");
        assert!(
            (sum - span_sum).abs() <= span_sum * 0.01,
            "{route} {status}: histogram sum {sum} s, spans {span_sum} s"
        );
    }

    // The totals line: every span recorded, most of them not sampled.
    let totals = log.lines().find(|l| l.contains("RED metrics totals")).expect("RED totals line");
    let field = |k: &str| -> u64 {
        let at = totals.find(&format!("{k}=")).unwrap_or_else(|| panic!("{k} in {totals}")) + k.len() + 1;
        totals[at..].split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap()
    };
    let all_calls = (requests + sent_sampled as usize + 3 * N + SPREAD) as u64;
    assert_eq!(field("recorded"), all_calls, "{totals}");
    assert!(field("unsampled") * 10 > all_calls * 5, "{totals}");
}
