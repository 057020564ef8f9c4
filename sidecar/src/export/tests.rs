//! Tests of the export stage as a whole: queue bounds, drop counting, dead and hanging
//! collectors, per-target resources on the wire (a tiny in-process OTLP/HTTP sink).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use opentelemetry::trace::{SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};
use opentelemetry_sdk::Resource;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::{ExportConfig, ExportStats, Exporter};

/// A finished server span with explicit ids, 1.25 ms long.
pub(crate) fn span(n: u64, name: &str) -> SpanData {
    let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    SpanData {
        span_context: SpanContext::new(
            TraceId::from(0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736u128 + u128::from(n)),
            SpanId::from(0x00f0_67aa_0ba9_02b7u64 + n),
            TraceFlags::SAMPLED,
            false,
            TraceState::default(),
        ),
        parent_span_id: SpanId::INVALID,
        parent_span_is_remote: false,
        span_kind: SpanKind::Server,
        name: name.to_string().into(),
        start_time: start,
        end_time: start + Duration::from_micros(1250),
        attributes: vec![KeyValue::new("http.request.method", "GET")],
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links: SpanLinks::default(),
        status: Status::Unset,
        instrumentation_scope: InstrumentationScope::builder("gosight").build(),
    }
}

fn resource(service: &str, pid: i64) -> Resource {
    Resource::builder_empty()
        .with_attributes([KeyValue::new("service.name", service.to_string()), KeyValue::new("process.pid", pid)])
        .build()
}

fn config(vars: &[(&str, &str)]) -> ExportConfig {
    let map: HashMap<&str, &str> = vars.iter().copied().collect();
    let (cfg, warnings) = ExportConfig::from_lookup(|k| map.get(k).map(|v| v.to_string())).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    cfg
}

fn assert_accounted(s: ExportStats, submitted: u64) {
    assert_eq!(s.queued + s.exported + s.dropped_queue_full + s.dropped_export_failed, submitted, "{s:?}");
}

async fn wait_for(exporter: &Exporter, what: impl Fn(ExportStats) -> bool) -> ExportStats {
    let until = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let s = exporter.stats();
        if what(s) || tokio::time::Instant::now() > until {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "current_thread")]
