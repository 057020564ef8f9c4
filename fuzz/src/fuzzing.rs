//! Entry points of the fuzz targets (`fuzz_targets/`): each runs one reader of
//! `gosight-goexe` (or the offsets database) on arbitrary bytes, as if they were a
//! file, and drives every public lookup on whatever it accepts. Errors are expected
//! and ignored; a panic (including an arithmetic overflow in a debug-assertions
//! build, which is how the fuzzers build) is a bug in the reader.
//!
//! A [`GoBinary`] is made from bytes through an anonymous memory map
//! ([`GoBinary::from_map`]); the pclntab parser is public ([`gosight_goexe::pclntab`]).
//! The sidecar's resolver (its DWARF, then the database) is mirrored by
//! [`field_offset`], without the sidecar crate (tokio, aya, OTLP).
//!
//! Each entry returns a [`Reached`] summary of how far the input got, for the unit
//! tests below to check that real binaries reach the success paths.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use gosight_goexe::dwarf::{self, StructFields};
use gosight_goexe::modules::{package_of, ModuleVersions};
use gosight_goexe::pclntab::Pclntab;
use gosight_goexe::{itabs, BuildInfo, Function, GoBinary, GoVersion, InspectError, Module};
use gosight_offsets_db::{version, Database, Value, STD};

/// How far one input got, summed over the lookups an entry makes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reached {
    /// The bytes were accepted as a binary / table / database.
    pub parsed: bool,
    /// Functions located (by `.symtab` or the pclntab).
    pub functions: usize,
    /// Symbols and struct fields found, database answers given.
    pub values: usize,
}

/// Where the fuzz inputs claim to live in error messages.
const PATH: &str = "fuzz-input";
/// Addresses the synthetic ELF files put their segments at.
const TABLE_ADDR: u64 = 0x70_0000;
const DATA_ADDR: u64 = 0x90_0000;
const TEXT_ADDR: u64 = 0x40_1000;
const PF_X: u32 = 1;
const PF_W: u32 = 2;
const PF_R: u32 = 4;

/// The functions the probes look up (`gosight-uprobes`, alternatives split, as of
/// this writing; `fuzz/seed.sh` keeps the functions its sources name in the seeds),
/// plus two that every Go binary has. A name missing here costs coverage, nothing
/// else: every name takes the same paths.
const FUNCTION_NAMES: &[&str] = &[
    "google.golang.org/grpc.(*Server).handleStream",
    "google.golang.org/grpc.(*clientStream).newAttemptLocked",
    "google.golang.org/grpc.(*csAttempt).finish",
    "google.golang.org/grpc/internal/transport.(*http2Client).createHeaderFields",
    "google.golang.org/grpc/internal/transport.(*http2Server).WriteStatus",
    "google.golang.org/grpc/internal/transport.(*http2Server).writeStatus",
    "google.golang.org/grpc/internal/transport.(*loopyWriter).clientHeaderHandler",
    "google.golang.org/grpc/internal/transport.(*loopyWriter).originateStream",
    "main.main",
    "net/http.(*Request).write",
    "net/http.(*Transport).roundTrip",
    "net/http.serverHandler.ServeHTTP",
    "runtime.main",
];

fn function_names() -> &'static [&'static str] {
    FUNCTION_NAMES
}

/// Data symbols of every Go binary (itab symbols are listed by prefix).
const DATA_SYMBOLS: &[&str] = &["runtime.buildVersion", "runtime.firstmoduledata", "io.EOF"];

/// The (struct, field) pairs gosight reads: those the embedded database tracks
/// (`offsets-tracker` records every field the probes and the itab reader read) and
/// the itab reader's.
fn fields() -> &'static [(&'static str, &'static str)] {
    static FIELDS: OnceLock<Vec<(&'static str, &'static str)>> = OnceLock::new();
    FIELDS.get_or_init(|| {
        let db = embedded_db();
        let mut out: Vec<(&str, &str)> =
            db.modules().flat_map(|m| db.fields(m)).chain(itabs::FIELDS.iter().copied()).collect();
        out.sort();
        out.dedup();
        out
    })
}

/// The structs whose fields gosight reads.
fn structs() -> &'static [&'static str] {
    static NAMES: OnceLock<Vec<&'static str>> = OnceLock::new();
    NAMES.get_or_init(|| {
        let set: BTreeSet<&str> = fields().iter().map(|&(s, _)| s).collect();
        set.into_iter().collect()
    })
}

