//! gosight-uprobes: the eBPF side of gosight.
//!
//! One folder per instrumented library (`net_http/`, `grpc/`, `database_sql/`, `go_redis/`), holding everything
//! about it: its BPF programs in C (`<probe>.bpf.c`, compiled by `build.rs`), the
//! records they send (`records.h`, from which build.rs generates the Rust side,
//! [`records`]), and per probe a Rust module that declares what the program needs
//! (functions, struct fields, the Go module whose releases decide their layout)
//! and builds the span a record describes ([`ProbeSpan`]: name, kind,
//! semantic-convention attributes, status, and how its connection is found).
//! Adding a library is a new folder and one line in the `libraries!` list below
//! (which declares it in [`ALL_PROBES`]). The kernel
//! socket probes that serve every library live in `socket/` and
//! `context_propagation/`; shared C headers in `include/`.
//!
//! A probe is described by a [`ProbeSpec`]. The sidecar resolves the spec against a
//! target binary (function file offsets, RET sites, field offsets) into
//! [`ProbeInputs`], and [`load`] turns spec + inputs into an [`AttachedProbe`]: the
//! loaded programs with their uprobes attached to one process, and the ring buffer
//! their events arrive on.

pub mod bpffs;
pub mod go_header;
mod loader;
pub mod ring;
pub mod span;

pub mod context_propagation;
pub mod exec_watch;
pub mod socket;
pub mod tracked;

/// The records the BPF programs and this crate exchange, generated at build time
/// from every `<dir>/records.h` (and `include/span_head.h`): one definition, in C.
#[allow(non_camel_case_types, non_upper_case_globals, non_snake_case, dead_code, clippy::all)]
pub mod records {
    include!(concat!(env!("OUT_DIR"), "/records.rs"));
}

pub use aya::programs::uprobe::UProbeLink;
pub use loader::{detach_concurrently, load, AttachedProbe, ProbeError};
pub use ring::EventReader;
pub use span::{Connection, ProbeSpan, TargetInfo};

/// Maps that several objects share (`include/shared_maps.h`): pinned by name in
/// gosight's bpffs directory when there is one.
pub const SHARED_MAPS: &[&str] =
    &["spans_by_goroutine", "spans_by_context", "pending_headers", "pending_h2", "pending_kafka"];

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
    /// Whether the probe stands down without it.
    pub need: Need,
}

/// How much a probe needs one of its functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// The probe stands down when the binary lacks it.
    Always,
    /// Attached when the binary has it (the linker drops what a program never
    /// calls: an app that never runs `Exec` has no `execDC`).
    IfPresent,
    /// Only context propagation needs it: attached when propagation is on and the
    /// binary has it.
    ForPropagation,
    /// Attached when the binary has it, unless the binary's only implementations of
    /// an interface are the ones named (another function of the probe covers them,
    /// for fewer uprobe hits).
    UnlessOnly(&'static Implementations),
    /// Attached when the binary has it and not the named function, which covers
    /// it (a library's newer API that the old one calls: one hit, not two).
    Unless(&'static str),
    /// Attached when the binary has it and one of the named functions: a
    /// runtime function that only serves a library's probe (every Go binary has
    /// it; only those using the library need it).
    Alongside(&'static [&'static str]),
}

/// Types implementing an interface, named as the linker names itabs.
#[derive(Debug, PartialEq, Eq)]
pub struct Implementations {
    pub interface: &'static str,
    pub concretes: &'static [&'static str],
}

impl Implementations {
    /// Whether the binary's itabs, as (concrete, interface) pairs, implement the
    /// interface at least once and only with these types. (An unreadable itab
    /// table gives no pairs: false.)
    pub fn are_the_only_ones<'a>(&self, itabs: impl IntoIterator<Item = (&'a str, &'a str)>) -> bool {
        let mut any = false;
        for (concrete, _) in itabs.into_iter().filter(|(_, i)| *i == self.interface) {
            if !self.concretes.contains(&concrete) {
                return false;
            }
            any = true;
        }
        any
    }
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

/// A third-party Go module whose releases decide the layout of fields a probe
/// reads, described as data for the offsets-tracker: it lists the module's
/// releases, builds `program` against each one and reads the probe's fields from
/// the program's DWARF. Fields of the standard library need none (their layout
/// follows the Go release).
#[derive(Debug, PartialEq, Eq)]
pub struct GoModule {
    /// Module path (`google.golang.org/grpc`).
    pub path: &'static str,
    /// Short name for the tracker's command line and reports (`grpc`).
    pub short: &'static str,
    /// Oldest release the database covers.
    pub oldest: &'static str,
    /// A Go program (file name, text) that calls the probed functions, so that its
    /// DWARF describes every struct the probe reads. Built against each release
    /// (`go mod edit -require=<path>@<version>` + `go mod tidy`).
    pub program: &'static [(&'static str, &'static str)],
}

/// Everything a probe needs from a target, declared statically.
#[derive(Debug)]
pub struct ProbeSpec {
    /// Short name used in logs (`net_http_server`).
    pub name: &'static str,
    /// The third-party modules whose releases decide the probe's layouts (none:
    /// the standard library only).
    pub modules: &'static [&'static GoModule],
    pub functions: &'static [FunctionSpec],
    /// Field groups (a probe's own fields, plus shared groups such as the Go map
    /// layout of `go_header`).
    pub fields: &'static [&'static [FieldSpec]],
    pub addresses: &'static [AddressSpec],
    /// The compiled BPF object.
    pub object: &'static [u8],
    /// Turns one ring-buffer record into the span it describes (name, kind,
    /// attributes, status, connection), None when the record is malformed.
    pub decode: fn(&[u8], &dyn TargetInfo) -> Option<ProbeSpan>,
    /// A way to end the spans without the RET probes, used per target when
    /// nothing rules it out (None: RET probes always).
    pub kernel_end: Option<&'static KernelEnd>,
    /// Settings derived from resolved field offsets (e.g. whether a struct embeds
    /// another by pointer in this version); given a lookup of (struct, field).
    pub derive: fn(OffsetLookup) -> Vec<(&'static str, u64)>,
}

