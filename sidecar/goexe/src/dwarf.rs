//! Struct field offsets from the DWARF the Go linker embeds (unless built with `-w`).
//!
//! Go names struct types by their fully qualified Go name (`net/http.Request`) and
//! places them as top-level DIEs of a compile unit, each member carrying a constant
//! `DW_AT_data_member_location`. Only the sections needed to read names are loaded
//! (`.debug_info`, `.debug_abbrev` and the string sections), decompressed if needed
//! (`SHF_COMPRESSED` or `.zdebug_*`), and dropped before returning.

use std::borrow::Cow;
use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::path::Path;

use gimli::{
    AttributeValue, DebugAbbrev, DebugAbbrevOffset, DebugInfo, DebugLineStr, DebugStr, DebugStrOffsets,
    DebugStrOffsetsBase, DwarfFileType, EndianSlice, Reader, RunTimeEndian,
};
use object::{Object, ObjectSection};

use crate::{GoBinary, InspectError};

/// Field offsets per struct: struct name (`net/url.URL`) → field name → byte offset.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StructFields(HashMap<String, HashMap<String, u64>>);

impl StructFields {
    /// Byte offset of `field` inside `strukt`, if both were found.
    pub fn offset(&self, strukt: &str, field: &str) -> Option<u64> {
        self.0.get(strukt)?.get(field).copied()
    }

    /// True when the struct was found (so a missing field really is missing).
    pub fn has_struct(&self, strukt: &str) -> bool {
        self.0.contains_key(strukt)
    }

    /// All fields of one struct.
    pub fn fields(&self, strukt: &str) -> Option<&HashMap<String, u64>> {
        self.0.get(strukt)
    }

    /// True when nothing was found (e.g. the binary has no DWARF).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Number of structs found.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Iterates over `(struct name, fields)`.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &HashMap<String, u64>)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }
}

type R<'d> = EndianSlice<'d, RunTimeEndian>;

/// The DWARF sections needed to find struct types and read their names.
struct Sections<'d> {
    info: DebugInfo<R<'d>>,
    abbrev: DebugAbbrev<R<'d>>,
    str: DebugStr<R<'d>>,
    str_offsets: DebugStrOffsets<R<'d>>,
    line_str: DebugLineStr<R<'d>>,
}

/// Reads the fields of the `wanted` structs (all structs when `wanted` is empty) from
/// the binary's DWARF. Stops as soon as every wanted struct has been seen. A binary
/// without DWARF yields an empty [`StructFields`]; structs not in the binary are absent.
pub fn struct_fields(bin: &GoBinary, wanted: &[&str]) -> Result<StructFields, InspectError> {
    struct_fields_of(&bin.object(), &bin.path, wanted)
}

/// [`struct_fields`] for any object file, Go build info or not (`path` names it in
/// errors).
pub fn struct_fields_of(obj: &object::File<'_>, path: &Path, wanted: &[&str]) -> Result<StructFields, InspectError> {
    let malformed = |what: String| InspectError::Malformed(format!("{}: DWARF: {what}", path.display()));
    let Some(info) = load_section(obj, "info").map_err(&malformed)? else {
        return Ok(StructFields::default());
    };
    let load = |name| load_section(obj, name).map(Option::unwrap_or_default).map_err(&malformed);
    let abbrev = load("abbrev")?;
    let str = load("str")?;
    let str_offsets = load("str_offsets")?;
    let line_str = load("line_str")?;
    let endian = if obj.is_little_endian() { RunTimeEndian::Little } else { RunTimeEndian::Big };
    let sections = Sections {
        info: DebugInfo::new(&info, endian),
        abbrev: DebugAbbrev::new(&abbrev, endian),
        str: DebugStr::new(&str, endian),
        str_offsets: DebugStrOffsets::from(EndianSlice::new(&str_offsets, endian)),
        line_str: DebugLineStr::from(EndianSlice::new(&line_str, endian)),
    };
    scan(&sections, wanted).map_err(|e| malformed(e.to_string()))
}

/// Loads `.debug_<name>` (or `.zdebug_<name>`), decompressed. `Ok(None)` if absent.
fn load_section<'d>(obj: &object::File<'d>, name: &str) -> Result<Option<Cow<'d, [u8]>>, String> {
    let plain = format!(".debug_{name}");
    let section = obj.section_by_name(&plain).or_else(|| obj.section_by_name(&format!(".zdebug_{name}")));
    let Some(section) = section else {
        return Ok(None);
    };
    let data = section.compressed_data().map_err(|e| format!("cannot read {plain}: {e}"))?;
    // Decompression allocates and zeroes the size the header claims before reading a
    // byte, so a corrupt header could claim gigabytes; deflate cannot expand more than
    // 1032:1 (one 258-byte match per 2 bits).
    let most = (data.data.len() as u64).saturating_mul(1032).saturating_add(1024);
    if data.format == object::CompressionFormat::Zlib && data.uncompressed_size > most {
        return Err(format!(
            "{plain}: {} bytes of zlib data cannot hold the {} bytes its header claims",
            data.data.len(),
            data.uncompressed_size
        ));
    }
    data.decompress().map(Some).map_err(|e| format!("cannot read {plain}: {e}"))
}

