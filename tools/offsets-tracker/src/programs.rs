//! The Go programs the tracker builds, compiled into the tracker so it runs from
//! anywhere: the standard library's (`tools/offsets-tracker/programs/std`) and each
//! third-party module's, which its [`GoModule`] carries.

use std::path::Path;

use anyhow::{Context, Result};
use gosight_uprobes::GoModule;

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

impl Program {
    /// A third-party module's program (`GoModule::program`, kept in the probe's
    /// folder of `uprobes/`); built against each release of the module.
    pub fn of(module: &GoModule) -> Program {
        Program { name: module.short, files: module.program }
    }

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
        for m in gosight_uprobes::modules() {
            assert_ne!(STD.fingerprint(), Program::of(m).fingerprint(), "{}", m.path);
        }
        assert_eq!(STD.fingerprint(), STD.fingerprint());
        assert_eq!(STD.fingerprint().len(), 12);
    }
}
