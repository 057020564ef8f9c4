//! Go's itab table read from the binary: for every (interface, concrete type) pair the
//! linker emitted an itab for, its address and both type names.
//!
//! Probes compare an interface value's itab pointer against known itabs (is this
//! `http.ResponseWriter` a `*http.response`? is this `error` a grpc `*status.Error`?)
//! and the decoders name error types by it. The symbol table names itabs
//! (`go:itab.*net.OpError,error`), but stripped binaries have no symbol table, so
//! this reads what the runtime itself reads: `runtime.firstmoduledata.itablinks`, each
//! itab's interface and type descriptors, and their names in the type section. Up to
//! Go 1.26 the itabs are listed by `moduledata.itablinks`; from Go 1.27 they lie one
//! after another in the type section, at `types + itaboffset` for `itabsize` bytes,
//! each as long as its interface has methods. The layouts of those runtime structs
//! come from the resolver like any probe field.

/// The runtime layouts this reader needs, as (struct, field) pairs: the offsets
/// database tracks them along with the probes' fields (`gosight_uprobes::tracked`).
pub const FIELDS: &[(&str, &str)] = &[
    ("runtime.moduledata", "types"),
    ("runtime.moduledata", "etypes"),
    ("runtime.moduledata", "itablinks"),
    ("runtime.moduledata", "itaboffset"),
    ("runtime.moduledata", "itabsize"),
    ("internal/abi.ITab", "Fun"),
    ("internal/abi.InterfaceType", "Methods"),
    ("internal/abi.ITab", "Inter"),
    ("internal/abi.ITab", "Type"),
    ("runtime.itab", "inter"),
    ("runtime.itab", "_type"),
    ("internal/abi.Type", "TFlag"),
    ("internal/abi.Type", "Kind_"),
    ("internal/abi.Type", "Str"),
    ("internal/abi.Type", "PtrToThis"),
    ("internal/abi.PtrType", "Elem"),
    ("internal/abi.StructType", "Fields"),
    ("internal/abi.InterfaceType", "PkgPath"),
    ("internal/abi.UncommonType", "PkgPath"),
];

/// An offset lookup (struct, field) → offset, as the resolver answers it.
pub type Offsets<'a> = &'a dyn Fn(&str, &str) -> Option<u64>;

/// One itab: the pair of types it joins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Itab {
    /// Link-time address of the itab.
    pub address: u64,
    /// The interface, package-path qualified: `net/http.ResponseWriter`, `error`.
    pub interface: String,
    /// The concrete type, package-path qualified where Go records the path
    /// (pointers to named types, named types with methods): `*net/http.response`.
    pub concrete: String,
}

/// Why the itab table could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ItabError {
    #[error("offset of {0} unknown")]
    Layout(&'static str),
    #[error("no runtime.firstmoduledata found")]
    NoModuledata,
    #[error("{0} not readable from the file")]
    Unreadable(&'static str),
}

const KIND_MASK: u8 = 0x1f;
const KIND_COMPLEX128: u8 = 16;
const KIND_POINTER: u8 = 22;
const KIND_SLICE: u8 = 23;
const KIND_STRING: u8 = 24;
const KIND_STRUCT: u8 = 25;
const KIND_UNSAFE_POINTER: u8 = 26;
const TFLAG_UNCOMMON: u8 = 1 << 0;
const TFLAG_EXTRA_STAR: u8 = 1 << 1;
/// More itabs than any real binary has; a corrupt length stops here.
const MAX_ITABS: u64 = 1 << 20;

/// Where the linker put the itabs.
enum ItabList {
    /// `moduledata.itablinks`, a `[]*itab` (Go up to 1.26).
    Links(u64),
    /// `moduledata.itaboffset` and `itabsize`: itabs in a row in the type section
    /// (Go 1.27+); an itab is `fun` + 8 bytes, plus 8 per interface method after
    /// the first.
    Inline { offset: u64, size: u64, fun: u64, methods: u64 },
}

struct Layout {
    types: u64,
    etypes: u64,
    itabs: ItabList,
    itab_inter: u64,
    itab_type: u64,
    tflag: u64,
    kind: u64,
    str: u64,
    ptr_to_this: u64,
    ptr_elem: u64,
    struct_fields: u64,
    iface_pkgpath: u64,
    uncommon_pkgpath: u64,
}

impl Layout {
    fn resolve(offsets: Offsets) -> Result<Layout, ItabError> {
        let need = |s: &'static str, f: &'static str, what: &'static str| offsets(s, f).ok_or(ItabError::Layout(what));
        let either = |a: (&str, &str), b: (&str, &str), what: &'static str| {
            offsets(a.0, a.1).or_else(|| offsets(b.0, b.1)).ok_or(ItabError::Layout(what))
        };
        Ok(Layout {
            types: need("runtime.moduledata", "types", "runtime.moduledata.types")?,
            etypes: need("runtime.moduledata", "etypes", "runtime.moduledata.etypes")?,
            itabs: match offsets("runtime.moduledata", "itablinks") {
                Some(links) => ItabList::Links(links),
                None => ItabList::Inline {
                    offset: need("runtime.moduledata", "itaboffset", "runtime.moduledata.itablinks or itaboffset")?,
                    size: need("runtime.moduledata", "itabsize", "runtime.moduledata.itabsize")?,
                    fun: need("internal/abi.ITab", "Fun", "internal/abi.ITab.Fun")?,
                    methods: need("internal/abi.InterfaceType", "Methods", "internal/abi.InterfaceType.Methods")?,
                },
            },
            itab_inter: either(("internal/abi.ITab", "Inter"), ("runtime.itab", "inter"), "itab interface")?,
            itab_type: either(("internal/abi.ITab", "Type"), ("runtime.itab", "_type"), "itab type")?,
            tflag: need("internal/abi.Type", "TFlag", "internal/abi.Type.TFlag")?,
            kind: need("internal/abi.Type", "Kind_", "internal/abi.Type.Kind_")?,
            str: need("internal/abi.Type", "Str", "internal/abi.Type.Str")?,
            ptr_to_this: need("internal/abi.Type", "PtrToThis", "internal/abi.Type.PtrToThis")?,
            ptr_elem: need("internal/abi.PtrType", "Elem", "internal/abi.PtrType.Elem")?,
            struct_fields: need("internal/abi.StructType", "Fields", "internal/abi.StructType.Fields")?,
            iface_pkgpath: need("internal/abi.InterfaceType", "PkgPath", "internal/abi.InterfaceType.PkgPath")?,
            uncommon_pkgpath: need("internal/abi.UncommonType", "PkgPath", "internal/abi.UncommonType.PkgPath")?,
        })
    }
}

