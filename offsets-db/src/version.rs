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
        if module == STD {
            go_version(split_go_version(version).0.split_whitespace().next()?)
        } else {
            let version = version.split_whitespace().next()?;
            let v = semver::Version::parse(version.strip_prefix('v')?).ok()?;
            Some(Key(v))
        }
    }

    pub fn is_release(&self) -> bool {
        self.0.pre.is_empty()
    }
}

/// Splits a Go version as build info records it into the release and its
/// GOEXPERIMENT tokens. Go writes the experiments that differ from the toolchain's
/// defaults after `X:`, comma separated, a disabled default with a `no` prefix:
/// `go1.26.8-X:jsonv2,nogreenteagc` from Go 1.26 on (a `-` when the version has none,
/// go.dev/issue/75953), `go1.25.14 X:jsonv2` before (and still after a version that
/// has a `-`, such as `devel go1.27-abcdef ...`).
///
/// ```
/// use gosight_offsets_db::version::split_go_version;
/// assert_eq!(split_go_version("go1.26.8-X:jsonv2,nogreenteagc"), ("go1.26.8", vec!["jsonv2", "nogreenteagc"]));
/// assert_eq!(split_go_version("go1.24.3 X:boringcrypto"), ("go1.24.3", vec!["boringcrypto"]));
/// assert_eq!(split_go_version("go1.22.1"), ("go1.22.1", vec![]));
/// ```
pub fn split_go_version(raw: &str) -> (&str, Vec<&str>) {
    let raw = raw.trim();
    let (release, list) = match raw.find(" X:").or_else(|| raw.find("-X:")) {
        Some(i) => (&raw[..i], raw[i + 3..].split_whitespace().next().unwrap_or("")),
        None => (raw, ""),
    };
    (release.trim_end(), list.split(',').filter(|e| !e.is_empty()).collect())
}

/// Whether `token` looks like a GOEXPERIMENT token (`jsonv2`, `nogreenteagc`).
pub fn is_experiment(token: &str) -> bool {
    !token.is_empty() && token.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
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
        assert_eq!(k(STD, "go1.26.8-X:jsonv2,nogreenteagc"), k(STD, "go1.26.8"));
        assert!(Key::parse(STD, "devel go1.27-abcdef").is_none());
        assert!(Key::parse(STD, "1.22.0").is_none());
    }

    #[test]
    fn experiments_are_split_off_in_both_forms() {
        assert_eq!(split_go_version("go1.26.8-X:jsonv2"), ("go1.26.8", vec!["jsonv2"]));
        assert_eq!(split_go_version("go1.25.9-X:greenteagc,jsonv2"), ("go1.25.9", vec!["greenteagc", "jsonv2"]));
        assert_eq!(split_go_version("go1.24.3 X:noswissmap"), ("go1.24.3", vec!["noswissmap"]));
        assert_eq!(split_go_version("devel go1.27-abcdef X:jsonv2"), ("devel go1.27-abcdef", vec!["jsonv2"]));
        assert_eq!(split_go_version("go1.22.1-1"), ("go1.22.1-1", vec![]));
        assert!(is_experiment("nogreenteagc") && is_experiment("jsonv2"));
        assert!(!is_experiment("") && !is_experiment("json v2") && !is_experiment("X:jsonv2"));
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
