//! net/http client probe: one CLIENT event per `(*http.Transport).roundTrip`, and
//! the hand-off of the request's `traceparent` to the in-kernel inserter
//! (`context_propagation`). C program: `probe.bpf.c` beside this file.
//!
//! Cost: three uprobe hits per request (roundTrip entry and RET, Request.write entry).

use crate::{std_field, Event, FieldSpec, FunctionSpec, ProbeSpec, RawSpanContext};

pub const ROUND_TRIP: &str = "net/http.(*Transport).roundTrip";
pub const REQUEST_WRITE: &str = "net/http.(*Request).write";

pub static SPEC: ProbeSpec = ProbeSpec {
    name: "net_http_client",
    module: None,
    functions: &[
        FunctionSpec {
            symbol: ROUND_TRIP,
            entry_program: Some("round_trip_entry"),
            return_program: Some("round_trip_return"),
            optional: false,
        },
        FunctionSpec {
            symbol: REQUEST_WRITE,
            entry_program: Some("request_write_entry"),
            return_program: None,
            optional: false,
        },
    ],
    fields: &[FIELDS, crate::go_header::FIELDS],
    addresses: &[],
    object: crate::bpf_object!("net_http_client"),
    decode,
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

/// One client request as the probe saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpClientEvent {
    /// CLOCK_MONOTONIC nanoseconds.
    pub start_ns: u64,
    pub end_ns: u64,
    pub goroutine: u64,
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    /// The server span (or the app's own span) this call was made under.
    pub parent_span_id: Option<[u8; 8]>,
    pub flags: u8,
    /// Response status; None when there was no response (transport error).
    pub status: Option<u16>,
    /// Runtime address of the returned error's itab; 0 when the error was nil.
    pub error_itab: u64,
    pub method: String,
    pub scheme: String,
    pub host: String,
    pub path: String,
    pub query: String,
}

/// Mirror of `struct http_client_event` in probe.bpf.c.
#[repr(C)]
#[derive(Clone, Copy)]
struct RawEvent {
    start_ns: u64,
    end_ns: u64,
    goroutine: u64,
    sc: RawSpanContext,
    parent_span_id: [u8; 8],
    status: i64,
    error_tab: u64,
    has_parent: u8,
    _pad: u8,
    method_len: u16,
    scheme_len: u16,
    host_len: u16,
    path_len: u16,
    query_len: u16,
    method: [u8; 16],
    scheme: [u8; 16],
    host: [u8; 128],
    path: [u8; 256],
    query: [u8; 128],
}

const _: () = assert!(std::mem::size_of::<RawEvent>() == 640, "update probe.bpf.c");

fn decode(bytes: &[u8]) -> Option<Event> {
    let raw: RawEvent = crate::read_raw(bytes)?;
    let text = crate::event_text;
    Some(Event::HttpClient(HttpClientEvent {
        start_ns: raw.start_ns,
        end_ns: raw.end_ns,
        goroutine: raw.goroutine,
        trace_id: raw.sc.trace_id,
        span_id: raw.sc.span_id,
        parent_span_id: (raw.has_parent != 0).then_some(raw.parent_span_id),
        flags: raw.sc.flags,
        status: u16::try_from(raw.status).ok(),
        error_itab: raw.error_tab,
        method: text(&raw.method, raw.method_len).0,
        scheme: text(&raw.scheme, raw.scheme_len).0,
        host: text(&raw.host, raw.host_len).0,
        path: text(&raw.path, raw.path_len).0,
        query: text(&raw.query, raw.query_len).0,
    }))
}
