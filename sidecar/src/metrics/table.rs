//! Which RED metric a span feeds and which of its attributes the metric keeps: one
//! table for every library. A span is matched by its kind and the semantic-convention
//! attribute that says what it is (`http.request.method`, `rpc.system`,
//! `db.system.name`, `messaging.system`), so a new library's spans feed the right
//! histogram without code of their own — go-redis's CLIENT spans with
//! `db.system.name=redis` feed `db.client.operation.duration`, Kafka's PRODUCER and
//! CONSUMER spans the messaging metrics.
//!
//! Units and buckets are the semantic conventions' (stable HTTP and database
//! conventions; messaging's; RPC as in conventions v1.37, whose names
//! `rpc.server.duration` / `rpc.client.duration` are in milliseconds — v1.38 renamed
//! them `rpc.*.call.duration` in seconds).

use gosight_uprobes::net_http::KNOWN_METHODS;
use gosight_uprobes::ProbeSpan;
use opentelemetry::trace::SpanKind;
use opentelemetry::Value;

/// One histogram.
#[derive(Debug)]
pub struct MetricSpec {
    pub name: &'static str,
    /// `s` or `ms` (durations are converted to it).
    pub unit: &'static str,
    pub description: &'static str,
    pub buckets: &'static [f64],
    /// The span attributes its points keep (when the span has them).
    pub attributes: &'static [Kept],
}

impl MetricSpec {
    /// A duration in nanoseconds, in this metric's unit.
    pub fn value(&self, nanos: u64) -> f64 {
        match self.unit {
            "ms" => nanos as f64 / 1e6,
            _ => nanos as f64 / 1e9,
        }
    }
}

/// An attribute a metric keeps.
#[derive(Debug)]
pub struct Kept {
    pub key: &'static str,
    /// How its value is found: the span's attribute of the same key, or a function
    /// of the span (a normalisation, or a value the span has in another form).
    pub from: Source,
}

#[derive(Debug)]
pub enum Source {
    Span,
    Derived(fn(&ProbeSpan) -> Option<Value>),
}

const fn kept(key: &'static str) -> Kept {
    Kept { key, from: Source::Span }
}

const fn derived(key: &'static str, f: fn(&ProbeSpan) -> Option<Value>) -> Kept {
    Kept { key, from: Source::Derived(f) }
}

/// Which spans feed a metric: any of `kinds` carrying the attribute `has`
/// (equal to `equals`, when given). The first matching row wins.
#[derive(Debug)]
pub struct Route {
    pub kinds: &'static [SpanKind],
    pub has: &'static str,
    pub equals: Option<&'static str>,
    pub metric: &'static MetricSpec,
}

const HTTP_BUCKETS: &[f64] = &[0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0];
/// The HTTP buckets in milliseconds (the v1.37 RPC metrics are in ms).
const RPC_BUCKETS_MS: &[f64] =
    &[5.0, 10.0, 25.0, 50.0, 75.0, 100.0, 250.0, 500.0, 750.0, 1000.0, 2500.0, 5000.0, 7500.0, 10000.0];
const DB_BUCKETS: &[f64] = &[0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0];

pub static HTTP_SERVER: MetricSpec = MetricSpec {
    name: "http.server.request.duration",
    unit: "s",
    description: "Duration of HTTP server requests",
    buckets: HTTP_BUCKETS,
    attributes: &[
        derived("http.request.method", known_method),
        kept("http.response.status_code"),
        // The route template (from the mux's pattern), never a path: absent when
        // no pattern matched.
        kept("http.route"),
        kept("url.scheme"),
        kept("network.protocol.version"),
        kept("error.type"),
    ],
};

pub static HTTP_CLIENT: MetricSpec = MetricSpec {
    name: "http.client.request.duration",
    unit: "s",
    description: "Duration of HTTP client requests",
    buckets: HTTP_BUCKETS,
    attributes: &[
        derived("http.request.method", known_method),
        kept("http.response.status_code"),
        kept("server.address"),
        kept("server.port"),
        derived("url.scheme", scheme_of_url_full),
        kept("network.protocol.version"),
        kept("error.type"),
    ],
};

const RPC_ATTRIBUTES: &[Kept] = &[
    kept("rpc.system"),
    kept("rpc.service"),
    kept("rpc.method"),
    kept("rpc.grpc.status_code"),
    kept("server.address"),
    kept("server.port"),
    kept("error.type"),
];

pub static RPC_SERVER: MetricSpec = MetricSpec {
    name: "rpc.server.duration",
    unit: "ms",
    description: "Duration of inbound RPCs",
    buckets: RPC_BUCKETS_MS,
    attributes: RPC_ATTRIBUTES,
};

pub static RPC_CLIENT: MetricSpec = MetricSpec {
    name: "rpc.client.duration",
    unit: "ms",
    description: "Duration of outbound RPCs",
    buckets: RPC_BUCKETS_MS,
    attributes: RPC_ATTRIBUTES,
};

