//! Go's own function table, `runtime.pclntab`: the lookup source for stripped binaries.
//!
//! `-ldflags="-s -w"` drops `.symtab` and DWARF, but the runtime needs this table for
//! stack traces, so it is always present: as `.gopclntab` (`.data.rel.ro.gopclntab` in
//! PIEs) or found by its magic. Layout (Go 1.18+; `runtime/symtab.go` `pcHeader`,
//! `functab`, `runtime/runtime2.go` `_func`, `cmd/link/internal/ld/pcln.go`):
//!
//! - header: magic u32, pad u16, minLC u8, ptrSize u8, then pointer-sized nfunc, nfiles,
//!   textStart and the offsets (from the header) of funcnametab, cutab, filetab, pctab
//!   and functab;
//! - functab: nfunc × (entryoff u32, funcoff u32) sorted by entry, then the end PC's
//!   entryoff; entry offsets are relative to `runtime.text`;
//! - `_func` at functab + funcoff: entryOff u32, nameOff i32, args, deferreturn, pcsp,
//!   pcfile, pcln, npcdata, cuOffset (u32), startLine i32 (Go 1.20+), funcID u8, flag u8.
//!
//! textStart holds the relocated `runtime.text` up to Go 1.25 and 0 since Go 1.26, so
//! the text start comes from the header when non-zero, else from the runtime's
//! `moduledata` (its `text` field, cross-checked against minpc/maxpc), else from the
//! `.text` section (wrong with external linking, where C start-up code comes first).
//!
//! A function's size is the PC span of its pcsp table, i.e. the size the compiler gave
//! the symbol; the distance to the next entry would include alignment padding.

use std::collections::HashMap;

use object::{Object, ObjectSection, ObjectSegment, SegmentFlags};

const MAGIC_GO120: u32 = 0xffff_fff1;
const MAGIC_GO118: u32 = 0xffff_fff0;
/// Go 1.2–1.15 and Go 1.16–1.17: a different layout, not supported.
const MAGIC_OLD: [u32; 2] = [0xffff_fffb, 0xffff_fffa];
/// `abi.FuncFlagAsm`: the function is written in assembly.
const FUNC_FLAG_ASM: u8 = 1 << 2;
const PF_X: u32 = 1;
const PF_W: u32 = 2;

/// Preference among same-named functions, lower first: (assembly, special or wrapper).
type Rank = (bool, bool);

/// Where a function lives in memory, as reported by a lookup source (this table, or
/// the ELF `.symtab` in `symbols.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Located {
    pub address: u64,
    pub size: u64,
}

/// Why the table cannot be used; the caller adds the binary's path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    Unsupported(String),
    Malformed(String),
}

fn malformed(msg: impl Into<String>) -> Fault {
    Fault::Malformed(format!("pclntab: {}", msg.into()))
}

/// Where the text start (the base of every entry offset) was taken from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextStart {
    Header,
    Moduledata,
    TextSection,
}

/// A parsed pclntab header over the table's bytes.
#[derive(Debug, Clone)]
pub struct Pclntab<'data> {
    /// From the header to the end of its section (or segment).
    data: &'data [u8],
    /// Virtual address of the header.
    address: u64,
    /// Go 1.18–1.19 layout (no `startLine` in `_func`).
    go118: bool,
    min_lc: u8,
    ptr_size: usize,
    nfunc: usize,
    /// The header's textStart word, as written in the file.
    pub header_text_start: u64,
    funcnametab: usize,
    pctab: usize,
    functab: usize,
}

