//! A real OpenTelemetry Collector receiving OTLP and writing it to a JSON file, and
//! the parsing of that file into flat span records the tests assert on.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::process::Child;
use crate::{free_port, repo_root};

/// The collector binary, built and cached by scripts/install-collector.sh
/// (`GOSIGHT_OTELCOL` names one explicitly).
pub fn collector_bin() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("GOSIGHT_OTELCOL") {
        return Some(PathBuf::from(p));
    }
    let out = Command::new("bash").arg(repo_root().join("scripts/install-collector.sh")).output().ok()?;
    if !out.status.success() {
        eprintln!("{}", String::from_utf8_lossy(&out.stderr));
        return None;
    }
    let path = String::from_utf8_lossy(&out.stdout).lines().last()?.trim().to_string();
    Some(PathBuf::from(path)).filter(|p| p.exists())
}

/// The collector binary, or None after [`crate::require`] reported it missing.
pub fn require_collector() -> Option<PathBuf> {
    let bin = collector_bin();
    crate::require("the OpenTelemetry Collector (scripts/install-collector.sh)", bin.is_some());
    bin
}

pub struct Collector {
    pub grpc_endpoint: String,
    pub http_endpoint: String,
    pub traces_file: PathBuf,
    pub metrics_file: PathBuf,
    _child: Child,
    _dir: PathBuf,
}

impl Collector {
    pub fn start(bin: &std::path::Path) -> Collector {
        Collector::start_on(bin, "127.0.0.1")
    }