/// Walks the top-level DIEs of every unit, collecting wanted struct types.
fn scan(s: &Sections<'_>, wanted: &[&str]) -> gimli::Result<StructFields> {
    let wanted: HashSet<&str> = wanted.iter().copied().collect();
    let mut out: HashMap<String, HashMap<String, u64>> = HashMap::new();
    let mut found_wanted = 0usize;
    let mut abbrevs: HashMap<DebugAbbrevOffset, gimli::Abbreviations> = HashMap::new();
    let mut units = s.info.units();
    while let Some(header) = units.next()? {
        let abbrev_offset = header.debug_abbrev_offset();
        let unit_abbrevs = match abbrevs.entry(abbrev_offset) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => e.insert(header.abbreviations(&s.abbrev)?),
        };
        let encoding = header.encoding();
        let mut str_base = DebugStrOffsetsBase::default_for_encoding_and_file(encoding, DwarfFileType::Main);
        let mut raw = header.entries_raw(unit_abbrevs, None)?;
        // The struct whose members are being read.
        let mut current: Option<(String, HashMap<String, u64>)> = None;
        loop {
            let depth = raw.next_depth();
            if depth <= 1 || raw.is_empty() {
                if let Some((name, fields)) = current.take() {
                    if wanted.contains(name.as_str()) {
                        found_wanted += 1;
                    }
                    out.insert(name, fields);
                    if !wanted.is_empty() && found_wanted == wanted.len() {
                        return Ok(StructFields(out));
                    }
                }
            }
            if raw.is_empty() {
                break;
            }
            let Some(abbrev) = raw.read_abbreviation()? else {
                continue; // null entry: end of a sibling list
            };
            match (depth, abbrev.tag()) {
                (0, _) => {
                    // The unit DIE: only DW_AT_str_offsets_base matters here.
                    for spec in abbrev.attributes() {
                        let attr = raw.read_attribute(*spec)?;
                        if let AttributeValue::DebugStrOffsetsBase(base) = attr.value() {
                            str_base = base;
                        }
                    }
                }
                (1, gimli::DW_TAG_structure_type) => {
                    let mut name = None;
                    for spec in abbrev.attributes() {
                        let attr = raw.read_attribute(*spec)?;
                        if attr.name() == gimli::DW_AT_name {
                            name = attr_str(s, encoding, str_base, attr.value());
                        }
                    }
                    let Some(name) = name else { continue };
                    let interesting = wanted.is_empty() || wanted.contains(name);
                    if interesting && abbrev.has_children() && !out.contains_key(name) {
                        current = Some((name.to_string(), HashMap::new()));
                    }
                }
                (2, gimli::DW_TAG_member) if current.is_some() => {
                    let (mut name, mut location) = (None, None);
                    for spec in abbrev.attributes() {
                        let attr = raw.read_attribute(*spec)?;
                        match attr.name() {
                            gimli::DW_AT_name => {
                                name = attr_str(s, encoding, str_base, attr.value());
                            }
                            gimli::DW_AT_data_member_location => {
                                location = member_location(attr.value());
                            }
                            _ => {}
                        }
                    }
                    if let (Some(name), Some(location), Some((_, fields))) = (name, location, current.as_mut()) {
                        fields.entry(name.to_string()).or_insert(location);
                    }
                }
                _ => raw.skip_attributes(abbrev.attributes())?,
            }
        }
    }
    Ok(StructFields(out))
}

/// Resolves a string-valued attribute (inline, `.debug_str`, `.debug_line_str` or
/// DWARF 5 `strx`) to UTF-8; `None` for other forms or invalid references.
fn attr_str<'d>(
    s: &Sections<'d>,
    encoding: gimli::Encoding,
    str_base: DebugStrOffsetsBase<usize>,
    value: AttributeValue<R<'d>>,
) -> Option<&'d str> {
    let bytes = match value {
        AttributeValue::String(r) => r,
        AttributeValue::DebugStrRef(off) => s.str.get_str(off).ok()?,
        AttributeValue::DebugLineStrRef(off) => s.line_str.get_str(off).ok()?,
        AttributeValue::DebugStrOffsetsIndex(index) => {
            let off = s.str_offsets.get_str_offset(encoding.format, str_base, index).ok()?;
            s.str.get_str(off).ok()?
        }
        _ => return None,
    };
    std::str::from_utf8(bytes.slice()).ok()
}

