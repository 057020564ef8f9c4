//! Stage 5 — what the spans say: probe events become OpenTelemetry spans that follow
//! the stable semantic conventions, with wall-clock times and valid ids; and each
//! target's resource. Ids, parents and the sampling decision come from the kernel
//! (where they are also propagated), so they agree with what went downstream.

use std::borrow::Cow;

use gosight_uprobes::net_http::client::HttpClientEvent;
use gosight_uprobes::net_http::server::HttpServerEvent;
use opentelemetry::trace::{SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_sdk::resource::{EnvResourceDetector, Resource};
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};

mod grpc;

use crate::clock::Clock;
use crate::discover::Target;

/// Builds spans from events; one per sidecar, shared by every target.
#[derive(Debug, Clone)]
pub struct SpanFactory {
    clock: Clock,
    scope: InstrumentationScope,
}

/// Ids and parent of a span as the kernel decided them.
struct Ids {
    trace_id: [u8; 16],
    span_id: [u8; 8],
    parent: Option<[u8; 8]>,
    flags: u8,
}

impl SpanFactory {
    pub fn new(clock: Clock) -> SpanFactory {
        let scope = InstrumentationScope::builder("gosight").with_version(env!("CARGO_PKG_VERSION")).build();
        SpanFactory { clock, scope }
    }

    #[allow(clippy::too_many_arguments)]
    fn span(
        &self,
        ids: Ids,
        kind: SpanKind,
        name: String,
        start_ns: u64,
        end_ns: u64,
        attributes: Vec<KeyValue>,
        status: Status,
    ) -> Option<SpanData> {
        if ids.flags & 1 == 0 {
            return None; // not sampled: nothing to export
        }
        let parent_span_id = ids.parent.map(SpanId::from_bytes).unwrap_or(SpanId::INVALID);
        Some(SpanData {
            span_context: SpanContext::new(
                nonzero_trace_id(ids.trace_id),
                nonzero_span_id(ids.span_id),
                TraceFlags::SAMPLED,
                false,
                TraceState::default(),
            ),
            parent_span_id,
            parent_span_is_remote: kind == SpanKind::Server && parent_span_id != SpanId::INVALID,
            span_kind: kind,
            name: Cow::Owned(name),
            start_time: self.clock.to_system_time(start_ns),
            end_time: self.clock.to_system_time(end_ns.max(start_ns)),
            attributes,
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status,
            instrumentation_scope: self.scope.clone(),
        })
    }

    /// The SERVER span of one request, or None when it was not sampled.
    pub fn http_server(&self, e: &HttpServerEvent) -> Option<SpanData> {
        let route = route_of(&e.pattern);
        let (method, method_original) = normalize_method(&e.method);
        let name = match (&route, method) {
            (Some(r), "_OTHER") => format!("HTTP {r}"),
            (Some(r), m) => format!("{m} {r}"),
            (None, "_OTHER") => "HTTP".to_string(),
            (None, m) => m.to_string(),
        };

        let scheme = if e.tls { "https" } else { "http" };
        let mut attrs = vec![
            KeyValue::new("http.request.method", method.to_string()),
            KeyValue::new("url.path", e.path.clone()),
            KeyValue::new("url.scheme", scheme),
        ];
        if let Some(orig) = method_original {
            attrs.push(KeyValue::new("http.request.method_original", orig.to_string()));
        }
        if let Some(r) = &route {
            attrs.push(KeyValue::new("http.route", r.to_string()));
        }
        // net/http sends 200 when the handler never set a status.
        let status = e.status.map(|s| if s == 0 { 200 } else { s });
        if let Some(s) = status {
            attrs.push(KeyValue::new("http.response.status_code", s as i64));
        }
        if let Some((host, port)) = split_host_port(&e.host) {
            attrs.push(KeyValue::new("server.address", host.to_string()));
            let port = port.or(if e.tls { Some(443) } else { Some(80) });
            if let Some(p) = port {
                attrs.push(KeyValue::new("server.port", p as i64));
            }
        }
        if let Some((addr, port)) = split_host_port(&e.remote_addr) {
            attrs.push(KeyValue::new("client.address", addr.to_string()));
            if let Some(p) = port {
                attrs.push(KeyValue::new("client.port", p as i64));
            }
        }
        if let Some(v) = protocol_version(&e.proto) {
            attrs.push(KeyValue::new("network.protocol.version", v));
        }

        let span_status = match status {
            Some(s) if s >= 500 => Status::error(""),
            _ => Status::Unset,
        };
        let ids = Ids { trace_id: e.trace_id, span_id: e.span_id, parent: e.parent_span_id, flags: e.flags };
        self.span(ids, SpanKind::Server, name, e.start_ns, e.end_ns, attrs, span_status)
    }

