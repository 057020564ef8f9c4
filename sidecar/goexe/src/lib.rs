/*!
This crate reads a Go executable from its file and answers what gosight needs to
know to instrument it. It owns:

* opening and memory-mapping the file, checking it is a 64-bit little-endian ELF
  for x86-64 or arm64 ([`GoBinary::open`], `symbols.rs`);
* the Go build info: Go version, main module, dependencies, settings
  ([`BuildInfo`], `buildinfo.rs`);
* locating functions by name, through `.symtab` or, in stripped binaries, the Go
  runtime's own function table ([`GoBinary::functions`], `symbols.rs` over
  [`pclntab`]), the file offsets of their RET instructions
  ([`return_offsets`], `returns.rs`) and where their entry probe goes
  ([`entry_probe_offset`], `probe_sites.rs`);
* the itab table, read the way the runtime reads it ([`itabs`]);
* struct field offsets from DWARF ([`dwarf`]) and which module's version decides
  a struct's layout ([`modules`]).

It works on the file alone: no process is touched, nothing is loaded into the
kernel and nothing runs asynchronously. The sidecar (`gosight`) uses it at run
time; `offsets-tracker` uses it to fill the offsets database with exactly what
the sidecar would read from DWARF; the fuzz targets (`fuzz/`) run it on
arbitrary bytes. What to do with the answers (resolving a probe's fields
against the offsets database, attaching uprobes) stays in the sidecar.
*/

mod buildinfo;
pub mod dwarf;
pub mod itabs;
pub mod modules;
pub mod pclntab;
mod probe_sites;
mod returns;
mod symbols;
#[cfg(any(test, feature = "testutil"))]
#[doc(hidden)]
pub mod testutil;

pub use buildinfo::{BuildInfo, GoVersion, Module};
pub use probe_sites::entry_probe_offset;
pub use returns::return_offsets;
pub use symbols::FileImage;

use std::path::PathBuf;

/// Why an executable cannot be instrumented. Each variant renders as one log line.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{0}: not an ELF executable")]
    NotElf(PathBuf),
    #[error("{0}: not a Go binary (no Go build info)")]
    NotGo(PathBuf),
    #[error("{path}: unsupported: {reason}")]
    Unsupported { path: PathBuf, reason: String },
    #[error("function {0} not found in the symbol table")]
    MissingFunction(String),
    #[error("{0}")]
    Malformed(String),
}

/// CPU architecture of the executable (decides register mapping and RET decoding).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    X86_64,
    Aarch64,
}

/// A function of the executable, located by file offset (what uprobes attach to).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Function {
    pub name: String,
    /// Virtual address of the entry.
    pub address: u64,
    pub size: u64,
    /// File offset of the entry instruction.
    pub entry_offset: u64,
    /// File offset where the entry probe goes: the jump after the Go stack check,
    /// which sees the entry state and costs one trap instead of two, else the entry
    /// ([`entry_probe_offset`], `probe_sites.rs`).
    pub entry_probe_offset: u64,
    /// File offsets of every RET instruction inside the function.
    pub return_offsets: Vec<u64>,
}

/// An opened, memory-mapped Go executable.
pub struct GoBinary {
    pub path: PathBuf,
    pub arch: Arch,
    pub build: BuildInfo,
    map: memmap2::Mmap,
}
