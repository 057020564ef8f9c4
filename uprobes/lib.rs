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

mod loader;
mod ring;

#[path = "net_http_server/mod.rs"]
pub mod net_http_server;

pub use loader::{load, AttachedProbe, ProbeError};
pub use ring::EventReader;

use std::collections::HashMap;
use std::path::PathBuf;

/// Offset value meaning "this field does not exist in the target's version".
pub const OFF_ABSENT: u64 = u64::MAX;

/// A struct field a probe reads, bound to the C global that receives its offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FieldSpec {
    /// Name of the `volatile const u64` in the C program.
    pub global: &'static str,
    /// Module whose version decides the layout: `std` for the standard library.
    pub module: &'static str,
    /// Fully qualified struct name as the Go linker writes it (`net/http.Request`).
    pub strukt: &'static str,
    pub field: &'static str,
    /// A required field that cannot be resolved makes the probe stand down; an
    /// optional one is passed as [`OFF_ABSENT`] and the attribute it feeds is omitted.
    pub required: bool,
}

/// A function a probe attaches to: an entry program and, optionally, a program put
/// on every RET instruction of the function (never a uretprobe).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FunctionSpec {
    /// Symbol name as in the Go symbol table (`net/http.serverHandler.ServeHTTP`).
    pub symbol: &'static str,
    pub entry_program: &'static str,
    pub return_program: Option<&'static str>,
}

/// An address a probe compares against (e.g. an itab), bound to a C global.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressSpec {
    pub global: &'static str,
    pub symbol: &'static str,
}

/// Everything a probe needs from a target, declared statically.
#[derive(Debug)]
pub struct ProbeSpec {
    /// Short name used in logs (`net_http_server`).
    pub name: &'static str,
    pub functions: &'static [FunctionSpec],
    pub fields: &'static [FieldSpec],
    pub addresses: &'static [AddressSpec],
    /// The compiled BPF object.
    pub object: &'static [u8],
    /// Decodes one ring-buffer record into an event.
    pub decode: fn(&[u8]) -> Option<Event>,
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
}

/// A decoded event from any probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    HttpServer(net_http_server::HttpServerEvent),
}

/// Every probe this crate ships.
pub static ALL_PROBES: &[&ProbeSpec] = &[&net_http_server::SPEC];

/// Embeds a compiled BPF object with the 8-byte alignment the ELF parser needs.
#[macro_export]
#[doc(hidden)]
macro_rules! bpf_object {
    ($name:literal) => {{
        #[repr(C, align(8))]
        struct Aligned<B: ?Sized>(B);
        static OBJ: &Aligned<[u8]> =
            &Aligned(*include_bytes!(concat!(env!("OUT_DIR"), "/", $name, ".bpf.o")));
        &OBJ.0
    }};
}
