//! net/http server probe: one SERVER span per request served by
//! `net/http.serverHandler.ServeHTTP` (C program: `server.bpf.c` beside this file;
//! its record: `records.h`).
//!
//! Cost: one uprobe hit per request (the entry) where the target allows it, else
//! two (the entry and the RET taken). One hit: the span ends at the serving
//! goroutine's first socket event once `finishRequest` has begun (tracepoints, see
//! the C file). The rule, per target, logged once: one hit unless
//! - the host is not amd64 (the goroutine is read from thread-local storage),
//! - the binary can serve HTTP/2 — it has a TLS server handshake
//!   (`crypto/tls.(*Conn).serverHandshake`, hence possibly h2 by ALPN) or turns
//!   on unencrypted HTTP/2 (`(*http.Protocols).SetUnencryptedHTTP2`): h2 handlers
//!   never touch the socket, so nothing would end their spans,
//! - the binary can hijack a connection (`(*http.response).Hijack`: websockets,
//!   h2c): a hijacked handler's goroutine exits without a socket event after it,
//! - `response.handlerDone` or `runtime.g.goid` has no known offset (a stripped
//!   binary the offsets database does not cover yet), or the `*response` itab is
//!   unknown,
//! - the kernel lacks the tracepoints (`sock:sock_send_length` is Linux 6.3+).

use opentelemetry::trace::{SpanKind, Status};
use opentelemetry::KeyValue;

use super::normalize_method;
use crate::records::http_server_record;
use crate::span::{read_record, split_host_port, text, Connection, ProbeSpan, TargetInfo};
use crate::{std_field, AddressSpec, FieldSpec, FunctionSpec, KernelEnd, Need, ProbeSpec};

pub const SERVE_HTTP: &str = "net/http.serverHandler.ServeHTTP";

pub static SPEC: ProbeSpec = ProbeSpec {
    name: "net_http_server",
    modules: &[],
    functions: &[FunctionSpec {
        symbol: SERVE_HTTP,
        entry_program: Some("serve_http_entry"),
        return_program: Some("serve_http_return"),
        need: Need::Always,
    }],
    fields: &[FIELDS, crate::go_header::FIELDS],
    addresses: &[AddressSpec {
        global: "response_itab",
        concrete: "*net/http.response",
        interface: "net/http.ResponseWriter",
    }],
    object: crate::bpf_object!("net_http_server"),
    decode,
    kernel_end: Some(&KERNEL_END),
    derive: crate::derive_nothing,
};

static KERNEL_END: KernelEnd = KernelEnd {
    tracepoints: &[
        ("end_on_send", "sock_send_length"),
        ("end_on_recv", "sock_recv_length"),
        ("end_on_state", "inet_sock_set_state"),
    ],
    ruled_out_by: &[
        ("crypto/tls.(*Conn).serverHandshake", "it may serve HTTP/2 over TLS"),
        ("net/http.(*Protocols).SetUnencryptedHTTP2", "it may serve unencrypted HTTP/2"),
        ("net/http.(*response).Hijack", "it may hijack connections"),
    ],
    needs_fields: &["off_response_handler_done", "off_g_goid"],
    needs_addresses: &["response_itab"],
    setting: "one_hit",
    counters: ("one_hit_counts", &["ended", "stale", "not_http1"]),
};

const FIELDS: &[FieldSpec] = &[
    std_field("off_request_method", "net/http.Request", "Method", true),
    std_field("off_request_url", "net/http.Request", "URL", true),
    std_field("off_request_proto", "net/http.Request", "Proto", false),
    std_field("off_request_host", "net/http.Request", "Host", false),
    std_field("off_request_remote_addr", "net/http.Request", "RemoteAddr", false),
    std_field("off_request_tls", "net/http.Request", "TLS", false),
    std_field("off_request_pattern", "net/http.Request", "Pattern", false),
    std_field("off_url_path", "net/url.URL", "Path", true),
    std_field("off_response_status", "net/http.response", "status", false),
    std_field("off_request_header", "net/http.Request", "Header", false),
    std_field("off_request_ctx", "net/http.Request", "ctx", false),
    std_field("off_response_handler_done", "net/http.response", "handlerDone", false),
    std_field("off_g_goid", "runtime.g", "goid", false),
];

