//! Loading a probe's BPF object with its per-target globals and attaching its
//! uprobes to one process.

use std::num::NonZeroU32;

use aya::maps::{MapData, PerCpuArray, RingBuf};
use aya::programs::uprobe::{UProbeAttachLocation, UProbeAttachPoint, UProbeScope};
use aya::programs::UProbe;
use aya::{Ebpf, EbpfLoader};

use crate::{EventReader, ProbeInputs, ProbeSpec};

/// Why a probe could not be loaded or attached (one line each).
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("probe {probe}: no site for function {symbol}")]
    MissingFunction { probe: &'static str, symbol: &'static str },
    #[error("probe {probe}: no offset for {global}")]
    MissingField { probe: &'static str, global: &'static str },
    #[error("probe {probe}: loading the BPF object failed: {}", brief(source))]
    Load { probe: &'static str, source: aya::EbpfError },
    #[error("probe {probe}: program {program}: {}", brief(source))]
    Program { probe: &'static str, program: &'static str, source: aya::programs::ProgramError },
    #[error("probe {probe}: map {map}: {reason}")]
    Map { probe: &'static str, map: &'static str, reason: String },
}

/// An error on one line: a verifier log (thousands of lines) is cut to its verdict,
/// the last lines, which say why the program was refused.
fn brief(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text = format!("{text}: {s}");
        source = s.source();
    }
    match text.split_once("Verifier output:") {
        Some((head, log)) => {
            let tail: Vec<&str> = log.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
            let tail = tail[tail.len().saturating_sub(3)..].join(" | ");
            format!("{} verifier: {tail}", head.trim_end())
        }
        None => text.replace('\n', " "),
    }
}

/// A loaded probe with its uprobes attached to one process. Dropping it detaches
/// every uprobe and unloads the programs.
pub struct AttachedProbe {
    pub spec: &'static ProbeSpec,
    /// Number of uprobes attached (entry + RET sites), for the start-up log.
    pub attach_points: usize,
    ebpf: Ebpf,
    /// The ring buffer and its `reader_waiting` flag, until taken.
    events: Option<(RingBuf<MapData>, Option<aya::maps::Map>)>,
}

impl AttachedProbe {
    /// Takes the event ring buffer out (once) as an async reader.
    pub fn take_events(&mut self) -> std::io::Result<EventReader> {
        let (rb, waiting) = self.events.take().ok_or_else(|| std::io::Error::other("events already taken"))?;
        EventReader::new(rb, waiting, self.spec.decode)
    }

    /// Events the kernel side could not send because the ring buffer was full.
    pub fn lost(&self) -> u64 {
        self.counter("lost", 0)
    }

    /// Uprobe hits so far: (at entries, at RET sites). The first cost of a probe.
    pub fn hits(&self) -> (u64, u64) {
        (self.counter("hits", 0), self.counter("hits", 1))
    }

    fn counter(&self, map: &str, index: u32) -> u64 {
        percpu_sum(&self.ebpf, map, index)
    }
}

/// Sum over CPUs of slot `index` of a per-CPU `u64` array (the probes' counters);
/// 0 when the map is missing or unreadable.
pub(crate) fn percpu_sum(ebpf: &Ebpf, map: &str, index: u32) -> u64 {
    let Some(map) = ebpf.map(map) else { return 0 };
    let Ok(arr) = PerCpuArray::<_, u64>::try_from(map) else { return 0 };
    arr.get(&index, 0).map(|v| v.iter().sum()).unwrap_or(0)
}

/// Loads `spec` with `inputs` and attaches it to `inputs.pid`.
pub fn load(spec: &'static ProbeSpec, inputs: &ProbeInputs) -> Result<AttachedProbe, ProbeError> {
    let probe = spec.name;
    let mut globals: Vec<(&'static str, u64)> = Vec::new();
    for f in spec.all_fields() {
        let v = *inputs.fields.get(f.global).ok_or(ProbeError::MissingField { probe, global: f.global })?;
        globals.push((f.global, v));
    }
    for a in spec.addresses {
        globals.push((a.global, inputs.addresses.get(a.global).copied().unwrap_or(0)));
    }

    let sampling = inputs.sampling.globals();
    let pins: Vec<(&'static str, std::path::PathBuf)> = match &inputs.pin_dir {
        Some(dir) => crate::SHARED_MAPS.iter().map(|m| (*m, dir.join(m))).collect(),
        None => Vec::new(),
    };
    let mut loader = EbpfLoader::new();
    for (name, value) in &globals {
        loader.override_global(name, value, true);
    }
    for (name, value) in sampling.iter().chain(&inputs.settings) {
        loader.override_global(name, value, false);
    }
    for (name, path) in &pins {
        loader.map_pin_path(name, path.as_path());
    }
    let mut ebpf = match &inputs.pin_dir {
        Some(dir) => crate::bpffs::while_pinned(dir, || loader.load(spec.object)),
        None => loader.load(spec.object),
    }
    .map_err(|source| ProbeError::Load { probe, source })?;

    let pid = NonZeroU32::new(inputs.pid).expect("pid 0 is never a target");
    let mut attach_points = 0;
    for f in spec.functions {
        let Some(site) = inputs.functions.get(f.symbol) else {
            if f.need != crate::Need::Always {
                continue;
            }
            return Err(ProbeError::MissingFunction { probe, symbol: f.symbol });
        };
        if let Some(entry) = f.entry_program {
            attach_points += attach(&mut ebpf, probe, entry, &[site.entry_offset], inputs, pid)?;
        }
        if let Some(ret) = f.return_program {
            attach_points += attach(&mut ebpf, probe, ret, &site.return_offsets, inputs, pid)?;
        }
    }

    let events =
        ebpf.take_map("events").ok_or(ProbeError::Map { probe, map: "events", reason: "not in the object".into() })?;
    let events =
        RingBuf::try_from(events).map_err(|e| ProbeError::Map { probe, map: "events", reason: e.to_string() })?;
    let waiting = ebpf.take_map("reader_waiting");
    Ok(AttachedProbe { spec, attach_points, ebpf, events: Some((events, waiting)) })
}

fn attach(
    ebpf: &mut Ebpf,
    probe: &'static str,
    program: &'static str,
    offsets: &[u64],
    inputs: &ProbeInputs,
    pid: NonZeroU32,
) -> Result<usize, ProbeError> {
    let err = |source| ProbeError::Program { probe, program, source };
    let prog: &mut UProbe = ebpf
        .program_mut(program)
        .ok_or(ProbeError::Map { probe, map: program, reason: "program not in the object".into() })?
        .try_into()
        .map_err(err)?;
    if prog.fd().is_err() {
        prog.load().map_err(err)?;
    }
    for &off in offsets {
        let point = UProbeAttachPoint { location: UProbeAttachLocation::AbsoluteOffset(off), cookie: None };
        prog.attach(point, &inputs.exe, UProbeScope::OneProcess(pid)).map_err(err)?;
    }
    Ok(offsets.len())
}

impl std::fmt::Debug for AttachedProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttachedProbe").field("probe", &self.spec.name).finish()
    }
}

#[allow(dead_code)]
fn _assert_span_send(_: crate::ProbeSpan) {}