/// Reads every itab of a 64-bit binary.
pub fn read(bin: &crate::GoBinary, offsets: Offsets) -> Result<Vec<Itab>, ItabError> {
    let l = Layout::resolve(offsets)?;
    let md = bin.moduledata_address().ok_or(ItabError::NoModuledata)?;
    let image = bin.image();
    // Addresses come from the file: one that overflows is not in it.
    let word = |addr: Option<u64>| {
        addr.and_then(|a| image.bytes_at(a, 8)).map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
    };
    let types = word(md.checked_add(l.types)).ok_or(ItabError::Unreadable("moduledata.types"))?;
    let etypes = word(md.checked_add(l.etypes)).ok_or(ItabError::Unreadable("moduledata.etypes"))?;
    let names = Names { image: &image, types, etypes, l: &l };
    let mut out = Vec::new();
    let mut add = |itab: u64| -> Option<u64> {
        let inter = word(itab.checked_add(l.itab_inter))?;
        let concrete = word(itab.checked_add(l.itab_type))?;
        if let (Some(interface), Some(concrete)) = (names.interface(inter), names.concrete(concrete)) {
            out.push(Itab { address: itab, interface, concrete });
        }
        Some(inter)
    };
    match l.itabs {
        ItabList::Links(field) => {
            let links_at = md.checked_add(field);
            let links = word(links_at).ok_or(ItabError::Unreadable("moduledata.itablinks"))?;
            let count = word(links_at.and_then(|a| a.checked_add(8)))
                .ok_or(ItabError::Unreadable("moduledata.itablinks"))?
                .min(MAX_ITABS);
            for i in 0..count {
                let Some(itab) = word(links.checked_add(8 * i)) else { break };
                add(itab);
            }
        }
        ItabList::Inline { offset, size, fun, methods } => {
            let start = word(md.checked_add(offset))
                .and_then(|o| types.checked_add(o))
                .ok_or(ItabError::Unreadable("moduledata.itaboffset"))?;
            let size = word(md.checked_add(size)).ok_or(ItabError::Unreadable("moduledata.itabsize"))?;
            let end = start.checked_add(size).ok_or(ItabError::Unreadable("moduledata.itabsize"))?;
            let mut at = start;
            for _ in 0..MAX_ITABS {
                if at >= end {
                    break;
                }
                let Some(inter) = add(at) else { break };
                // Fun[0] == 0 marks an itab for a type that does not implement the
                // interface: no method slots beyond the first.
                let first_fun = word(at.checked_add(fun)).unwrap_or(0);
                let count_at = methods.checked_add(8).and_then(|m| inter.checked_add(m));
                let n = if first_fun == 0 { 1 } else { word(count_at).unwrap_or(1).max(1) };
                let next = n.checked_mul(8).and_then(|m| m.checked_add(fun)).and_then(|len| at.checked_add(len));
                let Some(next) = next else { break };
                at = next;
            }
        }
    }
    Ok(out)
}