/// The embedded offsets database, parsed once.
fn embedded_db() -> &'static Database {
    static DB: OnceLock<Database> = OnceLock::new();
    DB.get_or_init(Database::embedded)
}

/// A small database to lay fuzzed ones over and under (cloning the embedded one on
/// every input would cost more than the rest of the target).
fn small_db() -> &'static Database {
    static DB: OnceLock<Database> = OnceLock::new();
    DB.get_or_init(|| {
        Database::from_json(
            r#"{"format": 1, "modules": {
                "std": {"versions": ["go1.22.0", "go1.23.0"], "structs": {"net/http.Request": {
                    "Pattern": [{"from": "go1.22.0", "to": "go1.22.0", "absent": true},
                                {"from": "go1.23.0", "to": "go1.23.0", "offset": 248}]}}},
                "google.golang.org/grpc": {"versions": ["v1.60.0"], "structs": {}}}}"#,
        )
        .expect("valid database")
    })
}

/// `data` as the read-only memory map a [`GoBinary`] holds.
fn map(data: &[u8]) -> Result<memmap2::Mmap, InspectError> {
    let io = |source| InspectError::Io { path: PathBuf::from(PATH), source };
    let mut map = memmap2::MmapMut::map_anon(data.len()).map_err(io)?;
    map.copy_from_slice(data);
    map.make_read_only().map_err(io)
}

/// [`GoBinary::open`] on bytes.
fn go_binary(data: &[u8]) -> Result<GoBinary, InspectError> {
    GoBinary::from_map(PathBuf::from(PATH), map(data)?)
}

/// What the sidecar's resolver answers for a field: the binary's DWARF, then the
/// database for the module version the struct follows.
fn field_offset(
    dwarf: Option<&StructFields>,
    db: &Database,
    versions: &ModuleVersions,
    s: &str,
    f: &str,
) -> Option<u64> {
    dwarf.and_then(|d| d.offset(s, f)).or_else(|| match database_lookup(db, versions, s, f)? {
        Value::Offset(o) => Some(o),
        Value::Absent => None,
    })
}

/// The database's answer for a field, looked up as the sidecar does.
fn database_lookup(db: &Database, versions: &ModuleVersions, s: &str, f: &str) -> Option<Value> {
    let lv = versions.for_struct(s);
    db.lookup(&lv.module, lv.version.as_deref()?, s, f)
}

/// Checks what the readers promise about a located function: its bytes are in the
/// file and its RETs inside it, ascending.
fn check_function(data_len: usize, f: &Function) {
    let end = f.entry_offset.checked_add(f.size);
    assert!(
        end.is_some_and(|end| end <= data_len as u64) && f.size > 0,
        "{f:x?} outside a file of {data_len:#x} bytes"
    );
    let inside = |&o: &u64| o >= f.entry_offset && o < f.entry_offset + f.size;
    assert!(f.return_offsets.iter().all(inside), "{f:x?}");
    assert!(f.return_offsets.windows(2).all(|w| w[0] < w[1]), "{f:x?}");
}

