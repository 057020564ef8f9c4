//! Ordering of the versions the database is keyed by.
//!
//! The standard library is keyed by Go release (`go1.22.0`, `go1.22rc1`, old-style
//! `go1.21`), every other module by its semantic version (`v1.60.1`, pseudo-versions
//! `v1.61.0-0.20240102030405-abcdef012345`, `+incompatible`). Both map onto
//! [`semver::Version`] so that a pre-release sorts just before its release.

use std::cmp::Ordering;

/// The module name the standard library is stored under.
pub const STD: &str = "std";

/// A version that can be placed on the database's axis.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key(semver::Version);

impl Key {
    /// Parses `version` as a version of `module`. `None` for versions that have no
    /// place on the axis: `(devel)`, `devel go1.27-abcdef`, empty or malformed.
    pub fn parse(module: &str, version: &str) -> Option<Key> {
        let version = version.split_whitespace().next()?;
        if module == STD {
            go_version(version)
        } else {
            let v = semver::Version::parse(version.strip_prefix('v')?).ok()?;
            Some(Key(v))
        }
    }

    pub fn is_release(&self) -> bool {
        self.0.pre.is_empty()
    }
}

fn go_version(v: &str) -> Option<Key> {
    let rest = v.strip_prefix("go")?;
    // Split "1.22rc1" into numbers and a pre-release tag.
    let split = rest.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(rest.len());
    let (nums, pre) = rest.split_at(split);
    let mut parts = nums.split('.').map(|n| n.parse::<u64>());
    let major = parts.next()?.ok()?;
    let minor = parts.next().unwrap_or(Ok(0)).ok()?;
    let patch = parts.next().unwrap_or(Ok(0)).ok()?;
    if parts.next().is_some() {
        return None;
    }
    let mut sv = semver::Version::new(major, minor, patch);
    if !pre.is_empty() {
        sv.pre = semver::Prerelease::new(pre).ok()?;
    }
    Some(Key(sv))
}

/// Orders two version strings of `module`; unparsable versions sort first, by text.
pub fn compare(module: &str, a: &str, b: &str) -> Ordering {
    match (Key::parse(module, a), Key::parse(module, b)) {
        (Some(x), Some(y)) => x.cmp(&y).then_with(|| a.cmp(b)),
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (None, None) => a.cmp(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(m: &str, v: &str) -> Key {
        Key::parse(m, v).unwrap_or_else(|| panic!("{v} unparsed"))
    }

    #[test]
    fn go_versions_order_like_the_go_command() {
        let order = ["go1.21", "go1.21.13", "go1.22rc1", "go1.22rc2", "go1.22.0", "go1.22.1", "go1.22.10", "go1.23.0"];
        for w in order.windows(2) {
            assert!(k(STD, w[0]) < k(STD, w[1]), "{} < {}", w[0], w[1]);
        }
        assert_eq!(k(STD, "go1.26.8 X:nodwarf5"), k(STD, "go1.26.8"));
        assert!(Key::parse(STD, "devel go1.27-abcdef").is_none());
        assert!(Key::parse(STD, "1.22.0").is_none());
    }

    #[test]
    fn module_versions_are_semver_with_pseudo_versions_before_their_release() {
        let m = "google.golang.org/grpc";
        assert!(k(m, "v1.60.1") < k(m, "v1.61.0-0.20240102030405-abcdef012345"));
        assert!(k(m, "v1.61.0-0.20240102030405-abcdef012345") < k(m, "v1.61.0"));
        assert!(k(m, "v1.9.0") < k(m, "v1.10.0"));
        assert!(Key::parse(m, "(devel)").is_none());
        assert!(Key::parse(m, "").is_none());
        assert!(k(m, "v2.0.0+incompatible").is_release());
    }
}