pub static DB_CLIENT: MetricSpec = MetricSpec {
    name: "db.client.operation.duration",
    unit: "s",
    description: "Duration of database client operations",
    buckets: DB_BUCKETS,
    attributes: &[
        kept("db.system.name"),
        kept("db.operation.name"),
        kept("db.collection.name"),
        kept("db.namespace"),
        kept("server.address"),
        kept("server.port"),
        kept("error.type"),
        kept("db.response.status_code"),
    ],
};

const MESSAGING_ATTRIBUTES: &[Kept] = &[
    kept("messaging.system"),
    kept("messaging.operation.name"),
    kept("messaging.operation.type"),
    kept("messaging.destination.name"),
    kept("server.address"),
    kept("server.port"),
    kept("error.type"),
];

pub static MESSAGING_CLIENT: MetricSpec = MetricSpec {
    name: "messaging.client.operation.duration",
    unit: "s",
    description: "Duration of messaging operations initiated by a producer or consumer client",
    buckets: DB_BUCKETS,
    attributes: MESSAGING_ATTRIBUTES,
};

/// The conventions measure processing a message (a CONSUMER span of operation type
/// `process`) apart from the client's operations.
pub static MESSAGING_PROCESS: MetricSpec = MetricSpec {
    name: "messaging.process.duration",
    unit: "s",
    description: "Duration of processing operations",
    buckets: DB_BUCKETS,
    attributes: MESSAGING_ATTRIBUTES,
};

/// Every metric, in the order [`ROUTES`] and the instruments use.
pub static METRICS: &[&MetricSpec] =
    &[&HTTP_SERVER, &HTTP_CLIENT, &RPC_SERVER, &RPC_CLIENT, &DB_CLIENT, &MESSAGING_PROCESS, &MESSAGING_CLIENT];

const MESSAGING_KINDS: &[SpanKind] = &[SpanKind::Producer, SpanKind::Consumer, SpanKind::Client];

/// Which spans feed which metric; the first match wins.
pub static ROUTES: &[Route] = &[
    Route { kinds: &[SpanKind::Server], has: "http.request.method", equals: None, metric: &HTTP_SERVER },
    Route { kinds: &[SpanKind::Client], has: "http.request.method", equals: None, metric: &HTTP_CLIENT },
    Route { kinds: &[SpanKind::Server], has: "rpc.system", equals: None, metric: &RPC_SERVER },
    Route { kinds: &[SpanKind::Client], has: "rpc.system", equals: None, metric: &RPC_CLIENT },
    Route { kinds: &[SpanKind::Client], has: "db.system.name", equals: None, metric: &DB_CLIENT },
    Route {
        kinds: &[SpanKind::Consumer],
        has: "messaging.operation.type",
        equals: Some("process"),
        metric: &MESSAGING_PROCESS,
    },
    Route { kinds: MESSAGING_KINDS, has: "messaging.system", equals: None, metric: &MESSAGING_CLIENT },
];

/// The metric `span` feeds (its index in [`METRICS`]), if any.
pub fn metric_for(span: &ProbeSpan) -> Option<usize> {
    let route = ROUTES.iter().find(|r| {
        r.kinds.contains(&span.kind) && span.attribute(r.has).is_some_and(|v| r.equals.is_none_or(|e| v.as_str() == e))
    })?;
    METRICS.iter().position(|m| std::ptr::eq(*m, route.metric))
}

/// The attributes `metric` keeps from `span` (key, value), uncapped, in the
/// table's order.
pub fn attributes_of(metric: &MetricSpec, span: &ProbeSpan) -> Vec<(&'static str, Value)> {
    metric
        .attributes
        .iter()
        .filter_map(|k| {
            let v = match k.from {
                Source::Span => span.attribute(k.key).cloned(),
                Source::Derived(f) => f(span),
            }?;
            Some((k.key, v))
        })
        .collect()
}

/// `http.request.method` as the conventions bound it: a known method or `_OTHER`.
fn known_method(span: &ProbeSpan) -> Option<Value> {
    let m = span.attribute("http.request.method")?.as_str();
    Some(Value::from(KNOWN_METHODS.iter().find(|k| **k == m).copied().unwrap_or("_OTHER")))
}

