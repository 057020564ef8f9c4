//! google.golang.org/grpc: the server probe (`server.bpf.c`, a SERVER span per RPC)
//! and the client probe (`client.bpf.c`, a CLIENT span per unary RPC, with the
//! `traceparent` metadata context propagation adds). Layouts move across grpc-go
//! releases (`layouts.md`); the offsets-tracker measures them with the program in
//! `tracker/`. Test app: `tests/go-apps/grpc`.

pub mod client;
pub mod server;

/// grpc-go, as the offsets-tracker measures it.
pub static MODULE: crate::GoModule = crate::GoModule {
    path: "google.golang.org/grpc",
    short: "grpc",
    oldest: "v1.60.0",
    program: &[("go.mod", include_str!("tracker/go.mod")), ("main.go", include_str!("tracker/main.go"))],
};
