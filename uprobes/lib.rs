//! gosight-uprobes: the eBPF side of gosight.
//!
//! One folder per instrumented library, each holding its C program (`probe.bpf.c`,
//! compiled by `build.rs`) beside the Rust module that declares what the program
//! needs (functions, struct fields), loads and attaches it, and decodes its events.
//! Shared C headers live in `include/`.
//!
//! A probe is described by a [`ProbeSpec`]. The sidecar resolves the spec against a
//! target binary (function file offsets, RET sites, field offsets) into
//! [`ProbeInputs`], and [`load`] turns spec + inputs into an [`AttachedProbe`]: the
//! loaded programs with their uprobes attached to one process, and the ring buffer
//! their events arrive on.

pub mod bpffs;
pub mod go_header;
mod loader;
mod ring;

#[path = "context_propagation/mod.rs"]
pub mod context_propagation;
#[path = "grpc_client/mod.rs"]
pub mod grpc_client;
#[path = "grpc_server/mod.rs"]
pub mod grpc_server;
#[path = "net_http_client/mod.rs"]
pub mod net_http_client;
#[path = "net_http_server/mod.rs"]
pub mod net_http_server;
pub mod socket;
pub mod tracked;

pub use loader::{load, AttachedProbe, ProbeError};
pub use ring::EventReader;

/// Maps that several objects share (`include/shared_maps.h`): pinned by name in
/// gosight's bpffs directory when there is one.
pub const SHARED_MAPS: &[&str] = &["spans_by_goroutine", "spans_by_context", "pending_headers", "pending_h2"];

/// The sampler, as every probe object applies it in the kernel
/// (`include/sampling.h`), so that what is propagated and what is exported agree.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sampler {
    AlwaysOn,
    AlwaysOff,
    /// Fraction of root traces sampled, decided from the trace id as the
    /// OpenTelemetry SDK does.
    TraceIdRatio(f64),
}

/// Sampler plus whether a sampled/unsampled parent decides for its children.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampling {
    pub root: Sampler,
    pub parent_based: bool,
}

impl Sampling {
    /// Values of the C globals `sampler_kind`, `sampler_parent_based`,
    /// `sampler_ratio_bound`.
    pub fn globals(&self) -> [(&'static str, u64); 3] {
        let (kind, bound) = match self.root {
            Sampler::AlwaysOn => (0, u64::MAX),
            Sampler::AlwaysOff => (1, 0),
            // Same bound as opentelemetry_sdk's TraceIdRatioBased.
            Sampler::TraceIdRatio(r) => (2, (r.clamp(0.0, 1.0) * (1u64 << 63) as f64) as u64),
        };
        [("sampler_kind", kind), ("sampler_parent_based", self.parent_based as u64), ("sampler_ratio_bound", bound)]
    }
}

impl Default for Sampling {
    fn default() -> Self {
        Sampling { root: Sampler::AlwaysOn, parent_based: true }
    }
}

use std::collections::HashMap;
use std::path::PathBuf;

/// Offset value meaning "this field does not exist in the target's version".
pub const OFF_ABSENT: u64 = u64::MAX;

/// A struct field a probe reads, bound to the C global that receives its offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FieldSpec {
    /// Name of the `volatile const u64` in the C program.
    pub global: &'static str,
    /// Fully qualified struct name as the Go linker writes it (`net/http.Request`).
    /// Its package path also says which module's version decides the layout (the
    /// standard library's for `net/http`, grpc's for `google.golang.org/grpc/...`).
    pub strukt: &'static str,
    /// Field name; `a|b` names alternatives across versions, tried in order.
    pub field: &'static str,
    /// A required field that cannot be resolved makes the probe stand down; an
    /// optional one is passed as [`OFF_ABSENT`] and the attribute it feeds is omitted.
    pub required: bool,
}

/// A standard-library field (its layout is decided by the Go version).
pub const fn std_field(global: &'static str, strukt: &'static str, field: &'static str, required: bool) -> FieldSpec {
    FieldSpec { global, strukt, field, required }
}