impl<'data> Pclntab<'data> {
    /// Parses and bounds-checks the header of the table starting at `data[0]`, which is
    /// mapped at `address`.
    pub fn parse(data: &'data [u8], address: u64) -> Result<Pclntab<'data>, Fault> {
        let magic = u32_at(data, 0)?;
        let go118 = match magic {
            MAGIC_GO120 => false,
            MAGIC_GO118 => true,
            m if MAGIC_OLD.contains(&m) => {
                return Err(Fault::Unsupported(format!(
                    "pclntab format of Go 1.2-1.17 (magic {m:#x}); Go 1.18 or newer is required"
                )))
            }
            m => return Err(malformed(format!("unknown magic {m:#x}"))),
        };
        let [pad1, pad2, min_lc, ptr_size] = u32_at(data, 4)?.to_le_bytes();
        if pad1 != 0 || pad2 != 0 || !matches!(min_lc, 1 | 2 | 4) || !matches!(ptr_size, 4 | 8) {
            return Err(malformed(format!("bad header (pad {pad1},{pad2}, minLC {min_lc}, ptrSize {ptr_size})")));
        }
        let ptr_size = usize::from(ptr_size);
        let word = |i: usize| word_at(data, 8 + i * ptr_size, ptr_size);
        let offset = |i: usize| -> Result<usize, Fault> {
            usize::try_from(word(i)?)
                .ok()
                .filter(|&off| off >= 8 + 8 * ptr_size && off <= data.len())
                .ok_or_else(|| malformed(format!("table offset #{i} out of range")))
        };
        let nfunc = usize::try_from(word(0)?).map_err(|_| malformed("nfunc out of range"))?;
        let table = Pclntab {
            data,
            address,
            go118,
            min_lc,
            ptr_size,
            nfunc,
            header_text_start: word(2)?,
            funcnametab: offset(3)?,
            pctab: offset(6)?,
            functab: offset(7)?,
        };
        let functab_len =
            nfunc.checked_mul(8).and_then(|n| n.checked_add(4)).filter(|&n| n <= data.len() - table.functab);
        if nfunc == 0 || functab_len.is_none() {
            return Err(malformed(format!("{nfunc} functions do not fit the table")));
        }
        Ok(table)
    }

    /// Finds the table in `obj` and the text start its entry offsets are relative to.
    pub fn find(obj: &object::File<'data>) -> Result<(Pclntab<'data>, u64, TextStart), Fault> {
        let table = locate_table(obj)?;
        let (text, source) = table.text_start(obj)?;
        Ok((table, text, source))
    }

    /// Looks `names` up; `text` is the address entry offsets are relative to. A name
    /// defined twice (an assembly function and its ABIInternal wrapper, or a Go function
    /// and its ABI0 wrapper) resolves to the ABIInternal one, which is what `.symtab`
    /// calls by the plain name: not assembly, then not a special or wrapper function.
    /// (Unlike `.symtab`, which calls them `name.abi0`, assembly functions without a
    /// wrapper are found by their plain name.)
    pub fn locate(&self, names: &[&str], text: u64) -> Result<Vec<Option<Located>>, Fault> {
        let mut wanted: HashMap<&[u8], Option<(Rank, Located)>> = names.iter().map(|n| (n.as_bytes(), None)).collect();
        let (id_at, min_len) = if self.go118 { (36, 40) } else { (40, 44) };
        for i in 0..self.nfunc {
            let entry = self.entry_off(i)?;
            let func_off = usize::try_from(u32_at(self.data, self.functab + 8 * i + 4)?)
                .map_err(|_| malformed("func offset out of range"))?;
            let record =
                self.functab.checked_add(func_off).and_then(|start| self.data.get(start..start.checked_add(min_len)?));
            let record = record.ok_or_else(|| malformed(format!("func #{i} out of range")))?;
            if u32_at(record, 0)? != entry {
                return Err(malformed(format!("func #{i} entry does not match functab")));
            }
            let name = self.name(u32_at(record, 4)?)?;
            let Some(best) = wanted.get_mut(name) else {
                continue;
            };
            let gap = self
                .entry_off(i + 1)?
                .checked_sub(entry)
                .ok_or_else(|| malformed(format!("functab unsorted at #{i}")))?;
            let size = match u32_at(record, 16)? {
                0 => 0,
                pcsp => self.pc_span(pcsp)?,
            };
            // Marker symbols (e.g. go:textfipsstart) have no pcsp table.
            let size = if size == 0 { u64::from(gap) } else { size };
            if size > u64::from(gap) {
                return Err(malformed(format!("func #{i} is longer than its slot")));
            }
            let address = text.checked_add(u64::from(entry)).ok_or_else(|| malformed("entry address overflows"))?;
            let rank = (record[id_at + 1] & FUNC_FLAG_ASM != 0, record[id_at] != 0);
            if best.is_none_or(|(r, _)| rank < r) {
                *best = Some((rank, Located { address, size }));
            }
        }
        Ok(names.iter().map(|n| wanted.get(n.as_bytes()).copied().flatten().map(|(_, l)| l)).collect())
    }

    /// Entry offset of function `i`; `i == nfunc` is the end of the last function.
    fn entry_off(&self, i: usize) -> Result<u32, Fault> {
        u32_at(self.data, self.functab + 8 * i)
    }

    /// The NUL-terminated name at `name_off` in the function name table.
    fn name(&self, name_off: u32) -> Result<&'data [u8], Fault> {
        let bad = || malformed(format!("function name offset {name_off:#x} out of range"));
        let start = usize::try_from(name_off).ok().and_then(|o| self.funcnametab.checked_add(o));
        let rest = start.and_then(|s| self.data.get(s..)).ok_or_else(bad)?;
        let len = rest.iter().position(|&b| b == 0).ok_or_else(bad)?;
        Ok(&rest[..len])
    }

