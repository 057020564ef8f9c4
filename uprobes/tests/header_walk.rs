//! `include/go_header.h` + `include/traceparent.h` against real Go maps.
//!
//! Builds `tests/header_walk/app` with several Go toolchains (default: go1.22.12 —
//! classic hash maps —, go1.24.13 and the local go — Swiss tables; override with
//! `GOSIGHT_HEADER_WALK_GO=go1.22.12,go1.24.13+noswissmap,go1.27.4,local`, where
//! `+exp` sets GOEXPERIMENT=exp), resolves the map layout offsets from each binary's
//! DWARF, loads `tests/header_walk/probe.bpf.c` with them, attaches it at the entry
//! of the app's `main.Probe(h http.Header)` and checks, for every case the app
//! prints, what the BPF side found (status, value, parse, re-format). Then measures
//! the walk's cost per call with BPF run-time stats on `main.Bench`.
//!
//! Needs root and `go`; otherwise prints `SKIPPED: <why>` (panics when CI=true).

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use aya::maps::RingBuf;
use aya::programs::uprobe::{UProbeAttachLocation, UProbeAttachPoint, UProbeScope};
use aya::programs::UProbe;
use aya::{Ebpf, EbpfLoader};
use gosight_uprobes::go_header::{self, MapLayout};
use gosight_uprobes::records::span_ctx as RawSpanContext;
use gosight_uprobes::OFF_ABSENT;
use object::{Object, ObjectSection, ObjectSymbol};

fn object_bytes() -> &'static [u8] {
    gosight_uprobes::bpf_object!("test_header_walk")
}

/// Mirror of `struct walk_event` (tests/header_walk/probe.bpf.c).
#[repr(C)]
#[derive(Clone, Copy)]
struct WalkEvent {
    map: u64,
    status: i32,
    parsed: i32,
    value: [u8; 56],
    sc: RawSpanContext,
    formatted: [u8; 56],
}
const _: () = assert!(std::mem::size_of::<WalkEvent>() == 160);

/// One line `CASE <name> <addr> <len> <status> <value|-> <valid> <note>` of the app.
#[derive(Debug)]
struct Case {
    name: String,
    addr: u64,
    len: usize,
    status: i32,
    value: Option<String>,
    valid: bool,
    note: String,
}

fn skip(why: &str) {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("header_walk cannot run: {why} (CI=true requires it to run)");
    }
    println!("SKIPPED: {why}");
}

#[test]
fn header_walk_all_toolchains() {
    if unsafe { libc::geteuid() } != 0 {
        return skip("needs root (BPF uprobes)");
    }
    if Command::new("go").arg("version").output().map(|o| !o.status.success()).unwrap_or(true) {
        return skip("`go` is not on PATH");
    }
    let list = std::env::var("GOSIGHT_HEADER_WALK_GO").unwrap_or_else(|_| "go1.22.12,go1.24.13,local".into());
    let app_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/header_walk/app");
    let out_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("header_walk");
    std::fs::create_dir_all(&out_dir).unwrap();
    let _stats = aya::sys::enable_stats(aya::sys::Stats::RunTime).expect("BPF_ENABLE_STATS");

    let mut failures = Vec::new();
    let mut ran = 0;
    for spec in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (toolchain, experiment) = spec.split_once('+').unwrap_or((spec, ""));
        let bin = out_dir.join(format!("app-{}", spec.replace('+', "-")));
        let mut cmd = Command::new("go");
        cmd.args(["build", "-o"]).arg(&bin).arg(".").current_dir(&app_dir);
        cmd.env("GOTOOLCHAIN", toolchain).env("GOWORK", "off").env("GOFLAGS", "");
        if !experiment.is_empty() {
            cmd.env("GOEXPERIMENT", experiment);
        }
        let out = cmd.output().expect("run go build");
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            if toolchain == "local" {
                panic!("go build (local toolchain) failed:\n{err}");
            }
            skip(&format!("cannot build with {spec} (toolchain download?): {}", err.trim()));
            continue;
        }
        println!("=== {spec}: {}", go_version(&bin));
        failures.extend(run_one(spec, &bin).into_iter().map(|f| format!("[{spec}] {f}")));
        ran += 1;
    }
    assert!(ran > 0, "no toolchain could build the app");
    assert!(failures.is_empty(), "{} failure(s):\n{}", failures.len(), failures.join("\n"));
}

