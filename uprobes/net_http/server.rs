//! net/http server probe: one SERVER event per request served by
//! `net/http.serverHandler.ServeHTTP` (C program: `probe.bpf.c` beside this file).
//!
//! Cost: two uprobe hits per request (the entry and the RET taken).

use crate::{std_field, AddressSpec, Event, FieldSpec, FunctionSpec, ProbeSpec};

pub const SERVE_HTTP: &str = "net/http.serverHandler.ServeHTTP";

pub static SPEC: ProbeSpec = ProbeSpec {
    name: "net_http_server",
    module: None,
    functions: &[FunctionSpec {
        symbol: SERVE_HTTP,
        entry_program: Some("serve_http_entry"),
        return_program: Some("serve_http_return"),
        optional: false,
    }],
    fields: &[FIELDS, crate::go_header::FIELDS],
    addresses: &[AddressSpec {
        global: "response_itab",
        concrete: "*net/http.response",
        interface: "net/http.ResponseWriter",
    }],
    object: crate::bpf_object!("net_http_server"),
    decode,
    derive: crate::derive_nothing,
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
];

/// One served request, as read by the probe. Strings are truncated to the C
/// program's capacities; `*_truncated` says when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpServerEvent {
    /// CLOCK_MONOTONIC nanoseconds (bpf_ktime_get_ns).
    pub start_ns: u64,
    pub end_ns: u64,
    /// The goroutine (g pointer) that served the request.
    pub goroutine: u64,
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    /// The caller's span, from an incoming `traceparent` header.
    pub parent_span_id: Option<[u8; 8]>,
    /// W3C trace flags decided in the kernel (bit 0: sampled).
    pub flags: u8,
    /// Status the handler set; 0 = none set (net/http then sends 200); None when the
    /// ResponseWriter was not net/http's HTTP/1 response (e.g. HTTP/2).
    pub status: Option<u16>,
    pub tls: bool,
    pub method: String,
    pub path: String,
    pub path_truncated: bool,
    pub pattern: String,
    pub host: String,
    pub remote_addr: String,
    pub proto: String,
}

const METHOD_CAP: usize = 16;
const PATH_CAP: usize = 256;
const PATTERN_CAP: usize = 128;
const HOST_CAP: usize = 128;
const REMOTE_CAP: usize = 64;
const PROTO_CAP: usize = 16;

/// Mirror of `struct http_server_event` in probe.bpf.c.
#[repr(C)]
#[derive(Clone, Copy)]
struct RawEvent {
    start_ns: u64,
    end_ns: u64,
    goroutine: u64,
    sc: crate::RawSpanContext,
    parent_span_id: [u8; 8],
    status: i64,
    tls: u8,
    has_parent: u8,
    method_len: u16,
    path_len: u16,
    pattern_len: u16,
    host_len: u16,
    remote_len: u16,
    proto_len: u16,
    _pad: u16,
    method: [u8; METHOD_CAP],
    path: [u8; PATH_CAP],
    pattern: [u8; PATTERN_CAP],
    host: [u8; HOST_CAP],
    remote: [u8; REMOTE_CAP],
    proto: [u8; PROTO_CAP],
}

const _: () = assert!(std::mem::size_of::<RawEvent>() == 696, "update probe.bpf.c");

use crate::event_text as text;

fn decode(bytes: &[u8]) -> Option<Event> {
    let raw: RawEvent = crate::read_raw(bytes)?;
    let (path, path_truncated) = text(&raw.path, raw.path_len);
    Some(Event::HttpServer(HttpServerEvent {
        start_ns: raw.start_ns,
        end_ns: raw.end_ns,
        goroutine: raw.goroutine,
        trace_id: raw.sc.trace_id,
        span_id: raw.sc.span_id,
        parent_span_id: (raw.has_parent != 0).then_some(raw.parent_span_id),
        flags: raw.sc.flags,
        status: u16::try_from(raw.status).ok(),
        tls: raw.tls != 0,
        method: text(&raw.method, raw.method_len).0,
        path,
        path_truncated,
        pattern: text(&raw.pattern, raw.pattern_len).0,
        host: text(&raw.host, raw.host_len).0,
        remote_addr: text(&raw.remote, raw.remote_len).0,
        proto: text(&raw.proto, raw.proto_len).0,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_a_record_laid_out_like_the_c_struct() {
        let mut raw: RawEvent = unsafe { std::mem::zeroed() };
        raw.start_ns = 10;
        raw.end_ns = 20;
        raw.status = 404;
        raw.method[..3].copy_from_slice(b"GET");
        raw.method_len = 3;
        raw.path[..6].copy_from_slice(b"/users");
        raw.path_len = 300; // longer than the capacity: truncated
        let bytes = unsafe {
            std::slice::from_raw_parts(&raw as *const RawEvent as *const u8, std::mem::size_of::<RawEvent>())
        };
        let Some(Event::HttpServer(e)) = decode(bytes) else { panic!("no event") };
        assert_eq!((e.start_ns, e.end_ns, e.status), (10, 20, Some(404)));
        assert_eq!(e.method, "GET");
        assert!(e.path_truncated && e.path.starts_with("/users"));
        assert!(decode(&bytes[..10]).is_none());
    }

    #[test]
    fn negative_status_means_unknown() {
        let mut raw: RawEvent = unsafe { std::mem::zeroed() };
        raw.status = -1;
        let bytes = unsafe {
            std::slice::from_raw_parts(&raw as *const RawEvent as *const u8, std::mem::size_of::<RawEvent>())
        };
        let Some(Event::HttpServer(e)) = decode(bytes) else { panic!() };
        assert_eq!(e.status, None);
    }
}