    /// A collector listening on `host` (`0.0.0.0` for pods to reach it at the
    /// node's address); the endpoints name `host`.
    pub fn start_on(bin: &std::path::Path, host: &str) -> Collector {
        // The ports are free when picked but not held: another process may bind
        // one before the collector does, and then it exits at once. Pick again.
        for attempt in 1.. {
            let dir = std::env::temp_dir().join(format!("gosight-e2e-col-{}-{}", std::process::id(), free_port()));
            std::fs::create_dir_all(&dir).unwrap();
            let (grpc, http) = (free_port(), free_port());
            let traces_file = dir.join("traces.jsonl");
            let mut cmd = Command::new(bin);
            cmd.arg("--config")
                .arg(repo_root().join("tests/collector/config.yaml"))
                .env("GRPC_ENDPOINT", format!("{host}:{grpc}"))
                .env("HTTP_ENDPOINT", format!("{host}:{http}"))
                .env("OUTPUT_FILE", &traces_file)
                .env("METRICS_FILE", dir.join("metrics.jsonl"));
            let metrics_file = dir.join("metrics.jsonl");
            let mut child = Child::spawn("otelcol", cmd, &dir);
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let out = child.output();
                if out.contains("Everything is ready") {
                    return Collector {
                        grpc_endpoint: format!("http://{host}:{grpc}"),
                        http_endpoint: format!("http://{host}:{http}"),
                        traces_file,
                        metrics_file,
                        _child: child,
                        _dir: dir,
                    };
                }
                if !child.is_running() && out.contains("address already in use") && attempt < 5 {
                    eprintln!("otelcol: port {grpc} or {http} taken before it bound them; picking others");
                    break;
                }
                assert!(Instant::now() < deadline, "otelcol: not ready within 30 s; output:\n{out}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        unreachable!()
    }

    /// A gosight command exporting traces and metrics here over OTLP/HTTP, quickly
    /// (spans batched for 100 ms, metrics every 500 ms), logging at info.
    pub fn gosight_command(&self) -> Command {
        let mut cmd = Command::new(crate::gosight_bin());
        cmd.env("OTEL_EXPORTER_OTLP_ENDPOINT", &self.http_endpoint)
            .env("OTEL_BSP_SCHEDULE_DELAY", "100")
            .env("OTEL_METRIC_EXPORT_INTERVAL", "500")
            .env("RUST_LOG", "gosight=info");
        cmd
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<Span> {
        let text = std::fs::read_to_string(&self.traces_file).unwrap_or_default();
        text.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()).flat_map(|v| parse_export(&v)).collect()
    }

    /// Waits until `pred` holds for the received spans, then returns them.
    pub fn wait_for(&self, timeout: Duration, pred: impl Fn(&[Span]) -> bool) -> Vec<Span> {
        let deadline = Instant::now() + timeout;
        loop {
            let spans = self.spans();
            if pred(&spans) || Instant::now() > deadline {
                return spans;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Collector {
    /// The latest value of every metric series received so far (cumulative
    /// temporality: the newest point of a series is its total).
    pub fn metric_points(&self) -> Vec<MetricPoint> {
        let text = std::fs::read_to_string(&self.metrics_file).unwrap_or_default();
        let mut latest: Vec<MetricPoint> = Vec::new();
        for v in text.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()) {
            for p in parse_metrics(&v) {
                let key = |q: &MetricPoint| (q.name.clone(), format!("{:?}", sorted(&q.attrs)));
                match latest.iter_mut().find(|q| key(q) == key(&p)) {
                    Some(q) => *q = p,
                    None => latest.push(p),
                }
            }
        }
        latest
    }
}

fn sorted(m: &HashMap<String, Value>) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = m.iter().map(|(k, x)| (k.clone(), x.to_string())).collect();
    v.sort();
    v
}

/// One data point of a sum (value) or histogram (count and sum).
#[derive(Debug, Clone)]
pub struct MetricPoint {
    pub name: String,
    pub attrs: HashMap<String, Value>,
    pub resource: HashMap<String, Value>,
    /// A sum's value, or a histogram's count.
    pub value: f64,
    /// A histogram's sum.
    pub sum: f64,
}

impl MetricPoint {
    pub fn attr_str(&self, k: &str) -> Option<&str> {
        self.attrs.get(k).and_then(Value::as_str)
    }
    pub fn attr_int(&self, k: &str) -> Option<i64> {
        self.attrs.get(k).and_then(Value::as_i64)
    }
}

fn number(v: Option<&Value>) -> f64 {
    match v {
        Some(Value::String(s)) => s.parse().unwrap_or(0.0),
        Some(Value::Number(n)) => n.as_f64().unwrap_or(0.0),
        _ => 0.0,
    }
}

fn parse_metrics(v: &Value) -> Vec<MetricPoint> {
    let mut out = Vec::new();
    for rm in v.get("resourceMetrics").and_then(Value::as_array).into_iter().flatten() {
        let resource = attributes(&rm["resource"]["attributes"]);
        for sm in rm.get("scopeMetrics").and_then(Value::as_array).into_iter().flatten() {
            for m in sm.get("metrics").and_then(Value::as_array).into_iter().flatten() {
                let name = m["name"].as_str().unwrap_or_default().to_string();
                for (kind, value_key) in [("sum", "asInt"), ("gauge", "asInt"), ("histogram", "count")] {
                    for p in m[kind]["dataPoints"].as_array().into_iter().flatten() {
                        let value = if p.get(value_key).is_some() {
                            number(p.get(value_key))
                        } else {
                            number(p.get("asDouble"))
                        };
                        out.push(MetricPoint {
                            name: name.clone(),
                            attrs: attributes(&p["attributes"]),
                            resource: resource.clone(),
                            value,
                            sum: number(p.get("sum")),
                        });
                    }
                }
            }
        }
    }
    out
}

/// One span, flattened with its resource.
#[derive(Debug, Clone)]
pub struct Span {
    pub trace_id: String,
    pub span_id: String,
    pub parent_span_id: String,
    pub name: String,
    /// OTLP SpanKind number: 2 = SERVER, 3 = CLIENT.
    pub kind: i64,
    pub start_ns: u128,
    pub end_ns: u128,
    /// OTLP status code: 0 unset, 1 ok, 2 error.
    pub status_code: i64,
    pub attrs: HashMap<String, Value>,
    pub resource: HashMap<String, Value>,
    pub scope: String,
    /// The span's links: (trace id, span id) of each linked span.
    pub links: Vec<(String, String)>,
}

impl Span {
    pub fn attr_str(&self, k: &str) -> Option<&str> {
        self.attrs.get(k)?.as_str()
    }
    pub fn attr_int(&self, k: &str) -> Option<i64> {
        self.attrs.get(k)?.as_i64()
    }
    pub fn resource_str(&self, k: &str) -> Option<&str> {
        self.resource.get(k)?.as_str()
    }
    pub fn resource_int(&self, k: &str) -> Option<i64> {
        self.resource.get(k)?.as_i64()
    }
}

/// OTLP/JSON AnyValue to a plain JSON value (ints arrive as strings).
fn any_value(v: &Value) -> Value {
    if let Some(s) = v.get("stringValue") {
        return s.clone();
    }
    if let Some(i) = v.get("intValue") {
        return match i {
            Value::String(s) => s.parse::<i64>().map(Value::from).unwrap_or(Value::Null),
            other => other.clone(),
        };
    }
    for k in ["boolValue", "doubleValue"] {
        if let Some(x) = v.get(k) {
            return x.clone();
        }
    }
    v.clone()
}

fn attributes(v: &Value) -> HashMap<String, Value> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|kv| Some((kv.get("key")?.as_str()?.to_string(), any_value(kv.get("value")?))))
        .collect()
}

fn nanos(v: Option<&Value>) -> u128 {
    match v {
        Some(Value::String(s)) => s.parse().unwrap_or(0),
        Some(Value::Number(n)) => n.as_u64().unwrap_or(0) as u128,
        _ => 0,
    }
}

fn parse_export(v: &Value) -> Vec<Span> {
    let mut out = Vec::new();
    for rs in v.get("resourceSpans").and_then(Value::as_array).into_iter().flatten() {
        let resource = attributes(&rs["resource"]["attributes"]);
        for ss in rs.get("scopeSpans").and_then(Value::as_array).into_iter().flatten() {
            let scope = ss["scope"]["name"].as_str().unwrap_or_default().to_string();
            for s in ss.get("spans").and_then(Value::as_array).into_iter().flatten() {
                out.push(Span {
                    trace_id: s["traceId"].as_str().unwrap_or_default().to_string(),
                    span_id: s["spanId"].as_str().unwrap_or_default().to_string(),
                    parent_span_id: s["parentSpanId"].as_str().unwrap_or_default().to_string(),
                    name: s["name"].as_str().unwrap_or_default().to_string(),
                    kind: s["kind"].as_i64().unwrap_or(0),
                    start_ns: nanos(s.get("startTimeUnixNano")),
                    end_ns: nanos(s.get("endTimeUnixNano")),
                    status_code: s["status"]["code"].as_i64().unwrap_or(0),
                    attrs: attributes(&s["attributes"]),
                    resource: resource.clone(),
                    scope: scope.clone(),
                    links: s
                        .get("links")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .map(|l| {
                            let id = |k: &str| l[k].as_str().unwrap_or_default().to_string();
                            (id("traceId"), id("spanId"))
                        })
                        .collect(),
                });
            }
        }
    }
    out
}