/// `url.scheme`, or for a client span that has only `url.full`, its scheme.
fn scheme_of_url_full(span: &ProbeSpan) -> Option<Value> {
    if let Some(v) = span.attribute("url.scheme") {
        return Some(v.clone());
    }
    let full = span.attribute("url.full")?.as_str();
    let (scheme, _) = full.split_once("://")?;
    Some(Value::from(scheme.to_ascii_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use gosight_uprobes::records::span_head;
    use opentelemetry::KeyValue;

    fn span(kind: SpanKind, attrs: Vec<KeyValue>) -> ProbeSpan {
        let head = span_head { start_ns: 1_000_000, end_ns: 3_500_000, ..Default::default() };
        let mut s = ProbeSpan::from_head(&head, kind, "x".into());
        s.attributes = attrs;
        s
    }

    fn get<'a>(attrs: &'a [(&str, Value)], k: &str) -> Option<&'a Value> {
        attrs.iter().find(|(key, _)| *key == k).map(|(_, v)| v)
    }

    #[test]
    fn redis_spans_feed_the_database_metric() {
        let s = span(
            SpanKind::Client,
            vec![
                KeyValue::new("db.system.name", "redis"),
                KeyValue::new("db.operation.name", "GET"),
                KeyValue::new("db.namespace", "0"),
                KeyValue::new("db.query.text", "GET user:42"),
                KeyValue::new("server.address", "127.0.0.1"),
                KeyValue::new("server.port", 6379i64),
            ],
        );
        let m = METRICS[metric_for(&s).unwrap()];
        assert_eq!(m.name, "db.client.operation.duration");
        assert_eq!(m.value(s.end_ns - s.start_ns), 0.0025);
        let a = attributes_of(m, &s);
        assert_eq!(get(&a, "db.system.name"), Some(&Value::from("redis")));
        assert_eq!(get(&a, "db.operation.name"), Some(&Value::from("GET")));
        assert_eq!(get(&a, "db.namespace"), Some(&Value::from("0")));
        assert_eq!(get(&a, "server.port"), Some(&Value::I64(6379)));
        assert_eq!(get(&a, "db.query.text"), None, "query text is never a metric attribute");
        assert_eq!(a.len(), 5);
    }

    #[test]
    fn kafka_spans_feed_the_messaging_metrics_by_operation() {
        let common = |op: &str, ty: &str| {
            vec![
                KeyValue::new("messaging.system", "kafka"),
                KeyValue::new("messaging.operation.name", op.to_string()),
                KeyValue::new("messaging.operation.type", ty.to_string()),
                KeyValue::new("messaging.destination.name", "orders"),
                KeyValue::new("messaging.kafka.message.key", "k-123"),
                KeyValue::new("server.address", "broker-1"),
            ]
        };
        let send = span(SpanKind::Producer, common("send", "send"));
        let m = METRICS[metric_for(&send).unwrap()];
        assert_eq!(m.name, "messaging.client.operation.duration");
        let a = attributes_of(m, &send);
        assert_eq!(get(&a, "messaging.destination.name"), Some(&Value::from("orders")));
        assert_eq!(get(&a, "messaging.operation.type"), Some(&Value::from("send")));
        assert_eq!(get(&a, "messaging.kafka.message.key"), None);

        let process = span(SpanKind::Consumer, common("process", "process"));
        assert_eq!(METRICS[metric_for(&process).unwrap()].name, "messaging.process.duration");
        let receive = span(SpanKind::Consumer, common("poll", "receive"));
        assert_eq!(METRICS[metric_for(&receive).unwrap()].name, "messaging.client.operation.duration");
    }

    #[test]
    fn http_spans_keep_templates_and_bounded_methods() {
        let s = span(
            SpanKind::Server,
            vec![
                KeyValue::new("http.request.method", "BREW"),
                KeyValue::new("url.path", "/users/42"),
                KeyValue::new("http.route", "/users/{id}"),
                KeyValue::new("http.response.status_code", 200i64),
                KeyValue::new("client.address", "10.0.0.7"),
            ],
        );
        let m = METRICS[metric_for(&s).unwrap()];
        assert_eq!(m.name, "http.server.request.duration");
        let a = attributes_of(m, &s);
        assert_eq!(get(&a, "http.request.method"), Some(&Value::from("_OTHER")));
        assert_eq!(get(&a, "http.route"), Some(&Value::from("/users/{id}")));
        assert_eq!(get(&a, "url.path"), None);
        assert_eq!(get(&a, "client.address"), None);

        let c = span(
            SpanKind::Client,
            vec![KeyValue::new("http.request.method", "GET"), KeyValue::new("url.full", "https://example.com/a?b")],
        );
        let m = METRICS[metric_for(&c).unwrap()];
        assert_eq!(m.name, "http.client.request.duration");
        assert_eq!(get(&attributes_of(m, &c), "url.scheme"), Some(&Value::from("https")));
    }

    #[test]
    fn rpc_durations_are_in_milliseconds_and_unknown_spans_feed_nothing() {
        let s = span(SpanKind::Server, vec![KeyValue::new("rpc.system", "grpc")]);
        let m = METRICS[metric_for(&s).unwrap()];
        assert_eq!((m.name, m.unit, m.value(2_500_000)), ("rpc.server.duration", "ms", 2.5));
        assert_eq!(metric_for(&span(SpanKind::Internal, vec![KeyValue::new("rpc.system", "grpc")])), None);
        assert_eq!(metric_for(&span(SpanKind::Client, vec![])), None);
    }
}
