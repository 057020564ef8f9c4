//! net/http (standard library): the server probe (`server.bpf.c`, a SERVER span per
//! request served) and the client probe (`client.bpf.c`, a CLIENT span per request
//! sent, and the `traceparent` it hands to context propagation). Test app:
//! `tests/go-apps/httpserver` (and `tests/go-apps/chain` for client → server).

pub mod client;
pub mod server;