fn go_version(bin: &Path) -> String {
    let out = Command::new("go").arg("version").arg(bin).env("GOTOOLCHAIN", "local").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().rsplit(' ').next().unwrap_or("?").to_string()
}

/// Runs every case against one binary; returns the failures.
fn run_one(spec: &str, bin: &Path) -> Vec<String> {
    let mut failures = Vec::new();
    let data = std::fs::read(bin).unwrap();
    let file = object::File::parse(&*data).unwrap();

    // Offsets, from this binary's DWARF.
    let wanted: Vec<&str> = go_header::FIELDS.iter().map(|f| f.strukt).collect();
    let structs = dwarf_structs(&file, &wanted);
    let mut offsets: HashMap<&str, u64> = HashMap::new();
    for f in go_header::FIELDS {
        let off = structs.get(f.strukt).and_then(|s| s.get(f.field)).copied().unwrap_or(OFF_ABSENT);
        offsets.insert(f.global, off);
    }
    let layout = MapLayout::of(&offsets);
    let shown: Vec<String> = go_header::FIELDS
        .iter()
        .filter(|f| offsets[f.global] != OFF_ABSENT)
        .map(|f| format!("{}={}", f.global, offsets[f.global]))
        .collect();
    println!("layout {layout:?}: {}", shown.join(" "));

    // Load with those offsets.
    let mut loader = EbpfLoader::new();
    for (name, value) in &offsets {
        loader.override_global(name, value, true);
    }
    let mut ebpf = loader.load(object_bytes()).unwrap_or_else(|e| panic!("[{spec}] load: {e}"));
    for prog in ["header_walk", "header_bench"] {
        let p: &mut UProbe = ebpf.program_mut(prog).unwrap().try_into().unwrap();
        p.load().unwrap_or_else(|e| panic!("[{spec}] verifier rejected {prog}: {e:#}"));
        let info = p.info().unwrap();
        println!(
            "{prog}: verified {} insns, {} translated bytes",
            info.verified_instruction_count().unwrap_or(0),
            info.size_translated().unwrap_or(0)
        );
    }

    // Start the app, attach, run the cases.
    let mut app = App::start(bin);
    let (pid, app_layout) = (app.pid, app.layout.clone());
    let expect_layout = match app_layout.as_str() {
        "classic" => MapLayout::Classic,
        "swiss-split" => MapLayout::SwissSplit,
        _ => MapLayout::Swiss,
    };
    if layout != expect_layout {
        failures.push(format!("DWARF offsets select {layout:?}, the app says its maps are {app_layout}"));
    }
    attach(&mut ebpf, "header_walk", bin, symbol_file_offset(&file, "main.Probe"), pid);
    attach(&mut ebpf, "header_bench", bin, symbol_file_offset(&file, "main.Bench"), pid);
    let lines = app.command("cases");
    let cases: Vec<Case> = lines.iter().filter_map(|l| parse_case(l)).collect();
    assert!(cases.len() > 50, "[{spec}] the app printed {} cases", cases.len());

    let mut rb = RingBuf::try_from(ebpf.take_map("events").unwrap()).unwrap();
    let mut events: HashMap<u64, WalkEvent> = HashMap::new();
    while let Some(item) = rb.next() {
        assert!(item.len() >= std::mem::size_of::<WalkEvent>());
        // SAFETY: length checked; plain old data.
        let e: WalkEvent = unsafe { std::ptr::read_unaligned(item.as_ptr() as *const WalkEvent) };
        events.entry(e.map).or_insert(e); // an entry can fire twice (stack growth)
    }

    for c in &cases {
        let Some(e) = events.get(&c.addr) else {
            failures.push(format!("{}: no event for map {:#x}", c.name, c.addr));
            continue;
        };
        if let Err(why) = check(c, e) {
            failures.push(format!("{} (len {}, {}): {why}", c.name, c.len, c.note));
        }
    }
    println!("{} cases checked, {} failed", cases.len(), failures.len());
    for c in cases.iter().filter(|c| c.name.starts_with("grow")) {
        println!("  {}: {}", c.name, c.note);
    }

    // Cost per call, from BPF run-time stats of header_bench.
    let bench = [
        ("api-6", 2000),
        ("api-5-no-tp", 2000),
        ("browser-16", 2000),
        ("browser-15-no-tp", 2000),
        ("late-20", 2000),
        ("absent-20", 2000),
        ("late-60", 2000),
        ("absent-120", 1000),
        ("absent-400", 500),
    ];
    for (case, n) in bench {
        let before = prog_stats(&mut ebpf, "header_bench");
        app.command(&format!("bench {case} {n}"));
        let after = prog_stats(&mut ebpf, "header_bench");
        let calls = after.1 - before.1;
        let ns = (after.0 - before.0) as f64 / calls.max(1) as f64;
        println!("cost {case:>12}: {ns:7.0} ns per call ({calls} calls)");
        if calls != n {
            failures.push(format!("bench {case}: {calls} program runs for {n} calls"));
        }
    }
    app.quit();
    failures
}