/// Type names out of the type section.
struct Names<'a> {
    image: &'a crate::FileImage<'a>,
    types: u64,
    etypes: u64,
    l: &'a Layout,
}

impl Names<'_> {
    fn byte(&self, addr: u64) -> Option<u8> {
        self.image.bytes_at(addr, 1).map(|b| b[0])
    }

    fn u32(&self, addr: u64) -> Option<u32> {
        self.image.bytes_at(addr, 4).map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
    }

    /// A `runtime.name`: a flags byte, a uvarint length, the bytes.
    fn name_at(&self, addr: u64) -> Option<String> {
        let mut len: u64 = 0;
        let mut at = addr.checked_add(1)?;
        for shift in (0..35).step_by(7) {
            let b = self.byte(at)?;
            at = at.checked_add(1)?;
            len |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                let bytes = self.image.bytes_at(at, usize::try_from(len).ok()?)?;
                return String::from_utf8(bytes.to_vec()).ok();
            }
        }
        None
    }

    /// A name referenced by offset from the start of the type section.
    fn name_off(&self, off: u32) -> Option<String> {
        let addr = self.types.checked_add(u64::from(off))?;
        if off == 0 || addr >= self.etypes {
            return None;
        }
        self.name_at(addr)
    }

    /// The type's string as reflect prints it (`*http.response`).
    fn short(&self, t: u64) -> Option<String> {
        let s = self.name_off(self.u32(t.checked_add(self.l.str)?)?)?;
        let extra_star = self.byte(t.checked_add(self.l.tflag)?)? & TFLAG_EXTRA_STAR != 0;
        Some(if extra_star { s.strip_prefix('*').unwrap_or(&s).to_string() } else { s })
    }

    /// `pkg.T` with `pkg` replaced by its import path (`http.ResponseWriter` →
    /// `net/http.ResponseWriter`).
    fn qualify(short: &str, path: &str) -> String {
        let (stars, rest) = short.split_at(short.len() - short.trim_start_matches('*').len());
        match rest.split_once('.') {
            Some((_, name)) if !path.is_empty() => format!("{stars}{path}.{name}"),
            _ => short.to_string(),
        }
    }

    fn interface(&self, t: u64) -> Option<String> {
        let short = self.short(t)?;
        let path_ptr = self
            .image
            .bytes_at(t.checked_add(self.l.iface_pkgpath)?, 8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8")))?;
        let path = if path_ptr == 0 { String::new() } else { self.name_at(path_ptr).unwrap_or_default() };
        Some(Self::qualify(&short, &path))
    }

    fn concrete(&self, t: u64) -> Option<String> {
        let short = self.short(t)?;
        let tflag = self.byte(t.checked_add(self.l.tflag)?)?;
        let kind = self.byte(t.checked_add(self.l.kind)?)? & KIND_MASK;
        if tflag & TFLAG_UNCOMMON == 0 {
            return Some(short);
        }
        // The uncommon data (with the package path; a pointer's is its element's)
        // follows the kind's descriptor. Function, interface, map, array and channel
        // types keep the short name.
        let descriptor_end = match kind {
            1..=KIND_COMPLEX128 | KIND_STRING | KIND_UNSAFE_POINTER => self.l.ptr_to_this.checked_add(4),
            KIND_POINTER | KIND_SLICE => self.l.ptr_elem.checked_add(8),
            KIND_STRUCT => self.l.struct_fields.checked_add(24),
            _ => return Some(short),
        };
        let uncommon_pkgpath = descriptor_end.and_then(|end| t.checked_add(end)?.checked_add(self.l.uncommon_pkgpath));
        match uncommon_pkgpath.and_then(|at| self.u32(at)).and_then(|o| self.name_off(o)) {
            Some(path) => Some(Self::qualify(&short, &path)),
            None => Some(short),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dwarf::struct_fields;
    use crate::testutil::{build_fixture, Build};
    use crate::GoBinary;

    /// On Go 1.22, 1.24, 1.26 and 1.27 (itabs inline in the type section), PIE and not, the table read through the runtime's own
    /// structures names every itab the symbol table names, at the same address, and a
    /// stripped build reads the same pairs.
    #[test]
    fn itab_table_matches_the_symbol_table_and_survives_stripping() {
        for toolchain in [Some("go1.22.12"), Some("go1.24.13"), None, Some("go1.27.4")] {
            for pie in [false, true] {
                let base = |ld: Option<&str>| {
                    let mut b = Build::new("httpprog");
                    if let Some(t) = toolchain {
                        b = b.toolchain(t);
                    }
                    if pie {
                        b = b.buildmode("pie");
                    }
                    if let Some(ld) = ld {
                        b = b.ldflags(ld);
                    }
                    b
                };
                let Some(full) = build_fixture(&base(None)) else { return };
                let stripped = build_fixture(&base(Some("-s -w"))).unwrap();
                let full = GoBinary::open(&full.path).unwrap();
                let wanted: Vec<&str> = FIELDS.iter().map(|&(s, _)| s).collect();
                let dwarf = struct_fields(&full, &wanted).unwrap();
                let offsets = |s: &str, f: &str| dwarf.offset(s, f);
                let table = read(&full, &offsets).unwrap();
                let symbols = full.symbols_with_prefix("go:itab.");
                // Go 1.27 names no itab symbols (they are part of the type section);
                // the pairs every net/http program has must still be there.
                assert!(
                    symbols.len() > 20 || toolchain == Some("go1.27.4"),
                    "{toolchain:?}: {} itab symbols",
                    symbols.len()
                );
                assert!(table.len() > 100, "{toolchain:?}: {} itabs", table.len());
                for (concrete, interface) in [
                    ("*net.OpError", "error"),
                    ("*context.valueCtx", "context.Context"),
                    ("*net.TCPAddr", "net.Addr"),
                    ("*errors.errorString", "error"),
                ] {
                    assert!(
                        table.iter().any(|i| i.concrete == concrete && i.interface == interface),
                        "{toolchain:?}: no {concrete},{interface}"
                    );
                }
                // Anonymous and generic types print differently in symbols; named ones
                // are what probes and error.type need.
                for (name, addr) in symbols.iter().filter(|(n, _)| !n.contains(['{', '[', ' '])) {
                    let (concrete, interface) = name["go:itab.".len()..].rsplit_once(',').unwrap();
                    // Function-local types carry a `.N` suffix in symbol names only.
                    let local = |n: &str| match n.rsplit_once('.') {
                        Some((head, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => head.to_string(),
                        _ => n.to_string(),
                    };
                    let (concrete, interface) = (local(concrete), local(interface));
                    let (concrete, interface) = (concrete.as_str(), interface.as_str());
                    let found = table.iter().find(|i| i.address == *addr);
                    let what = format!("{toolchain:?} pie={pie} {name}");
                    let found = found.unwrap_or_else(|| panic!("{what}: not in the table"));
                    assert_eq!(found.interface, interface, "{what}");
                    // Function types (http.HandlerFunc) keep the short name by design.
                    let short = |n: &str| n.rsplit('/').next().unwrap_or(n).to_string();
                    let func_type = concrete.ends_with("HandlerFunc") || concrete.ends_with("Func");
                    if func_type {
                        assert_eq!(found.concrete, short(concrete), "{what}");
                    } else {
                        assert_eq!(found.concrete, concrete, "{what}");
                    }
                }
                assert!(table
                    .iter()
                    .any(|i| i.concrete == "*net/http.response" && i.interface == "net/http.ResponseWriter"));
                let stripped = GoBinary::open(&stripped.path).unwrap();
                assert!(!stripped.has_symtab());
                // Stripping changes the build settings recorded in the binary, so data
                // moves: compare the pairs, not the addresses.
                let pairs = |t: Vec<Itab>| {
                    let mut p: Vec<(String, String)> = t.into_iter().map(|i| (i.interface, i.concrete)).collect();
                    p.sort();
                    p
                };
                let (want, got) = (pairs(table), pairs(read(&stripped, &offsets).unwrap()));
                assert!(
                    want == got,
                    "{toolchain:?} pie={pie}: stripped table differs ({} vs {} itabs)",
                    want.len(),
                    got.len()
                );
            }
        }
    }

    /// [`FIELDS`] (what the offsets database tracks for this reader) is exactly what
    /// the reader asks for: Go 1.26's layout (`itablinks`, `internal/abi.ITab`), then
    /// Go 1.27's (itabs inline) with Go 1.22's `runtime.itab`.
    #[test]
    fn fields_are_what_the_reader_asks_for() {
        let asked = std::cell::RefCell::new(std::collections::BTreeSet::new());
        for go126 in [true, false] {
            let offsets = |s: &str, f: &str| {
                asked.borrow_mut().insert((s.to_string(), f.to_string()));
                let newer = f == "itablinks" || (s == "internal/abi.ITab" && f != "Fun");
                (go126 || !newer).then_some(0)
            };
            Layout::resolve(&offsets).expect("every field known");
        }
        let listed = FIELDS.iter().map(|&(s, f)| (s.to_string(), f.to_string())).collect();
        assert_eq!(asked.into_inner(), listed);
    }

    #[test]
    fn unknown_layouts_are_errors() {
        let Some(built) = build_fixture(&Build::new("httpprog")) else { return };
        let bin = GoBinary::open(&built.path).unwrap();
        let err = read(&bin, &|_, _| None).unwrap_err();
        assert_eq!(err.to_string(), "offset of runtime.moduledata.types unknown");
    }
}