    /// Total PC span of the pc-value table at `off` in pctab: (zig-zag value delta,
    /// PC delta × minLC) varint pairs, ended by a zero value delta (see `runtime.step`).
    fn pc_span(&self, off: u32) -> Result<u64, Fault> {
        let mut at = usize::try_from(off)
            .ok()
            .and_then(|o| self.pctab.checked_add(o))
            .ok_or_else(|| malformed("pc table offset out of range"))?;
        let mut pc = 0u64;
        let mut first = true;
        loop {
            let value_delta = uvarint(self.data, &mut at)?;
            if value_delta == 0 && !first {
                return Ok(pc);
            }
            first = false;
            let pc_delta = uvarint(self.data, &mut at)?;
            pc = pc
                .checked_add(u64::from(pc_delta) * u64::from(self.min_lc))
                .ok_or_else(|| malformed("pc table overflows"))?;
        }
    }

    /// The address entry offsets are relative to, and where it came from.
    fn text_start(&self, obj: &object::File<'_>) -> Result<(u64, TextStart), Fault> {
        let first = u64::from(self.entry_off(0)?);
        let end = u64::from(self.entry_off(self.nfunc)?);
        if end <= first {
            return Err(malformed("empty or unsorted functab"));
        }
        let plausible = |text: u64| {
            let in_code = |a: Option<u64>| a.is_some_and(|a| is_code(obj, a));
            text != 0 && in_code(text.checked_add(first)) && in_code(text.checked_add(end - 1))
        };
        if plausible(self.header_text_start) {
            return Ok((self.header_text_start, TextStart::Header));
        }
        if let Some(text) = self.moduledata_text(obj, first, end).filter(|&t| plausible(t)) {
            return Ok((text, TextStart::Moduledata));
        }
        match obj.section_by_name(".text").map(|s| s.address()) {
            Some(text) if plausible(text) => Ok((text, TextStart::TextSection)),
            _ => Err(Fault::Unsupported(
                "cannot tell where the text of the pclntab starts (no usable textStart, \
                 moduledata or .text section)"
                    .into(),
            )),
        }
    }

    /// `runtime.firstmoduledata.text`.
    fn moduledata_text(&self, obj: &object::File<'_>, first: u64, end: u64) -> Option<u64> {
        self.moduledata_with(obj, first, end).map(|(_, text)| text)
    }

