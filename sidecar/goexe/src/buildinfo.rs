//! Go build info: the toolchain version and module list the Go linker embeds in every
//! executable (what `go version -m` prints).
//!
//! The blob lives in the `.go.buildinfo` section, or — when section headers are gone —
//! somewhere in the writable data segment, 16-byte aligned, behind the 14-byte magic
//! `"\xff Go buildinf:"`. Only the Go >= 1.18 layout (version and module strings inline,
//! uvarint length-prefixed) is supported.

use std::fmt;
use std::path::Path;

use object::{Object, ObjectSection, ObjectSegment};

use crate::InspectError;

/// The 14-byte magic at the start of the build info blob.
const MAGIC: &[u8; 14] = b"\xff Go buildinf:";
/// The blob is aligned to this many bytes.
const ALIGN: usize = 16;
/// Size of the fixed header that precedes the inline strings.
const HEADER_LEN: usize = 32;
/// Header flag: version and modinfo follow the header inline (Go >= 1.18).
const FLAG_VERSION_INLINE: u8 = 0x2;
/// ELF program header flags: writable and readable.
const PF_W: u32 = 0x2;
const PF_R: u32 = 0x4;

/// A Go toolchain version as recorded in build info, e.g. `go1.22.12`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GoVersion {
    /// The version string exactly as embedded (`go1.24.3 X:boringcrypto`).
    pub raw: String,
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
    /// Pre-release tag: `rc1`, `beta2`.
    pub pre: Option<String>,
    /// Built by a development toolchain (`devel go1.27-abcdef123 ...`).
    pub devel: bool,
    /// GOEXPERIMENT list after ` X:` or `-X:` (`boringcrypto`, `jsonv2,nogreenteagc`).
    pub experiments: Option<String>,
}

impl GoVersion {
    /// Parses `go1.22.12`, `go1.22`, `go1.26rc1`, `go1.24.3 X:boringcrypto` and
    /// `devel go1.27-abcdef123 Tue ...`. Returns `None` for anything without a
    /// recognisable `goMAJOR.MINOR`.
    pub fn parse(raw: &str) -> Option<GoVersion> {
        let trimmed = raw.trim();
        let (devel, rest) = match trimmed.strip_prefix("devel") {
            Some(r) => (true, r.trim_start()),
            None => (false, trimmed),
        };
        let mut words = rest.split_whitespace();
        let first = words.next()?;
        // GOEXPERIMENTs follow ` X:` before Go 1.26 and `-X:` from it
        // (`go1.26.8-X:jsonv2,nogreenteagc`).
        let (first, dashed) = match first.split_once("-X:") {
            Some((release, list)) if !devel => (release, Some(list.to_string())),
            _ => (first, None),
        };
        let experiments =
            if devel { None } else { dashed.or_else(|| words.find_map(|w| w.strip_prefix("X:")).map(str::to_string)) };
        let ver = first.strip_prefix("go")?;
        // A devel version carries the commit after '-' (`go1.27-abcdef123`).
        let ver = if devel { ver.split('-').next().unwrap_or(ver) } else { ver };

        let (major, rest) = leading_number(ver)?;
        let rest = rest.strip_prefix('.')?;
        let (minor, rest) = leading_number(rest)?;
        let (patch, rest) = match rest.strip_prefix('.') {
            Some(r) => leading_number(r)?,
            None => (0, rest),
        };
        let pre = if rest.is_empty() {
            None
        } else if rest.starts_with("rc") || rest.starts_with("beta") || rest.starts_with("alpha") {
            Some(rest.to_string())
        } else if rest.starts_with('-') || rest.starts_with('+') {
            // Vendor suffixes such as `go1.22.1-1`: keep them in `raw` only.
            None
        } else {
            return None;
        };
        Some(GoVersion { raw: raw.to_string(), major, minor, patch, pre, devel, experiments })
    }

    /// True when this toolchain is `major.minor` or newer (release candidates and
    /// development builds of `major.minor` count as `major.minor`).
    pub fn at_least(&self, major: u32, minor: u32) -> bool {
        (self.major, self.minor) >= (major, minor)
    }
}

impl fmt::Display for GoVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

/// Splits a leading run of ASCII digits off `s`.
fn leading_number(s: &str) -> Option<(u32, &str)> {
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    if end == 0 {
        return None;
    }
    Some((s[..end].parse().ok()?, &s[end..]))
}