/// Open the bytes as a Go executable, then ask everything the sidecar asks: build
/// info, functions (by `.symtab` and by pclntab), data symbols, every tracked
/// field's offset from DWARF and the offsets database, and the itab table.
pub fn elf_and_buildinfo(data: &[u8]) -> Reached {
    let mut reached = Reached::default();
    let Ok(bin) = go_binary(data) else {
        return reached;
    };
    reached.parsed = true;
    let _ = (bin.go_version().to_string(), bin.has_symtab(), bin.lookup_source_name());
    let _ = bin.pie_first_load_vaddr();
    let names = function_names();
    if let Ok(found) = bin.functions(names) {
        assert_eq!(found.len(), names.len());
        for f in found.iter().flatten() {
            check_function(data.len(), f);
            reached.functions += 1;
        }
    }
    if let Ok(f) = bin.function("main.main") {
        check_function(data.len(), &f);
    }
    // The pclntab too when `.symtab` answered above.
    let obj = bin.object();
    if let Ok((table, text, _)) = Pclntab::find(&obj) {
        if let Ok(found) = table.locate(names, text) {
            reached.functions += found.iter().flatten().count();
        }
    }
    for name in DATA_SYMBOLS {
        reached.values += usize::from(bin.symbol_address(name).is_some());
    }
    reached.values += bin.symbols_with_prefix("go:itab.").len();
    let db = embedded_db();
    reached.values += drive_build(&bin.build, db);
    // Every tracked field, as the sidecar resolves it: DWARF, then the database.
    let dwarf = dwarf::struct_fields(&bin, structs()).ok();
    let versions = ModuleVersions::of(&bin.build);
    let offset = |s: &str, f: &str| field_offset(dwarf.as_ref(), db, &versions, s, f);
    for (s, f) in fields() {
        reached.values += usize::from(offset(s, f).is_some());
    }
    // The itab table, with the binary's own layouts (DWARF, or the database for its
    // Go version) or else Go 1.26's; then with Go 1.27's alone (itabs inline in the
    // type section), so that inputs without DWARF reach both ways of listing them.
    if let Some(md) = bin.moduledata_address() {
        reached.values += usize::from(bin.bytes_at(md, 8).is_some());
    }
    let offsets = |s: &str, f: &str| offset(s, f).or_else(|| go126_layout(s, f));
    if let Ok(itabs) = itabs::read(&bin, &offsets) {
        reached.values += itabs.len();
    }
    if let Ok(itabs) = itabs::read(&bin, &go127_layout) {
        reached.values += itabs.len();
    }
    reached
}

/// The runtime layouts the itab reader needs, as Go 1.26 has them.
fn go126_layout(strukt: &str, field: &str) -> Option<u64> {
    Some(match (strukt, field) {
        ("runtime.moduledata", "types") => 296,
        ("runtime.moduledata", "etypes") => 304,
        ("runtime.moduledata", "itablinks") => 384,
        ("internal/abi.ITab", "Inter") => 0,
        ("internal/abi.ITab", "Type") => 8,
        ("internal/abi.Type", "TFlag") => 20,
        ("internal/abi.Type", "Kind_") => 23,
        ("internal/abi.Type", "Str") => 40,
        ("internal/abi.Type", "PtrToThis") => 44,
        ("internal/abi.PtrType", "Elem") => 48,
        ("internal/abi.StructType", "Fields") => 56,
        ("internal/abi.InterfaceType", "PkgPath") => 48,
        ("internal/abi.UncommonType", "PkgPath") => 0,
        _ => return None,
    })
}

/// The runtime layouts the itab reader needs, as Go 1.27 has them (no itablinks).
fn go127_layout(strukt: &str, field: &str) -> Option<u64> {
    Some(match (strukt, field) {
        ("runtime.moduledata", "etypes") => 312,
        ("runtime.moduledata", "itaboffset") => 320,
        ("runtime.moduledata", "itabsize") => 328,
        ("runtime.moduledata", "itablinks") => return None,
        ("internal/abi.ITab", "Fun") => 24,
        ("internal/abi.InterfaceType", "Methods") => 56,
        _ => return go126_layout(strukt, field),
    })
}

/// Everything that reads build info: module lookups, the module version each
/// tracked struct follows, and the offsets database's answers for them (coverage
/// of each version, as the sidecar's log notes, and each field).
fn drive_build(build: &BuildInfo, db: &Database) -> usize {
    let mut values = 0;
    let _ = (build.go_version.at_least(1, 22), build.setting("GOARCH"));
    for m in build.deps.iter().chain(build.main_module.iter()) {
        values += usize::from(build.module(&m.path).is_some());
    }
    let versions = ModuleVersions::of(build);
    let _ = versions.go_version();
    for m in &build.deps {
        let _ = versions.for_struct(&format!("{}.T", m.path));
        let _ = package_of(&m.path);
    }
    for strukt in structs() {
        let _ = package_of(strukt);
    }
    for strukt in structs() {
        let lv = versions.for_struct(strukt);
        if let Some(version) = &lv.version {
            let _ = (db.coverage(&lv.module, version), db.versions(&lv.module).last());
        }
    }
    for (strukt, field) in fields() {
        values += usize::from(database_lookup(db, &versions, strukt, field).is_some());
    }
    values
}