/// A function a probe attaches to: an entry program and, optionally, a program put
/// on every RET instruction of the function (never a uretprobe).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FunctionSpec {
    /// Symbol name as in the Go symbol table (`net/http.serverHandler.ServeHTTP`);
    /// `a|b` names alternatives across library versions, tried in order.
    pub symbol: &'static str,
    pub entry_program: Option<&'static str>,
    pub return_program: Option<&'static str>,
    /// A function only an optional feature needs (e.g. propagation): when the
    /// binary lacks it, the probe runs without it.
    pub optional: bool,
}

/// An itab a probe compares interface values against, bound to a C global that
/// receives its runtime address (0 when the binary has no such itab). Types are
/// named with their package path, as the linker names itab symbols.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressSpec {
    pub global: &'static str,
    /// The concrete type, e.g. `*net/http.response`.
    pub concrete: &'static str,
    /// The interface, e.g. `net/http.ResponseWriter`.
    pub interface: &'static str,
}

/// Everything a probe needs from a target, declared statically.
#[derive(Debug)]
pub struct ProbeSpec {
    /// Short name used in logs (`net_http_server`).
    pub name: &'static str,
    pub functions: &'static [FunctionSpec],
    /// Field groups (a probe's own fields, plus shared groups such as the Go map
    /// layout of `go_header`).
    pub fields: &'static [&'static [FieldSpec]],
    pub addresses: &'static [AddressSpec],
    /// The compiled BPF object.
    pub object: &'static [u8],
    /// Decodes one ring-buffer record into an event.
    pub decode: fn(&[u8]) -> Option<Event>,
    /// Settings derived from resolved field offsets (e.g. whether a struct embeds
    /// another by pointer in this version); given a lookup of (struct, field).
    pub derive: fn(OffsetLookup) -> Vec<(&'static str, u64)>,
}

/// Looks up a resolved field offset by (struct, field).
pub type OffsetLookup<'a> = &'a dyn Fn(&str, &str) -> Option<u64>;

/// For probes that derive nothing.
pub fn derive_nothing(_: OffsetLookup) -> Vec<(&'static str, u64)> {
    Vec::new()
}

impl ProbeSpec {
    /// Every field the probe reads, across its groups.
    pub fn all_fields(&self) -> impl Iterator<Item = &'static FieldSpec> {
        self.fields.iter().flat_map(|g| g.iter())
    }
}

/// Mirror of `struct span_ctx` (include/traceparent.h).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RawSpanContext {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub flags: u8,
    pub _pad: [u8; 7],
}

/// Where a function lives in the target's executable file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionSite {
    pub entry_offset: u64,
    pub return_offsets: Vec<u64>,
}

/// A spec resolved against one target.
#[derive(Debug, Clone)]
pub struct ProbeInputs {
    pub pid: u32,
    /// The file the uprobes attach to (usually `/proc/<pid>/exe`).
    pub exe: PathBuf,
    /// Field offsets keyed by [`FieldSpec::global`]; [`OFF_ABSENT`] where absent.
    pub fields: HashMap<&'static str, u64>,
    /// Function sites keyed by [`FunctionSpec::symbol`].
    pub functions: HashMap<&'static str, FunctionSite>,
    /// Runtime addresses keyed by [`AddressSpec::global`] (0 when unknown).
    pub addresses: HashMap<&'static str, u64>,
    /// gosight's bpffs directory, where [`SHARED_MAPS`] are pinned; None = no
    /// cross-object sharing.
    pub pin_dir: Option<PathBuf>,
    pub sampling: Sampling,
    /// Settings for C globals a probe may declare (e.g. `propagate`); ignored by
    /// objects that do not have them.
    pub settings: Vec<(&'static str, u64)>,
}

/// A decoded event from any probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    HttpServer(net_http_server::HttpServerEvent),
    HttpClient(net_http_client::HttpClientEvent),
    GrpcServer(grpc_server::GrpcServerEvent),
    GrpcClient(grpc_client::GrpcClientEvent),
}

/// Every per-target probe this crate ships.
pub static ALL_PROBES: &[&ProbeSpec] =
    &[&net_http_server::SPEC, &net_http_client::SPEC, &grpc_server::SPEC, &grpc_client::SPEC];