/// A member offset: a constant, or an expression `DW_OP_plus_uconst N` /
/// `DW_OP_constu N`.
fn member_location(value: AttributeValue<R<'_>>) -> Option<u64> {
    match value {
        AttributeValue::Exprloc(gimli::Expression(mut expr)) => {
            let op = expr.read_u8().ok()?;
            if op != gimli::DW_OP_plus_uconst.0 && op != gimli::DW_OP_constu.0 {
                return None;
            }
            let n = expr.read_uleb128().ok()?;
            expr.is_empty().then_some(n)
        }
        other => other.udata_value(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{build_fixture, Build};

    const WANTED: &[&str] = &["net/http.Request", "net/url.URL", "net/http.response"];
    const SHOWN: &[(&str, &str)] = &[
        ("net/http.Request", "Method"),
        ("net/http.Request", "URL"),
        ("net/http.Request", "Proto"),
        ("net/http.Request", "Header"),
        ("net/http.Request", "Host"),
        ("net/http.Request", "RemoteAddr"),
        ("net/http.Request", "TLS"),
        ("net/http.Request", "ctx"),
        ("net/http.Request", "Pattern"),
        ("net/url.URL", "Path"),
        ("net/http.response", "status"),
        ("net/http.response", "req"),
    ];

    fn check(build: Build, expect_pattern: bool) {
        let Some(built) = build_fixture(&build) else {
            return;
        };
        let bin = GoBinary::open(&built).expect("open httpprog");
        let t = std::time::Instant::now();
        let fields = struct_fields(&bin, WANTED).expect("struct_fields");
        let took = t.elapsed();
        println!("{} ({}), struct_fields took {took:?}:", bin.build.go_version, built.path.display());
        for (strukt, field) in SHOWN {
            let off = fields.offset(strukt, field);
            let shown = off.map_or("absent".to_string(), |o| o.to_string());
            println!("  {strukt:<20} {field:<12} {shown}");
        }
        for s in WANTED {
            assert!(fields.has_struct(s), "{s} not found");
        }
        assert_eq!(fields.len(), WANTED.len());
        assert_eq!(fields.offset("net/http.Request", "Method"), Some(0));
        for (strukt, field) in SHOWN.iter().filter(|(_, f)| *f != "Pattern") {
            assert!(fields.offset(strukt, field).is_some(), "{strukt}.{field} missing");
        }
        assert_eq!(fields.offset("net/http.Request", "Pattern").is_some(), expect_pattern);
        assert_eq!(fields.offset("net/http.Request", "NoSuchField"), None);
    }

    #[test]
    fn http_offsets_current_go() {
        let Some(built) = build_fixture(&Build::new("httpprog")) else {
            return;
        };
        let v = crate::GoVersion::parse(&built.go_version).expect("go version");
        check(Build::new("httpprog"), v.at_least(1, 23));
    }

    #[test]
    fn http_offsets_go_1_22() {
        check(Build::new("httpprog").toolchain("go1.22.12"), false);
    }

    #[test]
    fn no_dwarf_is_empty_and_absent_structs_are_absent() {
        let Some(built) = build_fixture(&Build::new("retprog").ldflags("-w")) else {
            return;
        };
        let bin = GoBinary::open(&built).expect("open");
        assert!(struct_fields(&bin, WANTED).unwrap().is_empty());

        let Some(built) = build_fixture(&Build::new("retprog")) else {
            return;
        };
        let bin = GoBinary::open(&built).expect("open");
        let fields = struct_fields(&bin, &["net/http.Request", "runtime.g"]).unwrap();
        assert!(!fields.has_struct("net/http.Request"));
        assert!(fields.offset("runtime.g", "goid").is_some());
    }

    #[test]
    fn corrupt_dwarf_does_not_panic() {
        for ldflags in ["-compressdwarf=true", "-compressdwarf=false"] {
            let Some(built) = build_fixture(&Build::new("retprog").ldflags(ldflags)) else {
                return;
            };
            let pristine = std::fs::read(&built.path).unwrap();
            let (start, len) = {
                let obj = object::File::parse(&*pristine).unwrap();
                let s = obj.section_by_name(".debug_info").unwrap();
                let (off, len) = s.file_range().unwrap();
                (off as usize, len as usize)
            };
            let dir = std::env::temp_dir().join(format!("gosight-dwarf-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let path = dir.join(format!("corrupt{ldflags}"));
            let mut errors = 0;
            for (i, at) in [0, 4, 11, 12, 40, len / 3, len / 2, len - 8].into_iter().enumerate() {
                let mut bytes = pristine.clone();
                let end = (start + at + 64).min(start + len);
                for (j, b) in bytes[start + at..end].iter_mut().enumerate() {
                    *b = (i * 31 + j * 7) as u8 ^ 0xa5;
                }
                std::fs::write(&path, &bytes).unwrap();
                let bin = GoBinary::open(&path).expect("corruption is confined to DWARF");
                match struct_fields(&bin, &["runtime.g"]) {
                    Ok(_) => {}
                    Err(e) => {
                        assert!(matches!(e, InspectError::Malformed(_)), "{e}");
                        assert!(!e.to_string().contains('\n'), "{e}");
                        errors += 1;
                    }
                }
            }
            println!("{ldflags}: {errors} of 8 corruptions reported as Malformed");
            assert!(errors > 0);
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}
