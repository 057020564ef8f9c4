//! Released versions, listed through the Go module proxy protocol
//! (`$GOPROXY/<module>/@v/list`, one version per line, in no particular order).
//!
//! Go releases are listed as versions of the module `golang.org/toolchain`
//! (`v0.0.1-go1.22.0.linux-amd64`): the very modules `GOTOOLCHAIN=go1.22.0` downloads.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use gosight_offsets_db::{Key, STD};

const TOOLCHAIN: &str = "golang.org/toolchain";
const DEFAULT_PROXY: &str = "https://proxy.golang.org";

/// The first `http(s)://` entry of a `GOPROXY` value (entries are separated by `,`
/// or `|`; `direct` and `off` are not proxies), without a trailing slash.
pub fn proxy_url(goproxy: &str) -> Option<String> {
    goproxy
        .split([',', '|'])
        .map(str::trim)
        .find(|e| e.starts_with("https://") || e.starts_with("http://"))
        .map(|e| e.trim_end_matches('/').to_string())
}

/// The proxy to ask: `$GOPROXY` from the environment, else what `go env GOPROXY`
/// says (its go.env default), else proxy.golang.org.
pub fn choose_proxy(from_go_env: Option<&str>) -> String {
    let env = std::env::var("GOPROXY").ok().filter(|v| !v.trim().is_empty());
    env.as_deref().or(from_go_env).and_then(proxy_url).unwrap_or_else(|| DEFAULT_PROXY.to_string())
}

/// A module proxy client.
pub struct Proxy {
    base: String,
    http: reqwest::blocking::Client,
}

impl Proxy {
    pub fn new(base: String) -> Result<Proxy> {
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(60))
            .user_agent(concat!("gosight-offsets-tracker/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("HTTP client")?;
        Ok(Proxy { base, http })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// The raw `@v/list` of `module`. Retried a few times on transport errors
    /// and 5xx.
    fn list(&self, module: &str) -> Result<String> {
        let url = format!("{}/{}/@v/list", self.base, escape_path(module));
        let mut last = None;
        for attempt in 0..4 {
            if attempt > 0 {
                std::thread::sleep(Duration::from_secs(2 << attempt));
            }
            match self.http.get(&url).send() {
                Ok(resp) if resp.status().is_success() => return resp.text().with_context(|| format!("GET {url}")),
                Ok(resp) if resp.status().is_server_error() => last = Some(format!("HTTP {}", resp.status())),
                Ok(resp) => bail!("GET {url}: HTTP {}", resp.status()),
                Err(e) => last = Some(e.to_string()),
            }
        }
        bail!("GET {url}: {}", last.unwrap_or_default())
    }

    /// Whether `$GOPROXY/<module>/@v/<version>.info` exists (the proxy answers 404,
    /// 410 or 403 for a version it does not serve).
    fn has_version(&self, module: &str, version: &str) -> Result<bool> {
        let url = format!("{}/{}/@v/{version}.info", self.base, escape_path(module));
        let mut last = None;
        for attempt in 0..3 {
            if attempt > 0 {
                std::thread::sleep(Duration::from_secs(2 << attempt));
            }
            match self.http.get(&url).send() {
                Ok(resp) if resp.status().is_success() => return Ok(true),
                Ok(resp) if [403, 404, 410].contains(&resp.status().as_u16()) => return Ok(false),
                Ok(resp) => last = Some(format!("HTTP {}", resp.status())),
                Err(e) => last = Some(e.to_string()),
            }
        }
        bail!("GET {url}: {}", last.unwrap_or_default())
    }

    /// The releases of [`gaps`] in `candidates` that the proxy serves although its
    /// list leaves them out (e.g. go1.24.12, grpc v1.74.0).
    pub fn unlisted_go_releases(&self, candidates: &[String], goos: &str, goarch: &str) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for v in candidates {
            if self.has_version(TOOLCHAIN, &format!("v0.0.1-{v}.{goos}-{goarch}"))? {
                out.push(v.clone());
            }
        }
        Ok(out)
    }

    /// Like [`Proxy::unlisted_go_releases`], for a module's releases.
    pub fn unlisted_module_releases(&self, module: &str, candidates: &[String]) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for v in candidates {
            if self.has_version(module, v)? {
                out.push(v.clone());
            }
        }
        Ok(out)
    }