/// The SERVER span of one request served.
fn decode(bytes: &[u8], _: &dyn TargetInfo) -> Option<ProbeSpan> {
    let r: http_server_record = read_record(bytes)?;
    let method = text(&r.method, r.method_len).0;
    let pattern = text(&r.pattern, r.pattern_len).0;
    let route = route_of(&pattern);
    let (method, method_original) = normalize_method(&method);
    let name = match (&route, method) {
        (Some(r), "_OTHER") => format!("HTTP {r}"),
        (Some(r), m) => format!("{m} {r}"),
        (None, "_OTHER") => "HTTP".to_string(),
        (None, m) => m.to_string(),
    };
    let mut span = ProbeSpan::from_head(&r.head, SpanKind::Server, name);
    let tls = r.tls != 0;
    let attrs = &mut span.attributes;
    attrs.push(KeyValue::new("http.request.method", method));
    attrs.push(KeyValue::new("url.path", text(&r.path, r.path_len).0));
    attrs.push(KeyValue::new("url.scheme", if tls { "https" } else { "http" }));
    if let Some(orig) = method_original {
        attrs.push(KeyValue::new("http.request.method_original", orig));
    }
    if let Some(r) = &route {
        attrs.push(KeyValue::new("http.route", r.clone()));
    }
    // -1: the writer was not net/http's HTTP/1 response (status unknown); 0: the
    // handler set none, and net/http sends 200.
    let status = u16::try_from(r.status).ok().map(|s| if s == 0 { 200 } else { s });
    if let Some(s) = status {
        attrs.push(KeyValue::new("http.response.status_code", s as i64));
    }
    let host = text(&r.host, r.host_len).0;
    if let Some((host, port)) = split_host_port(&host) {
        attrs.push(KeyValue::new("server.address", host.to_string()));
        attrs.push(KeyValue::new("server.port", port.unwrap_or(if tls { 443 } else { 80 }) as i64));
    }
    let remote = text(&r.remote, r.remote_len).0;
    if let Some((addr, port)) = split_host_port(&remote) {
        attrs.push(KeyValue::new("client.address", addr.to_string()));
        if let Some(p) = port {
            attrs.push(KeyValue::new("client.port", p as i64));
        }
    }
    if let Some(v) = protocol_version(&text(&r.proto, r.proto_len).0) {
        attrs.push(KeyValue::new("network.protocol.version", v));
    }
    if let Some(s) = status.filter(|s| *s >= 500) {
        // The conventions' error.type for a server error is its status code.
        span.attributes.push(KeyValue::new("error.type", s.to_string()));
        span.status = Status::error("");
    }
    if let Ok(a) = remote.parse() {
        span.connection = Connection::Accepted(a);
    }
    Some(span)
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

/// `HTTP/1.1` → `1.1`, `HTTP/2.0` → `2`.
fn protocol_version(proto: &str) -> Option<String> {
    let v = proto.strip_prefix("HTTP/")?;
    Some(match v {
        "2.0" => "2".into(),
        "3.0" => "3".into(),
        other => other.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::span::{record_bytes, set_text, NoTargetInfo};
    use opentelemetry::Value;

    fn record() -> http_server_record {
        let mut r = http_server_record::default();
        r.head.start_ns = 1_000;
        r.head.end_ns = 5_000;
        r.head.sc.trace_id = [1; 16];
        r.head.sc.span_id = [2; 8];
        r.head.sc.flags = 1;
        set_text(&mut r.method, &mut r.method_len, "GET");
        set_text(&mut r.path, &mut r.path_len, "/users/7");
        set_text(&mut r.pattern, &mut r.pattern_len, "GET /users/{id}");
        set_text(&mut r.host, &mut r.host_len, "localhost:8080");
        set_text(&mut r.remote, &mut r.remote_len, "[::1]:5555");
        set_text(&mut r.proto, &mut r.proto_len, "HTTP/1.1");
        r
    }

    fn span(r: &http_server_record) -> ProbeSpan {
        decode(&record_bytes(r), &NoTargetInfo).unwrap()
    }

    #[test]
    fn server_span_follows_semconv() {
        let s = span(&record());
        assert_eq!(s.name, "GET /users/{id}");
        assert_eq!(s.kind, SpanKind::Server);
        assert_eq!(s.attribute("http.route"), Some(&Value::from("/users/{id}")));
        assert_eq!(s.attribute("http.response.status_code"), Some(&Value::I64(200)));
        assert_eq!(s.attribute("server.port"), Some(&Value::I64(8080)));
        assert_eq!(s.attribute("client.address"), Some(&Value::from("::1")));
        assert_eq!(s.attribute("client.port"), Some(&Value::I64(5555)));
        assert_eq!(s.attribute("network.protocol.version"), Some(&Value::from("1.1")));
        assert_eq!(s.status, Status::Unset);
        assert_eq!((s.start_ns, s.end_ns), (1_000, 5_000));
        assert_eq!(s.connection, Connection::Accepted("[::1]:5555".parse().unwrap()));
    }

    #[test]
    fn errors_unknown_methods_no_route_and_unknown_status() {
        let mut r = record();
        r.status = 503;
        r.pattern_len = 0;
        set_text(&mut r.method, &mut r.method_len, "BREW");
        let s = span(&r);
        assert_eq!(s.name, "HTTP");
        assert!(matches!(s.status, Status::Error { .. }));
        assert_eq!(s.attribute("http.request.method"), Some(&Value::from("_OTHER")));
        assert_eq!(s.attribute("http.request.method_original"), Some(&Value::from("BREW")));
        assert_eq!(s.attribute("error.type"), Some(&Value::from("503")));
        r.status = 404;
        assert_eq!(span(&r).attribute("error.type"), None, "4xx is the client's error, not the server's");
        r.status = -1;
        assert_eq!(span(&r).attribute("http.response.status_code"), None);
    }

    #[test]
    fn long_paths_are_cut_and_short_records_refused() {
        let mut r = record();
        r.path_len = 300; // longer than the buffer
        let bytes = record_bytes(&r);
        assert!(decode(&bytes, &NoTargetInfo).is_some());
        assert!(decode(&bytes[..10], &NoTargetInfo).is_none());
    }

    #[test]
    fn one_hit_rule() {
        use std::collections::HashMap;
        let fields: HashMap<&'static str, u64> =
            [("off_response_handler_done", 200), ("off_g_goid", 152)].into_iter().collect();
        let addresses: HashMap<&'static str, u64> = [("response_itab", 0x9a0000)].into_iter().collect();
        let none = |_: &str| false;
        assert_eq!(KERNEL_END.ruled_out(true, &none, &fields, &addresses), None);
        assert!(KERNEL_END.ruled_out(false, &none, &fields, &addresses).unwrap().contains("amd64"));
        let tls = |f: &str| f == "crypto/tls.(*Conn).serverHandshake";
        assert!(KERNEL_END.ruled_out(true, &tls, &fields, &addresses).unwrap().contains("HTTP/2 over TLS"));
        let hijack = |f: &str| f == "net/http.(*response).Hijack";
        assert!(KERNEL_END.ruled_out(true, &hijack, &fields, &addresses).unwrap().contains("hijack"));
        let mut stripped = fields.clone();
        stripped.insert("off_g_goid", crate::OFF_ABSENT);
        assert!(KERNEL_END.ruled_out(true, &none, &stripped, &addresses).unwrap().contains("off_g_goid"));
        stripped.remove("off_g_goid");
        assert!(KERNEL_END.ruled_out(true, &none, &stripped, &addresses).unwrap().contains("off_g_goid"));
        let no_itab: HashMap<&'static str, u64> = [("response_itab", 0)].into_iter().collect();
        assert!(KERNEL_END.ruled_out(true, &none, &fields, &no_itab).unwrap().contains("response_itab"));
        // Every tracepoint program and the counters exist in the object.
        use object::{Object, ObjectSymbol};
        let obj = object::File::parse(SPEC.object).unwrap();
        let names: Vec<&str> = obj.symbols().filter_map(|s| s.name().ok()).collect();
        for name in KERNEL_END.tracepoints.iter().map(|(p, _)| *p).chain([KERNEL_END.counters.0, KERNEL_END.setting]) {
            assert!(names.contains(&name), "{name} not in the object");
        }
    }

    #[test]
    fn routes() {
        assert_eq!(route_of("GET example.com/a/{b}"), Some("/a/{b}".into()));
        assert_eq!(route_of("/static/"), Some("/static/".into()));
        assert_eq!(route_of(""), None);
        assert_eq!(protocol_version("HTTP/2.0"), Some("2".into()));
    }
}