    /// Address of `runtime.firstmoduledata` (for the itab and type tables of stripped
    /// binaries).
    pub fn moduledata(&self, obj: &object::File<'_>) -> Option<u64> {
        let first = u64::from(self.entry_off(0).ok()?);
        let end = u64::from(self.entry_off(self.nfunc).ok()?);
        self.moduledata_with(obj, first, end).map(|(address, _)| address)
    }

    /// `runtime.firstmoduledata` and its `text`: found as the pointer-aligned word
    /// pointing at the header followed by the funcnametab slice; its minpc and maxpc
    /// must agree with the functab, as the runtime itself checks (`moduledataverify1`).
    fn moduledata_with(&self, obj: &object::File<'_>, first: u64, end: u64) -> Option<(u64, u64)> {
        let ps = self.ptr_size;
        let names = self.address.checked_add(self.funcnametab as u64)?;
        for (address, data) in segments(obj, PF_W, PF_W) {
            for at in aligned(address, data.len().saturating_sub(24 * ps), ps) {
                let word = |i: usize| word_at(data, at + i * ps, ps).ok();
                if word(0) != Some(self.address) || word(1) != Some(names) {
                    continue;
                }
                let (min_pc, max_pc, text) = (word(20)?, word(21)?, word(22)?);
                if text.checked_add(first) == Some(min_pc) && text.checked_add(end) == Some(max_pc) {
                    return Some((address.checked_add(at as u64)?, text));
                }
            }
        }
        None
    }
}

/// The pclntab of `obj`: its section, or else the first valid header found by magic in
/// the non-executable loaded data.
fn locate_table<'data>(obj: &object::File<'data>) -> Result<Pclntab<'data>, Fault> {
    for name in [".gopclntab", ".data.rel.ro.gopclntab"] {
        if let Some(section) = obj.section_by_name(name) {
            let data = section.data().map_err(|e| malformed(format!("cannot read {name}: {e}")))?;
            return Pclntab::parse(data, section.address());
        }
    }
    let mut old = None;
    for (address, data) in segments(obj, PF_X, 0) {
        for at in aligned(address, data.len(), 8) {
            let magic = u32_at(data, at).unwrap_or(0);
            if magic != MAGIC_GO120 && magic != MAGIC_GO118 && !MAGIC_OLD.contains(&magic) {
                continue;
            }
            // A segment whose address range wraps around holds no table.
            let Some(table_address) = address.checked_add(at as u64) else {
                break;
            };
            match Pclntab::parse(&data[at..], table_address) {
                Ok(table) => return Ok(table),
                Err(fault @ Fault::Unsupported(_)) => old = old.or(Some(fault)),
                Err(Fault::Malformed(_)) => {}
            }
        }
    }
    Err(old.unwrap_or_else(|| malformed("no Go function table (.gopclntab) found")))
}