    /// The CLIENT span of one outgoing request, or None when it was not sampled.
    /// `error_type` names the Go type of a transport error (e.g. `*net.OpError`).
    pub fn http_client(&self, e: &HttpClientEvent, error_type: Option<&str>) -> Option<SpanData> {
        let (method, method_original) = normalize_method(&e.method);
        let name = if method == "_OTHER" { "HTTP".to_string() } else { method.to_string() };
        let mut attrs = vec![KeyValue::new("http.request.method", method.to_string())];
        if let Some(orig) = method_original {
            attrs.push(KeyValue::new("http.request.method_original", orig.to_string()));
        }
        // url.full never carries credentials: URL.User is a separate field we do not read.
        let mut full = format!("{}://{}{}", e.scheme, e.host, if e.path.is_empty() { "/" } else { &e.path });
        if !e.query.is_empty() {
            full.push('?');
            full.push_str(&e.query);
        }
        attrs.push(KeyValue::new("url.full", full));
        if let Some((host, port)) = split_host_port(&e.host) {
            attrs.push(KeyValue::new("server.address", host.to_string()));
            let port = port.or(match e.scheme.as_str() {
                "https" => Some(443),
                "http" => Some(80),
                _ => None,
            });
            if let Some(p) = port {
                attrs.push(KeyValue::new("server.port", p as i64));
            }
        }
        let mut status = Status::Unset;
        match (e.status, e.error_itab) {
            (Some(code), _) => {
                attrs.push(KeyValue::new("http.response.status_code", code as i64));
                if code >= 400 {
                    attrs.push(KeyValue::new("error.type", code.to_string()));
                    status = Status::error("");
                }
            }
            (None, 0) => {}
            (None, _) => {
                let t = error_type.unwrap_or("_OTHER");
                attrs.push(KeyValue::new("error.type", t.to_string()));
                status = Status::error(t.to_string());
            }
        }
        let ids = Ids { trace_id: e.trace_id, span_id: e.span_id, parent: e.parent_span_id, flags: e.flags };
        self.span(ids, SpanKind::Client, name, e.start_ns, e.end_ns, attrs, status)
    }
}

fn nonzero_trace_id(b: [u8; 16]) -> TraceId {
    if b == [0; 16] {
        TraceId::from_bytes(rand::random::<u128>().max(1).to_be_bytes())
    } else {
        TraceId::from_bytes(b)
    }
}

fn nonzero_span_id(b: [u8; 8]) -> SpanId {
    if b == [0; 8] {
        SpanId::from_bytes(rand::random::<u64>().max(1).to_be_bytes())
    } else {
        SpanId::from_bytes(b)
    }
}

const KNOWN_METHODS: [&str; 9] = ["CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE"];

/// The semantic-convention method and, when it is not a known one, the original.
fn normalize_method(m: &str) -> (&'static str, Option<&str>) {
    match KNOWN_METHODS.iter().find(|k| **k == m) {
        Some(k) => (k, None),
        None => ("_OTHER", Some(m)),
    }
}

/// http.route from a ServeMux pattern (`[METHOD ][HOST]/PATH`): the path part.
fn route_of(pattern: &str) -> Option<String> {
    let p = pattern.trim();
    if p.is_empty() {
        return None;
    }
    let after_method = match p.split_once([' ', '\t']) {
        Some((_, rest)) => rest.trim_start(),
        None => p,
    };
    after_method.find('/').map(|i| after_method[i..].to_string())
}

/// Splits `host:port`, `[v6]:port`, `host` or `v6` into host and optional port.
pub fn split_host_port(s: &str) -> Option<(&str, Option<u16>)> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    if let Some(rest) = s.strip_prefix('[') {
        let (host, tail) = rest.split_once(']')?;
        let port = tail.strip_prefix(':').and_then(|p| p.parse().ok());
        return Some((host, port));
    }
    match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => Some((h, p.parse().ok())),
        _ => Some((s, None)),
    }
}

/// `HTTP/1.1` → `1.1`, `HTTP/2.0` → `2`.
fn protocol_version(proto: &str) -> Option<String> {
    let v = proto.strip_prefix("HTTP/")?;
    Some(match v {
        "2.0" => "2".into(),
        "3.0" => "3".into(),
        other => other.into(),
    })
}

