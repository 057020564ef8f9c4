//! gRPC spans, per the OpenTelemetry RPC semantic conventions for gRPC.

use gosight_uprobes::grpc::client::GrpcClientEvent;
use gosight_uprobes::grpc::server::GrpcServerEvent;
use opentelemetry::trace::{SpanKind, Status};
use opentelemetry::KeyValue;
use opentelemetry_sdk::trace::SpanData;

use super::{Ids, SpanFactory};

const CODE_NAMES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

/// Codes that are errors for the server (semantic conventions): UNKNOWN,
/// DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS.
fn server_error(code: i32) -> bool {
    matches!(code, 2 | 4 | 12 | 13 | 14 | 15)
}

/// `/pkg.Service/Method` → (`pkg.Service`, `Method`).
fn split_method(full: &str) -> (Option<&str>, Option<&str>) {
    let m = full.strip_prefix('/').unwrap_or(full);
    match m.rsplit_once('/') {
        Some((svc, method)) => (Some(svc).filter(|s| !s.is_empty()), Some(method).filter(|s| !s.is_empty())),
        None => (None, Some(m).filter(|s| !s.is_empty())),
    }
}

fn rpc_attributes(method: &str, code: i32) -> (String, Vec<KeyValue>) {
    let (service, name) = split_method(method);
    let span_name = method.strip_prefix('/').unwrap_or(method);
    let mut attrs = vec![KeyValue::new("rpc.system", "grpc"), KeyValue::new("rpc.grpc.status_code", code as i64)];
    if let Some(s) = service {
        attrs.push(KeyValue::new("rpc.service", s.to_string()));
    }
    if let Some(m) = name {
        attrs.push(KeyValue::new("rpc.method", m.to_string()));
    }
    (if span_name.is_empty() { "grpc".to_string() } else { span_name.to_string() }, attrs)
}

fn push_addr(attrs: &mut Vec<KeyValue>, prefix: &str, addr: Option<std::net::SocketAddr>) {
    if let Some(a) = addr {
        attrs.push(KeyValue::new(format!("{prefix}.address"), a.ip().to_string()));
        attrs.push(KeyValue::new(format!("{prefix}.port"), a.port() as i64));
    }
}

fn code_status(code: i32, is_error: bool) -> Status {
    if !is_error {
        return Status::Unset;
    }
    Status::error(CODE_NAMES.get(code as usize).copied().unwrap_or("UNKNOWN").to_string())
}

impl SpanFactory {
    /// The SERVER span of one RPC, or None when not sampled.
    pub fn grpc_server(&self, e: &GrpcServerEvent) -> Option<SpanData> {
        let (name, mut attrs) = rpc_attributes(&e.method, e.code);
        push_addr(&mut attrs, "server", e.local);
        push_addr(&mut attrs, "client", e.peer);
        let ids = Ids { trace_id: e.trace_id, span_id: e.span_id, parent: e.parent_span_id, flags: e.flags };
        let status = code_status(e.code, server_error(e.code));
        self.span(ids, SpanKind::Server, name, e.start_ns, e.end_ns, attrs, status)
    }

    /// The CLIENT span of one RPC, or None when not sampled. Any non-OK code is an
    /// error for the client.
    pub fn grpc_client(&self, e: &GrpcClientEvent) -> Option<SpanData> {
        let (name, mut attrs) = rpc_attributes(&e.method, e.code);
        push_addr(&mut attrs, "server", e.peer);
        let ids = Ids { trace_id: e.trace_id, span_id: e.span_id, parent: e.parent_span_id, flags: e.flags };
        self.span(ids, SpanKind::Client, name, e.start_ns, e.end_ns, attrs, code_status(e.code, e.code != 0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_and_codes() {
        assert_eq!(split_method("/grpc.health.v1.Health/Check"), (Some("grpc.health.v1.Health"), Some("Check")));
        assert_eq!(split_method("weird"), (None, Some("weird")));
        assert!(server_error(14) && !server_error(5) && !server_error(0));
        assert_eq!(code_status(14, true), Status::error("UNAVAILABLE"));
        let (name, attrs) = rpc_attributes("/grpc.health.v1.Health/Watch", 0);
        assert_eq!(name, "grpc.health.v1.Health/Watch");
        assert!(attrs.iter().any(|kv| kv.key.as_str() == "rpc.method" && kv.value.as_str() == "Watch"));
    }
}
