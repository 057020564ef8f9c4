//! net/http (standard library): the server probe (`server.bpf.c`, a SERVER span per
//! request served) and the client probe (`client.bpf.c`, a CLIENT span per request
//! sent, and the `traceparent` it hands to context propagation). Test app:
//! `tests/go-apps/httpserver` (and `tests/go-apps/chain` for client → server).

pub mod client;
pub mod server;

/// The HTTP methods the semantic conventions name; any other is `_OTHER`.
pub const KNOWN_METHODS: [&str; 9] = ["CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE"];

/// The semantic-convention method and, when it is not a known one, the original.
fn normalize_method(m: &str) -> (&'static str, Option<String>) {
    match KNOWN_METHODS.iter().find(|k| **k == m) {
        Some(k) => (k, None),
        None => ("_OTHER", Some(m.to_string())),
    }
}