/// A TCP endpoint as the probes read it from a Go `*net.TCPAddr`
/// (`include/go_net.h` `struct ip_port`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RawIpPort {
    pub ip: [u8; 16],
    pub ip_len: u8,
    pub _pad: u8,
    pub port: u16,
    pub _pad2: u32,
}

impl RawIpPort {
    /// The address, when the probe could read one.
    pub fn addr(&self) -> Option<std::net::SocketAddr> {
        let ip: std::net::IpAddr = match self.ip_len {
            4 => std::net::Ipv4Addr::new(self.ip[0], self.ip[1], self.ip[2], self.ip[3]).into(),
            16 => {
                let v6 = std::net::Ipv6Addr::from(self.ip);
                v6.to_ipv4_mapped().map(Into::into).unwrap_or(v6.into())
            }
            _ => return None,
        };
        Some(std::net::SocketAddr::new(ip, self.port))
    }
}

/// Fields and addresses of `include/go_net.h` and `include/grpc_status.h`.
pub mod shared_fields {
    use crate::{std_field, AddressSpec, FieldSpec};

    pub const GO_NET: &[FieldSpec] = &[
        std_field("off_tcpaddr_ip", "net.TCPAddr", "IP", false),
        std_field("off_tcpaddr_port", "net.TCPAddr", "Port", false),
    ];
    pub const GRPC_STATUS: &[FieldSpec] = &[
        grpc_field("off_status_s", "google.golang.org/grpc/internal/status.Status", "s"),
        FieldSpec {
            global: "off_spb_code",
            strukt: "google.golang.org/genproto/googleapis/rpc/status.Status",
            field: "Code",
            required: false,
        },
        grpc_field("off_status_error_s", "google.golang.org/grpc/internal/status.Error", "s"),
    ];
    pub const TCP_ADDR_ITAB: AddressSpec =
        AddressSpec { global: "tcp_addr_itab", concrete: "*net.TCPAddr", interface: "net.Addr" };
    pub const GRPC_STATUS_ADDRESSES: [AddressSpec; 2] = [
        AddressSpec {
            global: "status_error_itab",
            concrete: "*google.golang.org/grpc/internal/status.Error",
            interface: "error",
        },
        // io.EOF is an *errors.errorString saying "EOF" (the io.EOF variable itself
        // has no name in a stripped binary).
        AddressSpec { global: "errors_string_itab", concrete: "*errors.errorString", interface: "error" },
    ];

    /// A field of google.golang.org/grpc (its layout follows the module version).
    pub const fn grpc_field(global: &'static str, strukt: &'static str, field: &'static str) -> FieldSpec {
        FieldSpec { global, strukt, field, required: false }
    }
}

/// A ring-buffer record as the C struct it mirrors (`T` must be a `#[repr(C)]`
/// plain-old-data mirror); None when the record is too short.
pub(crate) fn read_raw<T: Copy>(bytes: &[u8]) -> Option<T> {
    if bytes.len() < std::mem::size_of::<T>() {
        return None;
    }
    // SAFETY: length checked; T is a plain-old-data mirror of a C struct, every bit
    // pattern valid; read unaligned.
    Some(unsafe { std::ptr::read_unaligned(bytes.as_ptr() as *const T) })
}

/// A string field of an event: its first `len` bytes (at most the buffer), and
/// whether the original was longer than the buffer (truncated).
pub(crate) fn event_text(buf: &[u8], len: u16) -> (String, bool) {
    let n = (len as usize).min(buf.len());
    (String::from_utf8_lossy(&buf[..n]).into_owned(), len as usize > buf.len())
}

/// Embeds a compiled BPF object with the 8-byte alignment the ELF parser needs.
#[macro_export]
#[doc(hidden)]
macro_rules! bpf_object {
    ($name:literal) => {{
        #[repr(C, align(8))]
        struct Aligned<B: ?Sized>(B);
        static OBJ: &Aligned<[u8]> = &Aligned(*include_bytes!(concat!(env!("OUT_DIR"), "/", $name, ".bpf.o")));
        &OBJ.0
    }};
}
