//! Stage 2 — inspect a Go executable: ELF, build info, functions and their RET sites.
//!
//! Everything here works on the file alone (no process is touched), so the same code
//! serves the sidecar and `offsets-tracker`.

mod buildinfo;
#[doc(hidden)]
pub mod fuzzing;
pub mod itabs;
mod pclntab;
mod returns;
mod symbols;
#[cfg(test)]
pub(crate) mod testutil;

pub use buildinfo::{BuildInfo, GoVersion, Module};
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
