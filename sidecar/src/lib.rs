//! gosight: zero-code OpenTelemetry tracing for Go services.
//!
//! The sidecar is a pipeline, and its modules are named after its stages:
//!
//! 1. [`discover`] — scan `/proc`, recognise Go processes, select targets, watch for
//!    targets that start, restart or exit.
//! 2. inspect — read a target's executable: ELF, Go build info, function file
//!    offsets and the file offsets of their RET instructions. The crate
//!    [`gosight_goexe`] (`sidecar/goexe/`) does it, from the file alone, for the
//!    sidecar as for `offsets-tracker` and the fuzz targets.
//! 3. [`offsets`] — resolve the struct field offsets the probes read (DWARF first;
//!    further sources slot in behind it).
//! 4. [`attach`] — load each probe from `gosight-uprobes` with its offsets and attach
//!    it to one target process; one session per target. [`sessions`] starts and
//!    stops them off the discovery loop.
//! 5. [`spans`] — turn decoded probe events into OpenTelemetry spans (semantic
//!    conventions, ids, sampling) with wall-clock times from [`clock`].
//! 6. [`export`] — a bounded, counted queue in front of the OTLP / console exporters.
//!
//! [`metrics`] is the one metrics pipeline: RED metrics recorded from every probe
//! span (sampled or not) before stage 5 drops the unsampled ones, and the socket
//! probe's connection metrics ([`connections`]).
//!
//! [`propagation`] sets up what spans several targets: the pinned maps probes share
//! and the in-kernel insertion of `traceparent` into outgoing requests.
//!
//! [`pod`] is what gosight learns about the pod it was injected into: which
//! container a process belongs to, and the pod's cgroup.
//!
//! [`config`] holds the command line and environment settings; `main.rs` wires the
//! stages together and owns the process lifecycle (signals, flush).

pub mod attach;
pub mod clock;
pub mod config;
pub mod connections;
pub mod discover;
pub mod export;
pub mod metrics;
pub mod offsets;
pub mod pod;
pub mod propagation;
pub mod sessions;
pub mod spans;