/// The pclntab parser on a table's bytes (`.gopclntab` from its header on): directly,
/// then found by its magic in a synthetic ELF whose other segments let every way of
/// finding the text start (header, moduledata) succeed.
pub fn pclntab(data: &[u8]) -> Reached {
    let mut reached = Reached::default();
    let names = function_names();
    let Ok(table) = Pclntab::parse(data, TABLE_ADDR) else {
        return reached;
    };
    reached.parsed = true;
    let text = match table.header_text_start {
        0 => TEXT_ADDR,
        t => t,
    };
    if let Ok(found) = table.locate(names, text) {
        reached.functions += found.iter().flatten().count();
    }
    // The same table among segments, as in a stripped binary without section headers.
    let ptr = usize::from(data[7]);
    let word = |at: usize| word_le(data, at, ptr);
    let funcnametab = word(8 + 3 * ptr).unwrap_or(0);
    let functab = word(8 + 7 * ptr).unwrap_or(0);
    let nfunc = word(8).unwrap_or(0);
    let entry = |i: u64| {
        let at = functab.checked_add(i.checked_mul(8)?)?;
        word(usize::try_from(at).ok()?).map(|w| w & 0xffff_ffff)
    };
    let (first, end) = (entry(0).unwrap_or(0), entry(nfunc).unwrap_or(0));
    // `runtime.firstmoduledata`: pcHeader, funcnametab, ..., minpc (#20), maxpc, text.
    let mut moduledata = vec![0u8; 24 * ptr];
    let mut put = |i: usize, v: u64| {
        moduledata[i * ptr..(i + 1) * ptr].copy_from_slice(&v.to_le_bytes()[..ptr]);
    };
    put(0, TABLE_ADDR);
    put(1, TABLE_ADDR.wrapping_add(funcnametab));
    put(20, TEXT_ADDR.wrapping_add(first));
    put(21, TEXT_ADDR.wrapping_add(end));
    put(22, TEXT_ADDR);
    let elf = synthetic_elf(&[
        (PF_R, TABLE_ADDR, data, data.len() as u64),
        (PF_R | PF_W, DATA_ADDR, &moduledata, moduledata.len() as u64),
        (PF_R | PF_X, text.min(TEXT_ADDR), &[], 1 << 32),
    ]);
    if let Ok(obj) = object::File::parse(&*elf) {
        if let Ok((table, text, _)) = Pclntab::find(&obj) {
            if let Ok(found) = table.locate(names, text) {
                reached.functions += found.iter().flatten().count();
            }
        }
    }
    reached
}

/// The DWARF reader on any object file (no Go build info needed): the tracked
/// structs, then every struct.
pub fn dwarf(data: &[u8]) -> Reached {
    let mut reached = Reached::default();
    let Ok(obj) = object::File::parse(data) else {
        return reached;
    };
    reached.parsed = true;
    let all: &[&str] = &[];
    for wanted in [structs(), all] {
        if let Ok(fields) = dwarf::struct_fields_of(&obj, Path::new(PATH), wanted) {
            for (name, members) in fields.iter() {
                assert!(fields.has_struct(name));
                reached.values += members.len();
            }
            let _ = fields.offset("runtime.g", "goid");
        }
    }
    reached
}

/// Build info both ways: the bytes as the text `"<go version>\n<modinfo>"`, and as the
/// `.go.buildinfo` blob (from its magic on) in the data segment of a synthetic ELF.
pub fn buildinfo(data: &[u8]) -> Reached {
    let mut reached = Reached::default();
    let db = embedded_db();
    let text = String::from_utf8_lossy(data);
    let (version, modinfo) = text.split_once('\n').unwrap_or((&text, ""));
    let go = GoVersion::parse(version).unwrap_or_default();
    let build = BuildInfo::parse_modinfo(go, modinfo);
    reached.values += drive_build(&build, db);

    let elf = synthetic_elf(&[(PF_R | PF_W, DATA_ADDR, data, data.len() as u64)]);
    let obj = object::File::parse(&*elf).expect("synthetic ELF parses");
    if let Ok(Some(build)) = BuildInfo::from_object(&obj, Path::new(PATH)) {
        reached.parsed = true;
        reached.values += drive_build(&build, db);
    }
    reached
}