/// The resource of one target: which process the spans come from.
///
/// `service.name`: `OTEL_SERVICE_NAME`, else `service.name` in
/// `OTEL_RESOURCE_ATTRIBUTES`, else the executable's file name.
pub fn resource_for(target: &Target) -> Resource {
    let exe = &target.process.exe;
    let exe_name = exe.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let build = &target.binary.build;
    let mut defaults = vec![
        KeyValue::new("service.name", exe_name.clone()),
        KeyValue::new("process.pid", target.process.pid as i64),
        KeyValue::new("process.executable.path", exe.display().to_string()),
        KeyValue::new("process.executable.name", exe_name),
        KeyValue::new("process.runtime.name", "go"),
        KeyValue::new("process.runtime.version", build.go_version.to_string()),
        KeyValue::new("telemetry.distro.name", "gosight"),
        KeyValue::new("telemetry.distro.version", env!("CARGO_PKG_VERSION")),
        KeyValue::new("telemetry.sdk.name", "opentelemetry"),
        KeyValue::new("telemetry.sdk.language", "go"),
    ];
    if let Some(m) = &build.main_module {
        defaults.push(KeyValue::new("process.runtime.description", format!("{} {}", m.path, m.version)));
    }
    let mut b = Resource::builder_empty().with_attributes(defaults).with_detector(Box::new(EnvResourceDetector::new()));
    if let Ok(name) = std::env::var("OTEL_SERVICE_NAME") {
        if !name.trim().is_empty() {
            b = b.with_service_name(name);
        }
    }
    b.build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::Value;

    fn event() -> HttpServerEvent {
        HttpServerEvent {
            start_ns: 1_000,
            end_ns: 5_000,
            goroutine: 1,
            trace_id: [1; 16],
            span_id: [2; 8],
            parent_span_id: None,
            flags: 1,
            status: Some(0),
            tls: false,
            method: "GET".into(),
            path: "/users/7".into(),
            path_truncated: false,
            pattern: "GET /users/{id}".into(),
            host: "localhost:8080".into(),
            remote_addr: "[::1]:5555".into(),
            proto: "HTTP/1.1".into(),
        }
    }

    fn attr<'a>(s: &'a SpanData, k: &str) -> Option<&'a Value> {
        s.attributes.iter().find(|kv| kv.key.as_str() == k).map(|kv| &kv.value)
    }

    #[test]
    fn server_span_follows_semconv() {
        let f = SpanFactory::new(Clock::new());
        let s = f.http_server(&event()).unwrap();
        assert_eq!(s.name, "GET /users/{id}");
        assert_eq!(s.span_kind, SpanKind::Server);
        assert_eq!(attr(&s, "http.route"), Some(&Value::from("/users/{id}")));
        assert_eq!(attr(&s, "http.response.status_code"), Some(&Value::I64(200)));
        assert_eq!(attr(&s, "server.port"), Some(&Value::I64(8080)));
        assert_eq!(attr(&s, "client.address"), Some(&Value::from("::1")));
        assert_eq!(attr(&s, "client.port"), Some(&Value::I64(5555)));
        assert_eq!(attr(&s, "network.protocol.version"), Some(&Value::from("1.1")));
        assert_eq!(s.status, Status::Unset);
        assert_eq!(s.end_time.duration_since(s.start_time).unwrap().as_nanos(), 4000);
    }

    #[test]
    fn errors_unknown_methods_and_no_route() {
        let f = SpanFactory::new(Clock::new());
        let mut e = event();
        e.status = Some(503);
        e.pattern.clear();
        e.method = "BREW".into();
        e.trace_id = [0; 16];
        e.span_id = [0; 8];
        let s = f.http_server(&e).unwrap();
        assert_eq!(s.name, "HTTP");
        assert!(matches!(s.status, Status::Error { .. }));
        assert_eq!(attr(&s, "http.request.method"), Some(&Value::from("_OTHER")));
        assert_eq!(attr(&s, "http.request.method_original"), Some(&Value::from("BREW")));
        assert_ne!(s.span_context.trace_id(), TraceId::INVALID);
        assert_ne!(s.span_context.span_id(), SpanId::INVALID);
    }

    #[test]
    fn unsampled_is_not_exported() {
        let f = SpanFactory::new(Clock::new());
        assert!(f.http_server(&HttpServerEvent { flags: 0, ..event() }).is_none());
    }

    #[test]
    fn client_span_with_parent_and_transport_error() {
        let f = SpanFactory::new(Clock::new());
        let e = HttpClientEvent {
            start_ns: 1,
            end_ns: 2,
            goroutine: 1,
            trace_id: [3; 16],
            span_id: [4; 8],
            parent_span_id: Some([5; 8]),
            flags: 1,
            status: None,
            error_itab: 0x1234,
            method: "GET".into(),
            scheme: "http".into(),
            host: "127.0.0.1:1".into(),
            path: "/hop".into(),
            query: "a=b".into(),
        };
        let s = f.http_client(&e, Some("*net.OpError")).unwrap();
        assert_eq!(s.name, "GET");
        assert_eq!(s.span_kind, SpanKind::Client);
        assert_eq!(s.parent_span_id, SpanId::from_bytes([5; 8]));
        assert_eq!(attr(&s, "url.full"), Some(&Value::from("http://127.0.0.1:1/hop?a=b")));
        assert_eq!(attr(&s, "server.port"), Some(&Value::I64(1)));
        assert_eq!(attr(&s, "error.type"), Some(&Value::from("*net.OpError")));
        assert!(matches!(s.status, Status::Error { .. }));
        let ok = f.http_client(&HttpClientEvent { status: Some(404), error_itab: 0, ..e }, None).unwrap();
        assert_eq!(attr(&ok, "error.type"), Some(&Value::from("404")));
    }

    #[test]
    fn routes_and_hosts() {
        assert_eq!(route_of("GET example.com/a/{b}"), Some("/a/{b}".into()));
        assert_eq!(route_of("/static/"), Some("/static/".into()));
        assert_eq!(route_of(""), None);
        assert_eq!(split_host_port("example.com"), Some(("example.com", None)));
        assert_eq!(split_host_port("10.0.0.1:80"), Some(("10.0.0.1", Some(80))));
        assert_eq!(split_host_port("::1"), Some(("::1", None)));
        assert_eq!(protocol_version("HTTP/2.0"), Some("2".into()));
    }
}
