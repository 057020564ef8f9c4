//! The Go programs the tracker builds (`tools/offsets-tracker/programs/`), compiled
//! into the tracker so it runs from anywhere.

use std::path::Path;

use anyhow::{Context, Result};

/// One program's source files.
pub struct Program {
    pub name: &'static str,
    pub files: &'static [(&'static str, &'static str)],
}

/// Uses every tracked standard-library type; built with each Go release.
pub const STD: Program = Program {
    name: "std",
    files: &[("go.mod", include_str!("../programs/std/go.mod")), ("main.go", include_str!("../programs/std/main.go"))],
};

/// A grpc server and client; built against each grpc-go release.
pub const GRPC: Program = Program {
    name: "grpc",
    files: &[
        ("go.mod", include_str!("../../../uprobes/grpc/tracker/go.mod")),
        ("main.go", include_str!("../../../uprobes/grpc/tracker/main.go")),
    ],
};

impl Program {
    /// A short fingerprint of the sources: cached builds of an older program are
    /// not reused.
    pub fn fingerprint(&self) -> String {
        // FNV-1a, 64 bit: stable across Rust releases, unlike DefaultHasher.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for (name, text) in self.files {
            for b in name.bytes().chain([0]).chain(text.bytes()).chain([0]) {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
        }
        format!("{:012x}", h >> 16)
    }

    /// Writes the sources into `dir` (created; existing files overwritten).
    pub fn write_to(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        for (name, text) in self.files {
            let path = dir.join(name);
            std::fs::write(&path, text).with_context(|| format!("write {}", path.display()))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_differ_and_are_stable() {
        assert_ne!(STD.fingerprint(), GRPC.fingerprint());
        assert_eq!(STD.fingerprint(), STD.fingerprint());
        assert_eq!(STD.fingerprint().len(), 12);
    }
}