/// The offsets database text: parse, then every query, the canonical text round
/// trip, laying it over (and under) another database, and lookups for a binary whose
/// build info names its modules.
pub fn offsets_db(data: &[u8]) -> Reached {
    let mut reached = Reached::default();
    let Ok(text) = std::str::from_utf8(data) else {
        return reached;
    };
    let Ok(db) = Database::from_json(text) else {
        return reached;
    };
    reached.parsed = true;
    let canonical = db.to_json();
    let back =
        Database::from_json(&canonical).unwrap_or_else(|e| panic!("canonical text does not parse: {e}\n{canonical}"));
    assert_eq!(back.to_json(), canonical, "canonical text is not stable");

    let modules: Vec<String> = db.modules().map(str::to_string).collect();
    let mut deps = Vec::new();
    for m in &modules {
        let versions = db.versions(m);
        let probes = versions.iter().copied().chain(["go1.22.0", "v1.0.0", "(devel)", ""]);
        for (i, v) in probes.enumerate() {
            let _ = db.coverage(m, v);
            if let Some(prev) = versions.get(i.wrapping_sub(1)) {
                let _ = version::compare(m, prev, v);
            }
            for (s, f) in db.fields(m) {
                let _ = db.ranges(m, s, f);
                reached.values += usize::from(db.lookup(m, v, s, f).is_some());
            }
        }
        if m != STD {
            if let Some(v) = versions.last() {
                deps.push(Module { path: m.clone(), version: v.to_string(), ..Default::default() });
            }
        }
    }
    let mut over = small_db().clone();
    over.extend(db.clone());
    let mut under = db.clone();
    under.extend(small_db().clone());
    let _ = db.restrict(|_, v| v.len() % 2 == 0);
    let go = db.versions(STD).last().copied().unwrap_or("go1.22.0");
    let build = BuildInfo { go_version: GoVersion::parse(go).unwrap_or_default(), deps, ..Default::default() };
    reached.values += drive_build(&build, &db);
    reached
}