/// Checks one case's event against what the app expected.
fn check(c: &Case, e: &WalkEvent) -> Result<(), String> {
    if e.status != c.status {
        return Err(format!("status {} (expected {})", e.status, c.status));
    }
    if c.status != go_header::FOUND {
        return Ok(());
    }
    let expected = c.value.as_deref().unwrap_or("");
    let got = String::from_utf8_lossy(&e.value[..55]);
    if got != expected {
        return Err(format!("value {got:?} (expected {expected:?})"));
    }
    if (e.parsed == 1) != c.valid {
        return Err(format!("parsed {} (expected {})", e.parsed, c.valid as i32));
    }
    if !c.valid {
        if e.sc != RawSpanContext::default() {
            return Err("an invalid traceparent left a partial span context".into());
        }
        return Ok(());
    }
    // The parsed ids are the value's hex, and formatting gives it back (version 00).
    let hex = |s: &str| -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    };
    if e.sc.trace_id[..] != hex(&expected[3..35])[..]
        || e.sc.span_id[..] != hex(&expected[36..52])[..]
        || e.sc.flags != hex(&expected[53..55])[0]
    {
        return Err(format!(
            "parsed ids {:02x?} {:02x?} {:02x} do not match {expected}",
            e.sc.trace_id, e.sc.span_id, e.sc.flags
        ));
    }
    let formatted = String::from_utf8_lossy(&e.formatted[..55]);
    let want = format!("00{}", &expected[2..]);
    if formatted != want {
        return Err(format!("formatted {formatted:?} (expected {want:?})"));
    }
    Ok(())
}

fn parse_case(line: &str) -> Option<Case> {
    let f: Vec<&str> = line.split(' ').collect();
    if f.len() != 8 || f[0] != "CASE" {
        return None;
    }
    Some(Case {
        name: f[1].into(),
        addr: u64::from_str_radix(f[2].trim_start_matches("0x"), 16).ok()?,
        len: f[3].parse().ok()?,
        status: f[4].parse().ok()?,
        value: (f[5] != "-").then(|| f[5].to_string()),
        valid: f[6] == "1",
        note: f[7].into(),
    })
}

fn attach(ebpf: &mut Ebpf, prog: &str, bin: &Path, offset: u64, pid: u32) {
    let p: &mut UProbe = ebpf.program_mut(prog).unwrap().try_into().unwrap();
    let point = UProbeAttachPoint { location: UProbeAttachLocation::AbsoluteOffset(offset), cookie: None };
    p.attach(point, bin, UProbeScope::OneProcess(NonZeroU32::new(pid).unwrap()))
        .unwrap_or_else(|e| panic!("attach {prog} at {offset:#x}: {e}"));
}

/// (run time ns, run count) of a program.
fn prog_stats(ebpf: &mut Ebpf, prog: &str) -> (u64, u64) {
    let p: &mut UProbe = ebpf.program_mut(prog).unwrap().try_into().unwrap();
    let info = p.info().unwrap();
    (info.run_time().as_nanos() as u64, info.run_count())
}