/// Ending a probe's spans from kernel tracepoints (`tp_btf`) that the serving
/// goroutine causes after the probed function returned, instead of a uprobe on every
/// RET: one uprobe hit per span instead of two. Decided per target by
/// [`KernelEnd::ruled_out`]; the RET probes are the fallback.
#[derive(Debug)]
pub struct KernelEnd {
    /// (program, tracepoint) pairs attached instead of the RET programs.
    pub tracepoints: &'static [(&'static str, &'static str)],
    /// Functions whose presence in the binary rules it out, with the reason a
    /// log line gives.
    pub ruled_out_by: &'static [(&'static str, &'static str)],
    /// Field globals that must be resolved (not [`OFF_ABSENT`]).
    pub needs_fields: &'static [&'static str],
    /// Address globals that must be known (not 0).
    pub needs_addresses: &'static [&'static str],
    /// The C global set to 1 when spans end this way.
    pub setting: &'static str,
    /// A per-CPU `u64` array of the object counting what the tracepoints did, and
    /// the name of each slot (logged on detach).
    pub counters: (&'static str, &'static [&'static str]),
}

impl KernelEnd {
    /// Why this target must keep the RET probes (None: it can end spans in the
    /// kernel). `present` says whether the binary has a function; `fields` and
    /// `addresses` are the resolved inputs.
    pub fn ruled_out(
        &self,
        host_is_amd64: bool,
        present: &dyn Fn(&str) -> bool,
        fields: &HashMap<&'static str, u64>,
        addresses: &HashMap<&'static str, u64>,
    ) -> Option<String> {
        if !host_is_amd64 {
            return Some("the goroutine is read from thread-local storage on amd64 only".into());
        }
        if let Some((f, why)) = self.ruled_out_by.iter().find(|(f, _)| present(f)) {
            return Some(format!("{why} ({f} is in the binary)"));
        }
        if let Some(g) = self.needs_fields.iter().find(|g| fields.get(*g).is_none_or(|v| *v == OFF_ABSENT)) {
            return Some(format!("offset {g} unknown (no DWARF, not in the offsets database)"));
        }
        if let Some(a) = self.needs_addresses.iter().find(|a| addresses.get(*a).is_none_or(|v| *v == 0)) {
            return Some(format!("{a} unknown"));
        }
        None
    }
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

/// Where a function lives in the target's executable file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionSite {
    /// Where the entry program attaches: the function's entry, or an instruction
    /// after it that sees the same entry state (`gosight_goexe::entry_probe_offset`).
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
    /// End spans with the spec's [`KernelEnd`] tracepoints instead of RET probes.
    pub kernel_end: bool,
}

#[cfg(test)]
mod tests {
    use super::Implementations;

    #[test]
    fn only_implementations() {
        let pgx = Implementations { interface: "driver.Conn", concretes: &["*pgx.Conn"] };
        assert!(pgx.are_the_only_ones([("*pgx.Conn", "driver.Conn"), ("*x.T", "error")]));
        assert!(!pgx.are_the_only_ones([("*pgx.Conn", "driver.Conn"), ("*pq.conn", "driver.Conn")]));
        assert!(!pgx.are_the_only_ones([("*x.T", "error")]));
        assert!(!pgx.are_the_only_ones([]));
    }
}

/// Declares each library's folder as a module and each of its probes (a module
/// with a `SPEC`) in [`ALL_PROBES`].
macro_rules! libraries {
    ($($library:ident: $($probe:ident),+;)+) => {
        $(pub mod $library;)+
        /// Every per-target probe this crate ships.
        pub static ALL_PROBES: &[&ProbeSpec] = &[$($(&$library::$probe::SPEC,)+)+];
    };
}

// Registering a library: one line, `<folder>: <its probes>;`.
libraries! {
    net_http: server, client;
    grpc: server, client;
    database_sql: client;
    go_redis: client;
    kafka: consumer;
    kafka_sarama: producer;
    kafka_go: producer;
}

/// Every third-party Go module whose layouts the probes read, once each.
pub fn modules() -> Vec<&'static GoModule> {
    let mut out: Vec<&'static GoModule> = Vec::new();
    for m in ALL_PROBES.iter().flat_map(|p| p.modules.iter().copied()) {
        if !out.iter().any(|o| o.path == m.path) {
            out.push(m);
        }
    }
    out
}

/// Fields and addresses of `include/go_net.h` (reading a `*net.TCPAddr`).
pub mod shared_fields {
    use crate::{std_field, AddressSpec, FieldSpec};

    pub const GO_NET: &[FieldSpec] = &[
        std_field("off_tcpaddr_ip", "net.TCPAddr", "IP", false),
        std_field("off_tcpaddr_port", "net.TCPAddr", "Port", false),
    ];
    pub const TCP_ADDR_ITAB: AddressSpec =
        AddressSpec { global: "tcp_addr_itab", concrete: "*net.TCPAddr", interface: "net.Addr" };
}

/// The directory where build.rs put the test programs (`tests/<dir>/probe.bpf.c`
/// as `test_<dir>.bpf.o`), never embedded in the library: for the end-to-end tests
/// (tests/e2e), on the machine that built this crate.
#[doc(hidden)]
pub const TEST_OBJECTS_DIR: &str = env!("OUT_DIR");

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
