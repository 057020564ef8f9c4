//! google.golang.org/grpc: the server probe (`server.bpf.c`, a SERVER span per RPC)
//! and the client probe (`client.bpf.c`, a CLIENT span per unary RPC, with the
//! `traceparent` metadata context propagation adds). Layouts move across grpc-go
//! releases (`layouts.md`); the offsets-tracker measures them with the program in
//! `tracker/`. Test app: `tests/go-apps/grpc`.

use opentelemetry::trace::Status;
use opentelemetry::KeyValue;

use crate::{AddressSpec, FieldSpec};

pub mod client;
pub mod server;

/// grpc-go, as the offsets-tracker measures it.
pub static MODULE: crate::GoModule = crate::GoModule {
    path: "google.golang.org/grpc",
    short: "grpc",
    oldest: "v1.60.0",
    program: &[("go.mod", include_str!("tracker/go.mod")), ("main.go", include_str!("tracker/main.go"))],
};

/// A field of google.golang.org/grpc (its layout follows the module version).
pub const fn grpc_field(global: &'static str, strukt: &'static str, field: &'static str) -> FieldSpec {
    FieldSpec { global, strukt, field, required: false }
}

/// Fields of `status.h` (reading a status code out of an error or a status).
pub const STATUS_FIELDS: &[FieldSpec] = &[
    grpc_field("off_status_s", "google.golang.org/grpc/internal/status.Status", "s"),
    FieldSpec {
        global: "off_spb_code",
        strukt: "google.golang.org/genproto/googleapis/rpc/status.Status",
        field: "Code",
        required: false,
    },
    grpc_field("off_status_error_s", "google.golang.org/grpc/internal/status.Error", "s"),
];

/// Itabs of `status.h`.
pub const STATUS_ADDRESSES: [AddressSpec; 2] = [
    AddressSpec {
        global: "status_error_itab",
        concrete: "*google.golang.org/grpc/internal/status.Error",
        interface: "error",
    },
    // io.EOF is an *errors.errorString saying "EOF" (the io.EOF variable itself
    // has no name in a stripped binary).
    AddressSpec { global: "errors_string_itab", concrete: "*errors.errorString", interface: "error" },
];

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

/// `/pkg.Service/Method` → (`pkg.Service`, `Method`).
fn split_method(full: &str) -> (Option<&str>, Option<&str>) {
    let m = full.strip_prefix('/').unwrap_or(full);
    match m.rsplit_once('/') {
        Some((svc, method)) => (Some(svc).filter(|s| !s.is_empty()), Some(method).filter(|s| !s.is_empty())),
        None => (None, Some(m).filter(|s| !s.is_empty())),
    }
}

/// Span name and RPC attributes (semantic conventions for gRPC) of one call.
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

/// The span status for `code`, an error or not by the caller's rule.
fn code_status(code: i32, is_error: bool) -> Status {
    if !is_error {
        return Status::Unset;
    }
    Status::error(CODE_NAMES.get(code as usize).copied().unwrap_or("UNKNOWN").to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_and_codes() {
        assert_eq!(split_method("/grpc.health.v1.Health/Check"), (Some("grpc.health.v1.Health"), Some("Check")));
        assert_eq!(split_method("weird"), (None, Some("weird")));
        assert_eq!(code_status(14, true), Status::error("UNAVAILABLE"));
        let (name, attrs) = rpc_attributes("/grpc.health.v1.Health/Watch", 0);
        assert_eq!(name, "grpc.health.v1.Health/Watch");
        assert!(attrs.iter().any(|kv| kv.key.as_str() == "rpc.method" && kv.value.as_str() == "Watch"));
    }
}