/// A Go module (main module or dependency) as listed in build info.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Module {
    pub path: String,
    pub version: String,
    pub sum: Option<String>,
    /// The module that replaced this one (`=>` line), if any.
    pub replace: Option<Box<Module>>,
}

/// Everything `go version -m` shows about an executable.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BuildInfo {
    pub go_version: GoVersion,
    /// Import path of the main package (`path` line).
    pub main_package: String,
    /// The main module (`mod` line); absent for `go build file.go` outside a module.
    pub main_module: Option<Module>,
    pub deps: Vec<Module>,
    /// `build` settings in order (`-compiler=gc`, `GOARCH=amd64`, `vcs.revision=...`).
    pub settings: Vec<(String, String)>,
}

impl BuildInfo {
    /// The dependency (or main module) with this module path.
    pub fn module(&self, path: &str) -> Option<&Module> {
        self.deps.iter().chain(self.main_module.iter()).find(|m| m.path == path)
    }

    /// The value of a `build` setting such as `GOARCH`.
    pub fn setting(&self, key: &str) -> Option<&str> {
        self.settings.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// Reads build info from a parsed ELF file (`path` is only used in errors).
    /// `Ok(None)` means "no build info": the file is not a Go executable.
    pub fn from_object(file: &object::File<'_>, path: &Path) -> Result<Option<BuildInfo>, InspectError> {
        let Some(blob) = find_blob(file) else {
            return Ok(None);
        };
        match parse_blob(blob) {
            Ok(info) => Ok(Some(info)),
            Err(BlobError::Unsupported(reason)) => Err(InspectError::Unsupported { path: path.to_path_buf(), reason }),
            Err(BlobError::Malformed(msg)) => Err(InspectError::Malformed(format!("{}: {msg}", path.display()))),
        }
    }

    /// Parses the text form of modinfo (sentinels already stripped).
    pub fn parse_modinfo(go_version: GoVersion, modinfo: &str) -> BuildInfo {
        let mut info = BuildInfo { go_version, ..BuildInfo::default() };
        // Which module the next `=>` line replaces.
        enum Last {
            None,
            Main,
            Dep,
        }
        let mut last = Last::None;
        for line in modinfo.lines() {
            let mut cols = line.split('\t');
            let kind = cols.next().unwrap_or("");
            let cols: Vec<&str> = cols.collect();
            let module = || Module {
                path: cols.first().copied().unwrap_or("").to_string(),
                version: cols.get(1).copied().unwrap_or("").to_string(),
                sum: cols.get(2).filter(|s| !s.is_empty()).map(|s| s.to_string()),
                replace: None,
            };
            match kind {
                "path" => info.main_package = cols.first().copied().unwrap_or("").to_string(),
                "mod" => {
                    info.main_module = Some(module());
                    last = Last::Main;
                }
                "dep" => {
                    info.deps.push(module());
                    last = Last::Dep;
                }
                "=>" => {
                    let target = match last {
                        Last::Main => info.main_module.as_mut(),
                        Last::Dep => info.deps.last_mut(),
                        Last::None => None,
                    };
                    if let Some(m) = target {
                        m.replace = Some(Box::new(module()));
                    }
                    last = Last::None;
                }
                "build" => {
                    let kv = line.strip_prefix("build\t").unwrap_or("");
                    let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                    info.settings.push((k.to_string(), v.to_string()));
                }
                _ => {}
            }
        }
        info
    }
}

/// Locates the build info blob: the `.go.buildinfo` section, else a 16-byte aligned
/// magic inside a writable PT_LOAD segment. Returns the bytes from the magic on.
fn find_blob<'data>(file: &object::File<'data>) -> Option<&'data [u8]> {
    if let Some(section) = file.section_by_name(".go.buildinfo") {
        if let Ok(data) = section.data() {
            if data.starts_with(MAGIC) {
                return Some(data);
            }
        }
    }
    for segment in file.segments() {
        let flags = match segment.flags() {
            object::SegmentFlags::Elf { p_flags } => p_flags,
            _ => continue,
        };
        if flags & (PF_W | PF_R) != (PF_W | PF_R) {
            continue;
        }
        let Ok(data) = segment.data() else { continue };
        if let Some(blob) = scan_for_magic(data, segment.address()) {
            return Some(blob);
        }
    }
    None
}