/// Address and file-backed bytes of each segment whose flags masked by `mask` are `want`.
fn segments<'data, 'file>(
    obj: &'file object::File<'data>,
    mask: u32,
    want: u32,
) -> impl Iterator<Item = (u64, &'data [u8])> + 'file {
    obj.segments().filter_map(move |seg| match seg.flags() {
        SegmentFlags::Elf { p_flags } if p_flags & mask == want => Some((seg.address(), seg.data().ok()?)),
        _ => None,
    })
}

/// Offsets below `len` of the `align`-aligned addresses in data mapped at `address`.
fn aligned(address: u64, len: usize, align: usize) -> impl Iterator<Item = usize> {
    let skew = (align as u64 - address % align as u64) % align as u64;
    (skew as usize..len).step_by(align)
}

/// True when `addr` is in an executable segment.
fn is_code(obj: &object::File<'_>, addr: u64) -> bool {
    obj.segments().any(|seg| {
        matches!(seg.flags(), SegmentFlags::Elf { p_flags } if p_flags & PF_X != 0)
            && addr >= seg.address()
            && addr - seg.address() < seg.size()
    })
}

fn u32_at(data: &[u8], off: usize) -> Result<u32, Fault> {
    word_at(data, off, 4).map(|v| v as u32)
}

/// The little-endian unsigned integer of `width` bytes at `off`.
fn word_at(data: &[u8], off: usize, width: usize) -> Result<u64, Fault> {
    let bytes = off.checked_add(width).and_then(|end| data.get(off..end));
    let bytes = bytes.ok_or_else(|| malformed(format!("truncated at {off:#x}")))?;
    Ok(bytes.iter().rev().fold(0, |v, &b| (v << 8) | u64::from(b)))
}

/// A little-endian base-128 varint of at most 32 bits at `*at`, advancing `*at`.
fn uvarint(data: &[u8], at: &mut usize) -> Result<u32, Fault> {
    let mut value = 0u32;
    for shift in (0..35).step_by(7) {
        let byte = *data.get(*at).ok_or_else(|| malformed("pc table runs past the end"))?;
        *at += 1;
        if shift == 28 && byte > 0x0f {
            break;
        }
        value |= u32::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(malformed("pc table varint overflows"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAMES: [&str; 3] = ["a.f", "a.g", "a.missing"];

    /// A table of three functions, in the Go 1.20+ layout or (`go118`) the 1.18 one:
    /// an assembly `a.f` at 0x10, its ABIInternal wrapper `a.f` at 0x30 (size 0x15 by
    /// its pcsp table, in a 0x20 slot) and `a.g` at 0x50 without pcsp (size: its slot).
    fn table(go118: bool) -> Vec<u8> {
        let (rec, id_at) = if go118 { (40, 36) } else { (44, 40) };
        let magic = if go118 { MAGIC_GO118 } else { MAGIC_GO120 };
        let mut t = magic.to_le_bytes().to_vec();
        t.extend([0, 0, 1, 8]);
        // nfunc, nfiles, textStart, funcnametab, cutab, filetab, pctab, functab.
        for word in [3u64, 0, 0x1000, 72, 80, 80, 80, 88] {
            t.extend(word.to_le_bytes());
        }
        t.extend(b"a.f\0a.g\0");
        // pcsp at pctab+1: value +1 for 0x10 bytes, value +1 for 5 bytes, end.
        t.extend([0, 2, 0x10, 2, 0x05, 0, 0, 0]);
        // (entry, nameOff, funcID, flag); 22 is FuncIDWrapper in Go 1.22.
        let funcs = [(0x10u32, 0u32, 0, FUNC_FLAG_ASM), (0x30, 0, 22, 0), (0x50, 4, 0, 0)];
        for (i, (entry, ..)) in funcs.iter().enumerate() {
            t.extend(entry.to_le_bytes());
            t.extend((28 + (i * rec) as u32).to_le_bytes());
        }
        t.extend(0x60u32.to_le_bytes());
        for (entry, name, id, flag) in funcs {
            let mut r = vec![0u8; rec];
            r[..4].copy_from_slice(&entry.to_le_bytes());
            r[4..8].copy_from_slice(&name.to_le_bytes());
            r[16] = if entry == 0x50 { 0 } else { 1 };
            (r[id_at], r[id_at + 1]) = (id, flag);
            t.extend(r);
        }
        t
    }

    fn lookup(data: &[u8]) -> Result<Vec<Option<Located>>, Fault> {
        Pclntab::parse(data, 0x9000)?.locate(&NAMES, 0x1000)
    }

    #[test]
    fn reads_both_layouts_and_prefers_the_abi_internal_definition() {
        for go118 in [false, true] {
            let at = |address, size| Some(Located { address, size });
            let want = vec![at(0x1030, 0x15), at(0x1050, 0x10), None];
            assert_eq!(lookup(&table(go118)), Ok(want));
        }
    }

    #[test]
    fn malformed_tables_are_errors_not_panics() {
        let good = table(false);
        for cut in 0..good.len() {
            let err = lookup(&good[..cut]).expect_err("truncated table");
            assert!(matches!(err, Fault::Malformed(_)), "cut {cut}: {err:?}");
        }
        // Any single corrupted byte: no panic, whatever the outcome.
        for at in 0..good.len() {
            for byte in [0x00, 0x7f, 0x80, 0xff] {
                let mut bad = good.clone();
                bad[at] = byte;
                let _ = lookup(&bad);
            }
        }
        let cases: [(usize, &[u8], &str); 10] = [
            (8, &u64::MAX.to_le_bytes(), "nfunc"),
            (8, &(1u64 << 40).to_le_bytes(), "nfunc"),
            (64, &1000u64.to_le_bytes(), "functab offset"),
            (88 + 12, &u32::MAX.to_le_bytes(), "funcoff"),
            (88 + 8, &0x40u32.to_le_bytes(), "entry != _func.entryOff"),
            (88 + 28 + 4, &0x10000u32.to_le_bytes(), "nameOff"),
            (82, &[0x80, 0x80, 0x80, 0x80, 0x80, 0], "varint"),
            (84, &[0x7f], "pcsp longer than the slot"),
            (0, &[0x12, 0x34], "magic"),
            (0, &0xffff_fffau32.to_le_bytes(), "Go 1.16 magic"),
        ];
        for (at, bytes, what) in cases {
            let mut t = good.clone();
            t[at..at + bytes.len()].copy_from_slice(bytes);
            match lookup(&t).expect_err(what) {
                Fault::Unsupported(_) if what == "Go 1.16 magic" => {}
                err => assert!(matches!(err, Fault::Malformed(_)), "{what}: {err:?}"),
            }
        }
    }

    /// Stripped PIE and externally linked builds resolve as their unstripped twins do.
    /// With external linking `.text` starts with C start-up code before `runtime.text`,
    /// so from Go 1.26 (textStart 0) only the moduledata gives the right base.
    #[test]
    fn stripped_pie_and_external_linking_match_symtab() {
        use crate::testutil::{build_fixture, Build};
        use crate::GoBinary;
        let Some(pie) = build_fixture(&Build::new("retprog").buildmode("pie")) else {
            return;
        };
        let stripped_pie = Build::new("retprog").buildmode("pie").ldflags("-s -w");
        let mut pairs = vec![(pie.path, build_fixture(&stripped_pie).unwrap().path)];
        let out = std::env::temp_dir().join(format!("gosight-extlink-{}", std::process::id()));
        let src = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/retprog");
        let external = |name: &str, ldflags: &str| {
            let status = std::process::Command::new("go")
                .current_dir(src)
                .env("CGO_ENABLED", "1")
                .args(["build", "-buildvcs=false", "-o"])
                .arg(out.join(name))
                .arg(format!("-ldflags=-linkmode=external {ldflags}"))
                .arg(".")
                .status();
            status.is_ok_and(|s| s.success()).then(|| out.join(name))
        };
        match (external("full", ""), external("stripped", "-s -w")) {
            (Some(full), Some(stripped)) => pairs.push((full, stripped)),
            _ => println!("skipped external linking: no C toolchain"),
        }
        let names = ["main.classify", "main.main", "runtime.main"];
        for (full, stripped) in pairs {
            let want = GoBinary::open(&full).unwrap().functions(&names).unwrap();
            assert!(want.iter().all(Option::is_some), "{want:?}");
            let bin = GoBinary::open(&stripped).unwrap();
            assert_eq!(bin.functions(&names).unwrap(), want, "{stripped:?}");
            let obj = bin.object();
            let (table, text, from) = Pclntab::find(&obj).unwrap();
            let section = obj.section_by_name(".text").map_or(0, |s| s.address());
            let header = table.header_text_start;
            println!("{stripped:?}: {header:#x} => {text:#x} ({from:?}), .text {section:#x}");
            assert_ne!(from, TextStart::TextSection);
        }
        let _ = std::fs::remove_dir_all(out);
    }
}
