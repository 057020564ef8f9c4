//! net/http client probe: one CLIENT span per `(*http.Transport).roundTrip`, and
//! the hand-off of the request's `traceparent` to the in-kernel inserter
//! (`context_propagation`). C program: `client.bpf.c` beside this file; its
//! record: `records.h`.
//!
//! Cost: three uprobe hits per request (roundTrip entry and RET, Request.write entry).

use opentelemetry::trace::{SpanKind, Status};
use opentelemetry::KeyValue;

use super::normalize_method;
use crate::records::http_client_record;
use crate::span::{read_record, split_host_port, text, Connection, ProbeSpan, TargetInfo};
use crate::{std_field, FieldSpec, FunctionSpec, Need, ProbeSpec};

pub const ROUND_TRIP: &str = "net/http.(*Transport).roundTrip";
pub const REQUEST_WRITE: &str = "net/http.(*Request).write";

pub static SPEC: ProbeSpec = ProbeSpec {
    name: "net_http_client",
    modules: &[],
    functions: &[
        FunctionSpec {
            symbol: ROUND_TRIP,
            entry_program: Some("round_trip_entry"),
            return_program: Some("round_trip_return"),
            need: Need::Always,
        },
        FunctionSpec {
            symbol: REQUEST_WRITE,
            entry_program: Some("request_write_entry"),
            return_program: None,
            need: Need::Always,
        },
    ],
    fields: &[FIELDS, crate::go_header::FIELDS],
    addresses: &[],
    object: crate::bpf_object!("net_http_client"),
    decode,
    kernel_end: None,
    derive: crate::derive_nothing,
};

const FIELDS: &[FieldSpec] = &[
    std_field("off_request_method", "net/http.Request", "Method", true),
    std_field("off_request_url", "net/http.Request", "URL", true),
    std_field("off_request_header", "net/http.Request", "Header", false),
    std_field("off_request_ctx", "net/http.Request", "ctx", false),
    std_field("off_url_scheme", "net/url.URL", "Scheme", true),
    std_field("off_url_host", "net/url.URL", "Host", true),
    std_field("off_url_path", "net/url.URL", "Path", true),
    std_field("off_url_raw_query", "net/url.URL", "RawQuery", false),
    std_field("off_response_status", "net/http.Response", "StatusCode", true),
];

/// The CLIENT span of one outgoing request.
fn decode(bytes: &[u8], target: &dyn TargetInfo) -> Option<ProbeSpan> {
    let r: http_client_record = read_record(bytes)?;
    let (method, method_original) = normalize_method(&text(&r.method, r.method_len).0);
    let name = if method == "_OTHER" { "HTTP".to_string() } else { method.to_string() };
    let mut span = ProbeSpan::from_head(&r.head, SpanKind::Client, name);
    let (scheme, host) = (text(&r.scheme, r.scheme_len).0, text(&r.host, r.host_len).0);
    let (path, query) = (text(&r.path, r.path_len).0, text(&r.query, r.query_len).0);
    let attrs = &mut span.attributes;
    attrs.push(KeyValue::new("http.request.method", method));
    if let Some(orig) = method_original {
        attrs.push(KeyValue::new("http.request.method_original", orig));
    }
    // url.full never carries credentials: URL.User is a separate field not read.
    let mut full = format!("{scheme}://{host}{}", if path.is_empty() { "/" } else { &path });
    if !query.is_empty() {
        full.push('?');
        full.push_str(&query);
    }
    attrs.push(KeyValue::new("url.full", full));
    let default_port = match scheme.as_str() {
        "https" => Some(443),
        "http" => Some(80),
        _ => None,
    };
    let (host_part, port) = split_host_port(&host).map_or(("", None), |(h, p)| (h, p.or(default_port)));
    if !host_part.is_empty() {
        attrs.push(KeyValue::new("server.address", host_part.to_string()));
        if let Some(p) = port {
            attrs.push(KeyValue::new("server.port", p as i64));
        }
    }
    // -1: no response (a transport error, whose type the error's itab names).
    match (u16::try_from(r.status).ok(), r.error_tab) {
        (Some(code), _) => {
            attrs.push(KeyValue::new("http.response.status_code", code as i64));
            if code >= 400 {
                attrs.push(KeyValue::new("error.type", code.to_string()));
                span.status = Status::error("");
            }
        }
        (None, 0) => {}
        (None, itab) => {
            let t = target.error_type(itab).unwrap_or("_OTHER").to_string();
            attrs.push(KeyValue::new("error.type", t.clone()));
            span.status = Status::error(t);
        }
    }
    if let Some(port) = port {
        span.connection = Connection::DialedDuring { ip: host_part.parse().ok(), port };
    }
    Some(span)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::span::{record_bytes, set_text, NoTargetInfo};
    use opentelemetry::Value;

    struct OpError;
    impl TargetInfo for OpError {
        fn error_type(&self, itab: u64) -> Option<&str> {
            (itab == 0x1234).then_some("*net.OpError")
        }
    }

    fn record() -> http_client_record {
        let mut r = http_client_record { status: -1, error_tab: 0x1234, ..Default::default() };
        r.head.sc.flags = 1;
        r.head.has_parent = 1;
        r.head.parent_span_id = [5; 8];
        set_text(&mut r.method, &mut r.method_len, "GET");
        set_text(&mut r.scheme, &mut r.scheme_len, "http");
        set_text(&mut r.host, &mut r.host_len, "127.0.0.1:1");
        set_text(&mut r.path, &mut r.path_len, "/hop");
        set_text(&mut r.query, &mut r.query_len, "a=b");
        r
    }

    #[test]
    fn client_span_with_parent_and_transport_error() {
        let s = decode(&record_bytes(&record()), &OpError).unwrap();
        assert_eq!(s.name, "GET");
        assert_eq!(s.kind, SpanKind::Client);
        assert_eq!(s.parent_span_id, Some([5; 8]));
        assert_eq!(s.attribute("url.full"), Some(&Value::from("http://127.0.0.1:1/hop?a=b")));
        assert_eq!(s.attribute("server.port"), Some(&Value::I64(1)));
        assert_eq!(s.attribute("error.type"), Some(&Value::from("*net.OpError")));
        assert!(matches!(s.status, Status::Error { .. }));
        assert_eq!(s.connection, Connection::DialedDuring { ip: Some("127.0.0.1".parse().unwrap()), port: 1 });
        let unknown = decode(&record_bytes(&record()), &NoTargetInfo).unwrap();
        assert_eq!(unknown.attribute("error.type"), Some(&Value::from("_OTHER")));
    }

    #[test]
    fn http_errors_and_default_ports() {
        let mut r = http_client_record { status: 404, error_tab: 0, ..record() };
        set_text(&mut r.host, &mut r.host_len, "example.com");
        let s = decode(&record_bytes(&r), &NoTargetInfo).unwrap();
        assert_eq!(s.attribute("error.type"), Some(&Value::from("404")));
        assert_eq!(s.attribute("server.port"), Some(&Value::I64(80)));
        assert_eq!(s.connection, Connection::DialedDuring { ip: None, port: 80 });
        set_text(&mut r.host, &mut r.host_len, "[::1]");
        set_text(&mut r.scheme, &mut r.scheme_len, "https");
        let s = decode(&record_bytes(&r), &NoTargetInfo).unwrap();
        assert_eq!(s.connection, Connection::DialedDuring { ip: Some("::1".parse().unwrap()), port: 443 });
    }
}