/// File offset of a function symbol (for a uprobe's AbsoluteOffset).
fn symbol_file_offset(file: &object::File<'_>, name: &str) -> u64 {
    let sym = file.symbols().find(|s| s.name() == Ok(name)).unwrap_or_else(|| panic!("no symbol {name}"));
    let addr = sym.address();
    let section = file
        .sections()
        .find(|s| s.address() <= addr && addr < s.address() + s.size() && s.file_range().is_some())
        .unwrap_or_else(|| panic!("no section holds {name}"));
    addr - section.address() + section.file_range().unwrap().0
}

/// Field offsets of the `wanted` struct types, from the binary's DWARF.
fn dwarf_structs(file: &object::File<'_>, wanted: &[&str]) -> HashMap<String, HashMap<String, u64>> {
    let load = |id: gimli::SectionId| -> Result<Cow<'_, [u8]>, gimli::Error> {
        Ok(match file.section_by_name(id.name()) {
            Some(s) => s.uncompressed_data().unwrap_or(Cow::Borrowed(&[])),
            None => Cow::Borrowed(&[]),
        })
    };
    let sections = gimli::DwarfSections::load(load).unwrap();
    let dwarf = sections.borrow(|s| gimli::EndianSlice::new(s, gimli::LittleEndian));
    let mut out: HashMap<String, HashMap<String, u64>> = HashMap::new();
    let mut units = dwarf.units();
    while let Some(header) = units.next().unwrap() {
        let unit = dwarf.unit(header).unwrap();
        let mut entries = unit.entries();
        let mut current: Option<(String, isize)> = None;
        while let Some(entry) = entries.next_dfs().unwrap() {
            let depth = entry.depth();
            if let Some((_, d)) = &current {
                if depth <= *d {
                    current = None;
                }
            }
            let name = || -> Option<String> {
                let v = entry.attr_value(gimli::DW_AT_name)?;
                Some(dwarf.attr_string(&unit, v).ok()?.to_string_lossy().into_owned())
            };
            if entry.tag() == gimli::DW_TAG_structure_type {
                if let Some(n) = name().filter(|n| wanted.contains(&n.as_str())) {
                    out.entry(n.clone()).or_default();
                    current = Some((n, depth));
                }
            } else if entry.tag() == gimli::DW_TAG_member {
                if let Some((s, d)) = &current {
                    if depth == d + 1 {
                        let off = match entry.attr_value(gimli::DW_AT_data_member_location) {
                            Some(gimli::AttributeValue::Udata(v)) => Some(v),
                            Some(gimli::AttributeValue::Data1(v)) => Some(v as u64),
                            Some(gimli::AttributeValue::Data2(v)) => Some(v as u64),
                            Some(gimli::AttributeValue::Data4(v)) => Some(v as u64),
                            Some(gimli::AttributeValue::Data8(v)) => Some(v),
                            Some(gimli::AttributeValue::Sdata(v)) => Some(v as u64),
                            _ => None,
                        };
                        if let (Some(field), Some(off)) = (name(), off) {
                            out.get_mut(s).unwrap().insert(field, off);
                        }
                    }
                }
            }
        }
    }
    out
}

/// The running test app and its line protocol.
struct App {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    pid: u32,
    layout: String,
}

impl App {
    fn start(bin: &Path) -> App {
        let mut child = Command::new(bin).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let f: Vec<&str> = line.split_whitespace().collect();
        assert!(f.len() == 3 && f[0] == "READY", "app said {line:?}");
        App { pid: f[1].parse().unwrap(), layout: f[2].to_string(), child, stdin, stdout }
    }

    /// Sends one command; returns the lines printed before DONE.
    fn command(&mut self, cmd: &str) -> Vec<String> {
        writeln!(self.stdin, "{cmd}").unwrap();
        self.stdin.flush().unwrap();
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            if self.stdout.read_line(&mut line).unwrap() == 0 {
                panic!("the app exited during {cmd:?}");
            }
            let line = line.trim_end().to_string();
            if line == "DONE" {
                return lines;
            }
            assert!(!line.starts_with("ERROR"), "app: {line}");
            lines.push(line);
        }
    }

    fn quit(mut self) {
        let _ = writeln!(self.stdin, "quit");
        let _ = self.child.wait();
    }
}

impl Drop for App {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