    /// Go releases (`go1.22.0`, no rc/beta) with a toolchain for `goos`-`goarch`, ascending.
    pub fn go_releases(&self, goos: &str, goarch: &str) -> Result<Vec<String>> {
        Ok(go_releases(&self.list(TOOLCHAIN)?, goos, goarch))
    }

    /// Releases of `module` (no pre-releases such as `-dev`, `-pre`, `-rc.1`), ascending.
    pub fn module_releases(&self, module: &str) -> Result<Vec<String>> {
        Ok(module_releases(module, &self.list(module)?))
    }
}

/// Go releases in a `golang.org/toolchain` list for one platform, ascending.
pub fn go_releases(list: &str, goos: &str, goarch: &str) -> Vec<String> {
    let suffix = format!(".{goos}-{goarch}");
    let mut out: Vec<(Key, String)> = list
        .lines()
        .filter_map(|l| l.trim().strip_prefix("v0.0.1-")?.strip_suffix(suffix.as_str()))
        .filter(|v| v.strip_prefix("go").is_some_and(|n| n.chars().all(|c| c.is_ascii_digit() || c == '.')))
        .filter_map(|v| Some((Key::parse(STD, v)?, v.to_string())))
        .filter(|(k, _)| k.is_release())
        .collect();
    out.sort();
    out.dedup_by(|a, b| a.0 == b.0);
    out.into_iter().map(|(_, v)| v).collect()
}

/// Releases in a module's `@v/list`, ascending.
pub fn module_releases(module: &str, list: &str) -> Vec<String> {
    let mut out: Vec<(Key, String)> = list
        .lines()
        .map(str::trim)
        .filter(|v| !v.contains('+'))
        .filter_map(|v| Some((Key::parse(module, v)?, v.to_string())))
        .filter(|(k, _)| k.is_release())
        .collect();
    out.sort();
    out.dedup_by(|a, b| a.0 == b.0);
    out.into_iter().map(|(_, v)| v).collect()
}

/// `(major, minor, patch)` of a release: `go1.22.3`, `v1.60.1`.
fn numbers(v: &str) -> Option<(u64, u64, u64)> {
    let rest = v.strip_prefix("go").or_else(|| v.strip_prefix('v'))?;
    let mut parts = rest.split('.').map(|n| n.parse::<u64>().ok());
    let out = (parts.next()??, parts.next()??, parts.next()??);
    parts.next().is_none().then_some(out)
}

/// Patch releases missing from a list: for each minor release listed, every patch
/// number below its highest listed one that is not listed (`go1.24.12` between
/// `go1.24.11` and `go1.24.13`), ascending. The module proxy's lists are known to
/// leave out published versions; these are the ones worth asking for one by one.
pub fn gaps(module: &str, listed: &[String]) -> Vec<String> {
    let prefix = if module == STD { "go" } else { "v" };
    let have: BTreeSet<(u64, u64, u64)> = listed.iter().filter_map(|v| numbers(v)).collect();
    let mut newest: BTreeMap<(u64, u64), u64> = BTreeMap::new();
    for (major, minor, patch) in &have {
        let n = newest.entry((*major, *minor)).or_default();
        *n = (*n).max(*patch);
    }
    let mut out = Vec::new();
    for ((major, minor), top) in newest {
        for patch in 0..top {
            if !have.contains(&(major, minor, patch)) {
                out.push(format!("{prefix}{major}.{minor}.{patch}"));
            }
        }
    }
    out
}

/// The versions of `module` in `from..=to` (either end open when `None`). The
/// bounds need not be listed versions themselves.
pub fn window(module: &str, versions: &[String], from: Option<&str>, to: Option<&str>) -> Result<Vec<String>> {
    let bound = |b: Option<&str>| -> Result<Option<Key>> {
        b.map(|v| Key::parse(module, v).with_context(|| format!("{v:?} is not a version of {module}"))).transpose()
    };
    let (from, to) = (bound(from)?, bound(to)?);
    Ok(versions
        .iter()
        .filter(|v| {
            let Some(k) = Key::parse(module, v) else { return false };
            from.as_ref().is_none_or(|f| *f <= k) && to.as_ref().is_none_or(|t| k <= *t)
        })
        .cloned()
        .collect())
}