/// Finds the magic at a 16-byte aligned *address* in `data`, which is mapped at
/// `address`; returns the bytes from the magic on.
fn scan_for_magic(data: &[u8], address: u64) -> Option<&[u8]> {
    let skew = (ALIGN - (address % ALIGN as u64) as usize) % ALIGN;
    (skew..data.len()).step_by(ALIGN).find(|&at| data[at..].starts_with(MAGIC)).map(|at| &data[at..])
}

/// Why a build info blob could not be used.
#[derive(Debug, PartialEq, Eq)]
enum BlobError {
    /// Well-formed, but a layout or version this code does not handle.
    Unsupported(String),
    /// Truncated or inconsistent.
    Malformed(String),
}

/// Parses the blob starting at the magic.
fn parse_blob(blob: &[u8]) -> Result<BuildInfo, BlobError> {
    if blob.len() < HEADER_LEN {
        return Err(BlobError::Malformed(format!(
            "Go build info truncated: {} bytes, header needs {HEADER_LEN}",
            blob.len()
        )));
    }
    let flags = blob[15];
    if flags & FLAG_VERSION_INLINE == 0 {
        return Err(BlobError::Unsupported(UNSUPPORTED_OLD.to_string()));
    }
    let truncated = |what: &str| BlobError::Malformed(format!("Go build info: {what} truncated"));
    let rest = &blob[HEADER_LEN..];
    let (version, rest) = read_string(rest).ok_or_else(|| truncated("version string"))?;
    let (modinfo, _) = read_string(rest).ok_or_else(|| truncated("module info"))?;
    let version = String::from_utf8_lossy(version).into_owned();
    let go_version = GoVersion::parse(&version)
        .ok_or_else(|| BlobError::Unsupported(format!("unrecognised Go version {version:?} in build info")))?;
    let modinfo = strip_sentinels(modinfo);
    Ok(BuildInfo::parse_modinfo(go_version, &String::from_utf8_lossy(modinfo)))
}

/// The reason given for binaries whose build info predates Go 1.18.
const UNSUPPORTED_OLD: &str = "Go build info from before Go 1.18";

/// Strips the 16-byte sentinels Go puts around modinfo.
fn strip_sentinels(modinfo: &[u8]) -> &[u8] {
    if modinfo.len() >= 33 && modinfo[modinfo.len() - 17] == b'\n' {
        &modinfo[16..modinfo.len() - 16]
    } else {
        modinfo
    }
}

/// Reads a uvarint length-prefixed string; `None` when truncated or absurd.
fn read_string(data: &[u8]) -> Option<(&[u8], &[u8])> {
    let (len, used) = read_uvarint(data)?;
    let rest = data.get(used..)?;
    let len = usize::try_from(len).ok()?;
    if len > rest.len() {
        return None;
    }
    Some(rest.split_at(len))
}