/// A minimal ELF64 little-endian x86-64 executable made of PT_LOAD `segments`
/// (flags, address, file bytes, memory size) and no section headers.
fn synthetic_elf(segments: &[(u32, u64, &[u8], u64)]) -> Vec<u8> {
    const EHDR: usize = 64;
    const PHDR: usize = 56;
    let mut out = vec![0u8; EHDR + PHDR * segments.len()];
    out[..8].copy_from_slice(b"\x7fELF\x02\x01\x01\x00");
    out[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    out[18..20].copy_from_slice(&62u16.to_le_bytes()); // EM_X86_64
    out[20..24].copy_from_slice(&1u32.to_le_bytes());
    out[32..40].copy_from_slice(&(EHDR as u64).to_le_bytes()); // e_phoff
    out[52..54].copy_from_slice(&(EHDR as u16).to_le_bytes());
    out[54..56].copy_from_slice(&(PHDR as u16).to_le_bytes());
    out[56..58].copy_from_slice(&(segments.len() as u16).to_le_bytes());
    out[58..60].copy_from_slice(&64u16.to_le_bytes());
    for (i, (flags, address, bytes, memsz)) in segments.iter().enumerate() {
        let offset = out.len() as u64;
        out.extend_from_slice(bytes);
        let filesz = bytes.len() as u64;
        let mut ph = Vec::with_capacity(PHDR);
        ph.extend_from_slice(&1u32.to_le_bytes()); // PT_LOAD
        ph.extend_from_slice(&flags.to_le_bytes());
        for v in [offset, *address, *address, filesz, (*memsz).max(filesz), 0x1000] {
            ph.extend_from_slice(&v.to_le_bytes());
        }
        let at = EHDR + i * PHDR;
        out[at..at + PHDR].copy_from_slice(&ph);
    }
    out
}

/// The little-endian unsigned integer of `width` (at most 8) bytes at `at`.
fn word_le(data: &[u8], at: usize, width: usize) -> Option<u64> {
    let bytes = data.get(at..at.checked_add(width)?)?;
    Some(bytes.iter().rev().fold(0, |v, &b| (v << 8) | u64::from(b)))
}

#[cfg(test)]
mod tests {
    use gosight_goexe::testutil::{build_fixture, Build};
    use object::Object;

    use super::*;

    type Entry = fn(&[u8]) -> Reached;

    /// Each fuzz target's name and entry.
    const ENTRIES: [(&str, Entry); 5] = [
        ("elf", elf_and_buildinfo),
        ("pclntab", pclntab),
        ("dwarf", dwarf),
        ("buildinfo", buildinfo),
        ("offsets_db", offsets_db),
    ];

    /// Inputs the fuzzers once crashed on (`fuzz/regressions/<target>/`) and a few
    /// degenerate ones: no panic.
    #[test]
    fn regressions_and_degenerate_inputs() {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/regressions");
        for (target, entry) in ENTRIES {
            for input in [&b""[..], b"\x7fELF", &[0xff; 64], b"{}", b"\xff Go buildinf:"] {
                entry(input);
            }
            let Ok(dir) = std::fs::read_dir(format!("{root}/{target}")) else {
                continue;
            };
            for file in dir {
                let path = file.unwrap().path();
                println!("{target}: {}", path.display());
                entry(&std::fs::read(&path).unwrap());
            }
        }
    }

    /// A compressed section whose header claims far more than its zlib data can
    /// hold is an error, found before anything is allocated for it (the fuzzer's
    /// input claimed 16 GiB, and decompressing allocated and zeroed all of it).
    #[test]
    fn dwarf_claiming_an_impossible_size_is_an_error() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/regressions/dwarf/zlib-claims-16-gib");
        let data = std::fs::read(path).unwrap();
        let obj = object::File::parse(&*data).unwrap();
        let err = dwarf::struct_fields_of(&obj, Path::new(path), &["runtime.g"]).unwrap_err();
        assert!(err.to_string().contains("cannot hold"), "{err}");
    }

    /// How far each seed `fuzz/seed.sh` made gets (`GOSIGHT_FUZZ_SEEDS=<corpus dir>
    /// cargo test --manifest-path fuzz/Cargo.toml --lib seed_report -- --ignored --nocapture`).
    #[test]
    #[ignore]
    fn seed_report() {
        let root = std::env::var("GOSIGHT_FUZZ_SEEDS").expect("GOSIGHT_FUZZ_SEEDS");
        for (target, entry) in ENTRIES {
            let Ok(dir) = std::fs::read_dir(format!("{root}/{target}")) else {
                continue;
            };
            let mut paths: Vec<_> = dir.map(|f| f.unwrap().path()).collect();
            paths.sort();
            for path in paths {
                let reached = entry(&std::fs::read(&path).unwrap());
                println!("{target:<10} {:<40} {reached:?}", path.file_name().unwrap().to_string_lossy());
            }
        }
    }

    /// Real binaries reach the success paths of every entry.
    #[test]
    fn real_binaries_reach_the_lookups() {
        let Some(full) = build_fixture(&Build::new("httpprog")) else {
            return;
        };
        let stripped = build_fixture(&Build::new("httpprog").ldflags("-s -w")).unwrap();
        for path in [&full.path, &stripped.path] {
            let data = std::fs::read(path).unwrap();
            let reached = elf_and_buildinfo(&data);
            println!("{}: {reached:?}", path.display());
            assert!(reached.parsed && reached.functions >= 4, "{reached:?}");
            let obj = object::File::parse(&*data).unwrap();
            let section = |name| {
                use object::ObjectSection;
                obj.section_by_name(name).unwrap().data().unwrap().to_vec()
            };
            let reached = pclntab(&section(".gopclntab"));
            assert!(reached.parsed && reached.functions >= 4, "{reached:?}");
            let reached = buildinfo(&section(".go.buildinfo"));
            assert!(reached.parsed && reached.values > 0, "{reached:?}");
        }
        let reached = dwarf(&std::fs::read(&full.path).unwrap());
        assert!(reached.values > 20, "{reached:?}");
        let text = b"go1.22.12\npath\tx\nmod\tx\t(devel)\t\ndep\tgoogle.golang.org/grpc\tv1.60.0\t\n";
        assert!(buildinfo(text).values > 0);
        let db = r#"{"format": 1, "modules": {"std": {"versions": ["go1.22.0", "go1.23.0"],
            "structs": {"net/http.Request": {"Method": [{"from": "go1.22.0", "to": "go1.23.0", "offset": 0}]}}}}}"#;
        let reached = offsets_db(db.as_bytes());
        assert!(reached.parsed && reached.values > 0, "{reached:?}");
    }
}