/// A module path as the proxy protocol spells it: each upper-case letter as `!`
/// and its lower case (`github.com/IBM/sarama` → `github.com/!i!b!m/sarama`).
pub fn escape_path(module: &str) -> String {
    let mut out = String::with_capacity(module.len());
    for c in module.chars() {
        if c.is_ascii_uppercase() {
            out.push('!');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRPC: &str = gosight_uprobes::grpc::MODULE.path;

    #[test]
    fn upper_case_is_escaped() {
        assert_eq!(escape_path("github.com/IBM/sarama"), "github.com/!i!b!m/sarama");
        assert_eq!(escape_path(GRPC), GRPC);
    }

    #[test]
    fn goproxy_first_http_entry() {
        assert_eq!(proxy_url("https://proxy.golang.org,direct").as_deref(), Some("https://proxy.golang.org"));
        assert_eq!(proxy_url("direct|http://athens:3000/ ,https://x").as_deref(), Some("http://athens:3000"));
        assert_eq!(proxy_url("off"), None);
        assert_eq!(proxy_url("direct"), None);
    }

    #[test]
    fn toolchain_list_gives_releases_for_one_platform() {
        let list = "v0.0.1-go1.22.1.linux-amd64\nv0.0.1-go1.22rc1.linux-amd64\nv0.0.1-go1.22.0.linux-amd64\n\
                    v0.0.1-go1.22.0.linux-arm64\nv0.0.1-go1.21.0.darwin-amd64\nv0.0.1-go1.23beta1.linux-amd64\n\
                    v0.0.1-go1.22.10.linux-amd64\nv0.0.1-go1.20.linux-amd64\n";
        assert_eq!(go_releases(list, "linux", "amd64"), ["go1.20", "go1.22.0", "go1.22.1", "go1.22.10"]);
        assert_eq!(go_releases(list, "linux", "arm64"), ["go1.22.0"]);
    }

    #[test]
    fn module_list_skips_prereleases() {
        let list = "v1.61.0\nv1.60.1\nv1.79.0-dev\nv1.60.0\nv1.10.0\nv1.62.0-pre\nv1.70.0-rc.1\n";
        assert_eq!(module_releases(GRPC, list), ["v1.10.0", "v1.60.0", "v1.60.1", "v1.61.0"]);
    }

    #[test]
    fn gaps_are_missing_patches_below_the_newest_of_a_minor() {
        let go: Vec<String> = ["go1.20", "go1.24.11", "go1.24.13", "go1.25.0", "go1.25.3"].map(String::from).to_vec();
        assert_eq!(
            gaps(STD, &go),
            [
                "go1.24.0",
                "go1.24.1",
                "go1.24.2",
                "go1.24.3",
                "go1.24.4",
                "go1.24.5",
                "go1.24.6",
                "go1.24.7",
                "go1.24.8",
                "go1.24.9",
                "go1.24.10",
                "go1.24.12",
                "go1.25.1",
                "go1.25.2"
            ]
        );
        let grpc: Vec<String> = ["v1.69.0", "v1.69.2", "v1.69.4", "v1.70.0"].map(String::from).to_vec();
        assert_eq!(gaps(GRPC, &grpc), ["v1.69.1", "v1.69.3"]);
    }

    #[test]
    fn windows_are_inclusive_and_bounds_need_not_exist() {
        let vs: Vec<String> = ["v1.69.0", "v1.69.2", "v1.69.4", "v1.70.0"].map(String::from).to_vec();
        assert_eq!(window(GRPC, &vs, Some("v1.69.3"), Some("v1.69.4")).unwrap(), ["v1.69.4"]);
        assert_eq!(window(GRPC, &vs, Some("v1.69.2"), None).unwrap(), ["v1.69.2", "v1.69.4", "v1.70.0"]);
        assert_eq!(window(GRPC, &vs, None, Some("v1.69.0")).unwrap(), ["v1.69.0"]);
        assert!(window(GRPC, &vs, Some("1.69"), None).is_err());
        let go: Vec<String> = ["go1.22.0", "go1.22.1", "go1.23.0"].map(String::from).to_vec();
        assert_eq!(window(STD, &go, Some("go1.22.1"), Some("go1.22.9")).unwrap(), ["go1.22.1"]);
    }
}