/// Decodes an unsigned LEB128 varint (Go's `binary.Uvarint`).
fn read_uvarint(data: &[u8]) -> Option<(u64, usize)> {
    let mut value: u64 = 0;
    for (i, &b) in data.iter().enumerate().take(10) {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> GoVersion {
        GoVersion::parse(s).unwrap_or_else(|| panic!("{s:?} should parse"))
    }

    #[test]
    fn parses_release_versions() {
        let g = v("go1.22.12");
        assert_eq!((g.major, g.minor, g.patch), (1, 22, 12));
        assert_eq!((&g.pre, g.devel, &g.experiments), (&None, false, &None));
        assert_eq!(g.to_string(), "go1.22.12");

        let g = v("go1.22");
        assert_eq!((g.major, g.minor, g.patch), (1, 22, 0));
        assert!(g.at_least(1, 22) && !g.at_least(1, 23) && g.at_least(1, 9));
    }

    #[test]
    fn parses_prereleases_and_experiments() {
        let g = v("go1.26rc1");
        assert_eq!((g.major, g.minor, g.patch), (1, 26, 0));
        assert_eq!(g.pre.as_deref(), Some("rc1"));
        assert!(g.at_least(1, 26));

        let g = v("go1.21beta2");
        assert_eq!(g.pre.as_deref(), Some("beta2"));

        let g = v("go1.24.3 X:boringcrypto");
        assert_eq!((g.major, g.minor, g.patch), (1, 24, 3));
        assert_eq!(g.experiments.as_deref(), Some("boringcrypto"));
        assert_eq!(g.to_string(), "go1.24.3 X:boringcrypto");

        let g = v("go1.26.8-X:jsonv2,nogreenteagc");
        assert_eq!((g.major, g.minor, g.patch, g.pre.as_deref()), (1, 26, 8, None));
        assert_eq!(g.experiments.as_deref(), Some("jsonv2,nogreenteagc"));
    }

    #[test]
    fn parses_devel() {
        let g = v("devel go1.27-abcdef123 Tue Jan 6 10:00:00 2026 +0000");
        assert!(g.devel);
        assert_eq!((g.major, g.minor, g.patch), (1, 27, 0));
        assert_eq!(g.pre, None);
        assert!(g.at_least(1, 27) && !g.at_least(2, 0));
    }

    #[test]
    fn rejects_garbage() {
        for s in ["", "go", "go1", "gox.y", "1.22", "devel +abc123 Tue", "go1.22foo"] {
            assert_eq!(GoVersion::parse(s), None, "{s:?}");
        }
    }

    #[test]
    fn parses_modinfo_with_replacements() {
        let text = "path\texample.com/app/cmd/app\n\
                    mod\texample.com/app\t(devel)\t\n\
                    dep\tgolang.org/x/net\tv0.30.0\th1:abc=\n\
                    dep\texample.com/lib\tv1.0.0\t\n\
                    =>\t../lib\t(devel)\t\n\
                    build\t-compiler=gc\n\
                    build\tGOARCH=amd64\n\
                    build\t-ldflags=-X main.v=a=b\n";
        let info = BuildInfo::parse_modinfo(v("go1.23.4"), text);
        assert_eq!(info.main_package, "example.com/app/cmd/app");
        let main = info.main_module.as_ref().unwrap();
        assert_eq!((main.path.as_str(), main.version.as_str()), ("example.com/app", "(devel)"));
        assert_eq!(main.sum, None);
        assert_eq!(info.deps.len(), 2);
        let net = info.module("golang.org/x/net").unwrap();
        assert_eq!(net.sum.as_deref(), Some("h1:abc="));
        let lib = info.module("example.com/lib").unwrap();
        assert_eq!(lib.replace.as_ref().unwrap().path, "../lib");
        assert!(info.module("example.com/app").is_some());
        assert_eq!(info.setting("GOARCH"), Some("amd64"));
        assert_eq!(info.setting("-ldflags"), Some("-X main.v=a=b"));
    }

    fn blob(flags: u8, version: &str, modinfo: &[u8]) -> Vec<u8> {
        let mut b = MAGIC.to_vec();
        b.push(8);
        b.push(flags);
        b.resize(HEADER_LEN, 0);
        b.push(version.len() as u8);
        b.extend_from_slice(version.as_bytes());
        b.push(modinfo.len() as u8);
        b.extend_from_slice(modinfo);
        b
    }

    #[test]
    fn parses_blob_and_strips_sentinels() {
        let mut modinfo = vec![0x30u8; 16];
        modinfo.extend_from_slice(b"path\tx\nmod\tx\t(devel)\t\n");
        modinfo.extend_from_slice(&[0xf9u8; 16]);
        let info = parse_blob(&blob(2, "go1.22.12", &modinfo)).unwrap();
        assert_eq!(info.go_version.minor, 22);
        assert_eq!(info.main_package, "x");
        assert_eq!(info.main_module.unwrap().version, "(devel)");
    }

    #[test]
    fn scans_for_aligned_magic() {
        let mut data = vec![0u8; 96];
        data[20..34].copy_from_slice(MAGIC); // address 0x1014: not aligned
        assert!(scan_for_magic(&data, 0x1000).is_none());
        // Mapped at 0x100c, offset 20 is address 0x1020: aligned.
        assert_eq!(scan_for_magic(&data, 0x100c).map(|b| b.len()), Some(76));
        assert!(scan_for_magic(&MAGIC[..13], 0).is_none()); // truncated magic
        assert!(scan_for_magic(&[], 0).is_none());
    }

    #[test]
    fn rejects_old_and_truncated_blobs() {
        assert_eq!(
            parse_blob(&blob(0, "go1.17", b"")).unwrap_err(),
            BlobError::Unsupported(UNSUPPORTED_OLD.to_string())
        );
        let full = blob(2, "go1.22.12", b"path\tx\n");
        for cut in 0..full.len() - 1 {
            let _ = parse_blob(&full[..cut]); // must not panic
        }
        assert!(matches!(parse_blob(&full[..40]), Err(BlobError::Malformed(_))));
        assert!(read_uvarint(&[0xff; 12]).is_none());
    }
}