async fn queue_overflow_counts_drops_exactly() {
    let cfg = config(&[
        ("OTEL_TRACES_EXPORTER", "none"),
        ("OTEL_BSP_MAX_QUEUE_SIZE", "100"),
        ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "10"),
        ("OTEL_BSP_SCHEDULE_DELAY", "3600000"),
    ]);
    let exporter = Exporter::start(cfg).unwrap();
    let t = exporter.register_target(resource("svc", 1));
    // Current-thread runtime: the worker cannot run until we await.
    for i in 0..150 {
        exporter.submit(&t, span(i, "s"));
    }
    let s = exporter.stats();
    assert_eq!((s.queued, s.dropped_queue_full, s.exported), (100, 50, 0));
    exporter.shutdown(Duration::from_secs(5)).await;
    let s = exporter.stats();
    assert_eq!(s, ExportStats { queued: 0, exported: 100, dropped_queue_full: 50, dropped_export_failed: 0 });
    // After shutdown nothing is accepted, but everything is counted.
    exporter.submit(&t, span(999, "late"));
    assert_eq!(exporter.stats().dropped_export_failed, 1);
    exporter.shutdown(Duration::from_secs(1)).await; // idempotent
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn none_exporter_counts_on_schedule_and_full_batches() {
    let cfg = config(&[("OTEL_TRACES_EXPORTER", "none"), ("OTEL_BSP_SCHEDULE_DELAY", "50")]);
    let exporter = Exporter::start(cfg).unwrap();
    let a = exporter.register_target(resource("a", 1));
    let b = exporter.register_target(resource("b", 2));
    for i in 0..1000 {
        exporter.submit(if i % 3 == 0 { &a } else { &b }, span(i, "s"));
    }
    // 1000 < queue size 2048: full batches go at once, the remainder on the 50 ms tick.
    let s = wait_for(&exporter, |s| s.exported == 1000).await;
    assert_eq!(s, ExportStats { queued: 0, exported: 1000, ..Default::default() });
    exporter.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn released_target_is_flushed_then_forgotten() {
    let cfg = config(&[("OTEL_TRACES_EXPORTER", "none"), ("OTEL_BSP_SCHEDULE_DELAY", "3600000")]);
    let exporter = Exporter::start(cfg).unwrap();
    let t = exporter.register_target(resource("gone", 7));
    for i in 0..10 {
        exporter.submit(&t, span(i, "s"));
    }
    exporter.release_target(&t);
    assert!(super::lock(&exporter.inner.targets).is_empty());
    // Queued spans keep the target's exporter alive until they are exported.
    assert_eq!(Arc::strong_count(&t.target), 11);
    exporter.shutdown(Duration::from_secs(1)).await;
    assert_eq!(exporter.stats().exported, 10);
    assert_eq!(Arc::strong_count(&t.target), 1);
}

/// Floods a dead collector: the queue stays at its cap, failures are counted.
async fn dead_endpoint(protocol: &str, endpoint: &str) {
    let cfg = config(&[
        ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
        ("OTEL_BSP_SCHEDULE_DELAY", "20"),
        ("OTEL_BSP_EXPORT_TIMEOUT", "300"),
        ("OTEL_BSP_MAX_QUEUE_SIZE", "1000"),
        ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "100"),
    ])
    .with_otlp_endpoint(endpoint)
    .with_otlp_timeout(Duration::from_millis(250));
    let exporter = Exporter::start(cfg).unwrap();
    let targets = [exporter.register_target(resource("a", 1)), exporter.register_target(resource("b", 2))];
    let shared = Arc::clone(&exporter.inner.shared);
    let mut submitted = 0u64;
    for round in 0..100 {
        for i in 0..1000 {
            exporter.submit(&targets[i % 2], span(submitted, "flood"));
            submitted += 1;
        }
        let s = exporter.stats();
        assert!(shared.queue_len() <= 1000, "round {round}: {s:?}");
        assert!(s.queued <= 1000 + 100, "round {round}: {s:?}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert!(shared.queue_capacity() <= 4096, "queue grew: {}", shared.queue_capacity());
    let s = wait_for(&exporter, |s| s.dropped_export_failed >= 200).await;
    assert!(s.dropped_export_failed >= 200, "{s:?}");
    assert!(s.dropped_queue_full >= 90_000, "{s:?}");
    assert_eq!(s.exported, 0);
    let started = std::time::Instant::now();
    exporter.shutdown(Duration::from_millis(500)).await;
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    let s = exporter.stats();
    assert_eq!(s.queued, 0, "{s:?}");
    assert_eq!(s.exported, 0, "{s:?}");
    assert_accounted(s, submitted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_endpoint_grpc_counts_failures_and_stays_bounded() {
    dead_endpoint("grpc", "http://127.0.0.1:1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_endpoint_http_counts_failures_and_stays_bounded() {
    dead_endpoint("http/protobuf", "http://127.0.0.1:1/v1/traces").await;
}

type Requests = Arc<Mutex<Vec<(String, String)>>>;

/// Minimal OTLP/HTTP receiver: answers every POST with `200 {}`, records head and body.
async fn fake_collector() -> (String, Requests) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1/traces", listener.local_addr().unwrap());
    let requests: Requests = Arc::default();
    let recorded = Arc::clone(&requests);
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            tokio::spawn(serve(conn, Arc::clone(&recorded)));
        }
    });
    (url, requests)
}

async fn serve(mut conn: TcpStream, requests: Requests) {
    let mut buf = Vec::new();
    loop {
        let head_end = loop {
            if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p + 4;
            }
            let mut chunk = [0u8; 4096];
            match conn.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
        let len: usize =
            head.lines().find_map(|l| l.strip_prefix("content-length:")).map_or(0, |v| v.trim().parse().unwrap());
        while buf.len() < head_end + len {
            let mut chunk = [0u8; 4096];
            match conn.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let body = String::from_utf8_lossy(&buf[head_end..head_end + len]).into_owned();
        requests.lock().unwrap().push((head, body));
        buf.drain(..head_end + len);
        let reply = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";
        if conn.write_all(reply.as_bytes()).await.is_err() {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_target_is_exported_with_its_own_resource() {
    let (url, requests) = fake_collector().await;
    let cfg = config(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"), ("OTEL_BSP_SCHEDULE_DELAY", "3600000")])
        .with_otlp_endpoint(url);
    let exporter = Exporter::start(cfg).unwrap();
    let a = exporter.register_target(resource("target-a", 101));
    let b = exporter.register_target(resource("target-b", 202));
    for i in 0..6 {
        let (t, name) = if i % 2 == 0 { (&a, "span-of-a") } else { (&b, "span-of-b") };
        exporter.submit(t, span(i, name));
    }
    exporter.shutdown(Duration::from_secs(5)).await;
    assert_eq!(exporter.stats(), ExportStats { exported: 6, ..Default::default() });
    let requests = requests.lock().unwrap();
    assert_eq!(requests.len(), 2, "one request per target");
    for (head, body) in requests.iter() {
        assert!(head.starts_with("post /v1/traces "), "{head}");
        assert!(head.contains("content-type: application/json"), "{head}");
        let (mine, other) = if body.contains("target-a") { ("a", "b") } else { ("b", "a") };
        assert!(body.contains(&format!("span-of-{mine}")), "{body}");
        assert!(!body.contains(&format!("span-of-{other}")), "{body}");
        assert!(!body.contains(&format!("target-{other}")), "{body}");
        assert_eq!(body.matches(&format!("span-of-{mine}")).count(), 3, "{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_is_bounded_when_the_collector_hangs() {
    // Accepts connections and never answers.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1/traces", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = listener.accept().await {
            held.push(conn);
        }
    });
    let cfg = config(&[("OTEL_BSP_SCHEDULE_DELAY", "3600000")]).with_otlp_endpoint(url);
    let exporter = Exporter::start(cfg).unwrap(); // 30 s export and 10 s OTLP timeouts
    let t = exporter.register_target(resource("svc", 1));
    for i in 0..10 {
        exporter.submit(&t, span(i, "s"));
    }
    let started = std::time::Instant::now();
    exporter.shutdown(Duration::from_millis(300)).await;
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    let s = exporter.stats();
    assert_eq!(s, ExportStats { dropped_export_failed: 10, ..Default::default() });
}

#[tokio::test(flavor = "current_thread")]
async fn start_rejects_unusable_otlp_settings() {
    let cfg = config(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")]).with_otlp_endpoint("https://collector:4317"); // no TLS feature enabled
    let err = Exporter::start(cfg).unwrap_err();
    assert!(format!("{err:#}").contains("collector:4317"), "{err:#}");
    let cfg = config(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "https://collector:4318")]);
    let err = Exporter::start(cfg).unwrap_err();
    assert!(format!("{err:#}").contains("https://collector:4318/v1/traces"), "{err:#}");
}

#[test]
fn start_outside_a_runtime_is_an_error() {
    let err = Exporter::start(config(&[("OTEL_TRACES_EXPORTER", "none")])).unwrap_err();
    assert!(err.to_string().contains("tokio runtime"), "{err}");
}
