//! Which module's version decides a struct's layout in one binary.
//!
//! A struct belongs to the module whose path is the longest prefix of its package
//! path (`google.golang.org/grpc/internal/transport.Stream` → `google.golang.org/grpc`);
//! standard-library packages (no dot in the first path element, compiler-made types
//! such as `noalg.map.group[...]`) follow the Go version. Replaced modules use the
//! replacement's version when it has one; a local-directory replacement, the main
//! module (`(devel)`) and a module missing from build info have none, and only the
//! binary's own DWARF can then describe them.

use gosight_offsets_db::version::split_go_version;

use crate::BuildInfo;

/// The module the standard library's layouts are filed under: `std`, as `go list`
/// names it (and the offsets database keys it, `gosight_offsets_db::STD`).
pub const STD: &str = "std";

/// The version a struct's layout follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayoutVersion {
    /// `std` or a module path: the database's key.
    pub module: String,
    /// The version to look up; `None` when there is none to look up.
    pub version: Option<String>,
    /// How to name it in a message: `go1.26.8`, `google.golang.org/grpc v1.59.0`.
    pub display: String,
}

/// The module versions of one binary.
#[derive(Debug, Clone)]
pub struct ModuleVersions {
    /// The Go release, without the GOEXPERIMENT suffix (`go1.26.8`).
    go: String,
    /// The GOEXPERIMENT tokens the binary was built with (`jsonv2`, `nogreenteagc`),
    /// from build info's `go1.26.8-X:jsonv2,nogreenteagc` (`go1.24.3 X:...` before
    /// Go 1.26).
    experiments: Vec<String>,
    /// (module path, version to look up, display), main module included.
    modules: Vec<(String, Option<String>, String)>,
}

impl ModuleVersions {
    pub fn of(build: &BuildInfo) -> ModuleVersions {
        let (go, experiments) = split_go_version(&build.go_version.raw);
        let (go, experiments) = (go.to_string(), experiments.into_iter().map(str::to_string).collect());
        let mut modules = Vec::new();
        for m in build.main_module.iter().chain(&build.deps) {
            let (version, display) = match &m.replace {
                Some(r) if !r.version.is_empty() => (
                    Some(r.version.clone()),
                    format!("{} {} (replaced by {} {})", m.path, m.version, r.path, r.version),
                ),
                Some(r) => (None, format!("{} (replaced by local {}, no version)", m.path, r.path)),
                None => (Some(m.version.clone()), format!("{} {}", m.path, m.version)),
            };
            modules.push((m.path.clone(), version, display));
        }
        ModuleVersions { go, experiments, modules }
    }

    /// The Go release, without GOEXPERIMENTs.
    pub fn go_version(&self) -> &str {
        &self.go
    }

    /// The GOEXPERIMENT tokens the binary was built with.
    pub fn experiments(&self) -> &[String] {
        &self.experiments
    }

    /// The version `strukt`'s layout follows.
    pub fn for_struct(&self, strukt: &str) -> LayoutVersion {
        let pkg = package_of(strukt);
        let owner = self
            .modules
            .iter()
            .filter(|(path, _, _)| pkg == path || pkg.strip_prefix(path.as_str()).is_some_and(|r| r.starts_with('/')))
            .max_by_key(|(path, _, _)| path.len());
        match owner {
            Some((path, version, display)) => {
                LayoutVersion { module: path.clone(), version: version.clone(), display: display.clone() }
            }
            None if !pkg.split('/').next().unwrap_or("").contains('.') => {
                LayoutVersion { module: STD.into(), version: Some(self.go.clone()), display: self.go.clone() }
            }
            None => LayoutVersion {
                module: pkg.to_string(),
                version: None,
                display: format!("{pkg}: module not in build info"),
            },
        }
    }
}

/// The package path of a qualified type name (`net/http.Request` → `net/http`).
pub fn package_of(strukt: &str) -> &str {
    let base = strukt.split('[').next().unwrap_or(strukt);
    let last = base.rfind('/').map_or(0, |i| i + 1);
    match base[last..].find('.') {
        Some(dot) => &strukt[..last + dot],
        None => base,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{GoVersion, Module};

    fn module(path: &str, version: &str, replace: Option<Module>) -> Module {
        Module { path: path.into(), version: version.into(), sum: None, replace: replace.map(Box::new) }
    }

    #[test]
    fn structs_follow_the_longest_owning_module_or_the_go_version() {
        let build = BuildInfo {
            go_version: GoVersion::parse("go1.26.8").unwrap(),
            main_module: Some(module("example.com/app", "(devel)", None)),
            deps: vec![
                module("google.golang.org/grpc", "v1.59.0", None),
                module("google.golang.org/genproto/googleapis/rpc", "v0.0.0-20240102-abc", None),
                module("google.golang.org/genproto", "v0.0.0-20230101-def", None),
                module("golang.org/x/net", "v0.20.0", Some(module("golang.org/x/net", "v0.21.0", None))),
                module("example.com/forked", "v1.0.0", Some(module("../forked", "", None))),
            ],
            ..BuildInfo::default()
        };
        let mv = ModuleVersions::of(&build);
        let v = |s: &str| mv.for_struct(s);
        assert_eq!(v("net/http.Request").module, "std");
        assert_eq!(v("net/http.Request").version.as_deref(), Some("go1.26.8"));
        assert_eq!(v("noalg.map.group[string][]string").module, "std");
        assert_eq!(v("internal/runtime/maps.table").display, "go1.26.8");
        assert_eq!(v("google.golang.org/grpc/internal/transport.Stream").display, "google.golang.org/grpc v1.59.0");
        assert_eq!(v("google.golang.org/grpc.clientStream").module, "google.golang.org/grpc");
        assert_eq!(
            v("google.golang.org/genproto/googleapis/rpc/status.Status").module,
            "google.golang.org/genproto/googleapis/rpc"
        );
        assert_eq!(v("golang.org/x/net/http2.Framer").version.as_deref(), Some("v0.21.0"));
        assert_eq!(v("example.com/forked/pkg.T").version, None);
        assert_eq!(v("example.com/app/internal.T").version.as_deref(), Some("(devel)"));
        assert_eq!(v("example.com/unknown.T").version, None);
        assert_eq!(package_of("google.golang.org/grpc.csAttempt"), "google.golang.org/grpc");
        assert_eq!(package_of("map.group[net/http.x]int"), "map");
        assert!(mv.experiments().is_empty());
    }

    #[test]
    fn the_go_release_is_looked_up_without_its_experiments() {
        for (raw, exps) in [
            ("go1.26.8-X:jsonv2", &["jsonv2"][..]),
            ("go1.26.8-X:jsonv2,nogreenteagc", &["jsonv2", "nogreenteagc"][..]),
            ("go1.26.8 X:boringcrypto", &["boringcrypto"][..]),
        ] {
            let build = BuildInfo { go_version: GoVersion::parse(raw).unwrap(), ..BuildInfo::default() };
            let mv = ModuleVersions::of(&build);
            assert_eq!(mv.go_version(), "go1.26.8", "{raw}");
            assert_eq!(mv.experiments(), exps, "{raw}");
            assert_eq!(mv.for_struct("net/http.Request").version.as_deref(), Some("go1.26.8"));
        }
    }
}
