//! Loading a probe's BPF object with its per-target globals and attaching its
//! uprobes to one process; detaching them, many at once.

use std::num::NonZeroU32;

use aya::maps::{MapData, PerCpuArray, RingBuf};
use aya::programs::uprobe::UProbeLink;
use aya::programs::uprobe::{UProbeAttachLocation, UProbeAttachPoint, UProbeScope};
use aya::programs::{BtfTracePoint, UProbe};
use aya::{Btf, Ebpf, EbpfLoader};

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
/// every uprobe still attached (one after the other) and unloads the programs;
/// [`AttachedProbe::take_links`] and [`detach_concurrently`] detach them at once.
pub struct AttachedProbe {
    pub spec: &'static ProbeSpec,
    /// Number of uprobes attached (entry + RET sites), for the start-up log.
    pub attach_points: usize,
    /// Spans end at kernel tracepoints ([`crate::KernelEnd`]), not RET probes.
    pub kernel_end: bool,
    ebpf: Ebpf,
    /// The ring buffer and its `reader_waiting` flag, until taken.
    events: Option<(RingBuf<MapData>, Option<aya::maps::Map>)>,
    /// One per uprobe; dropping one detaches it.
    links: Vec<UProbeLink>,
}

/// Detaches `links` on a few threads at once and returns when every one is gone.
/// Closing a uprobe's perf event waits for RCU grace periods (~100 ms per uprobe
/// measured on this project's VM, kernel 6.18), mostly under the kernel's
/// `event_mutex`, so closes largely run one after the other whatever the threads;
/// what runs outside the lock overlaps. A thread that cannot be spawned leaves its
/// links to this one.
pub fn detach_concurrently(links: Vec<UProbeLink>) {
    const THREADS: usize = 8;
    let mut shares: Vec<Vec<UProbeLink>> = (0..THREADS.min(links.len())).map(|_| Vec::new()).collect();
    for (i, link) in links.into_iter().enumerate() {
        let n = shares.len();
        shares[i % n].push(link);
    }
    std::thread::scope(|scope| {
        for share in shares {
            let builder = std::thread::Builder::new().name("gosight-detach".into());
            // On failure the closure, and with it the share, is dropped right here.
            if let Err(e) = builder.spawn_scoped(scope, move || drop(share)) {
                tracing::debug!("detach thread: {e}; detached on this one");
            }
        }
    });
}

impl AttachedProbe {
    /// Takes the event ring buffer out (once) as an async reader.
    pub fn take_events(&mut self) -> std::io::Result<EventReader> {
        let (rb, waiting) = self.events.take().ok_or_else(|| std::io::Error::other("events already taken"))?;
        EventReader::new(rb, waiting, self.spec.decode)
    }

    /// Takes the uprobe links out, to be detached with [`detach_concurrently`]
    /// (the programs stay loaded, and the counters readable, until the probe drops).
    pub fn take_links(&mut self) -> Vec<UProbeLink> {
        std::mem::take(&mut self.links)
    }

    /// Events the kernel side could not send because the ring buffer was full.
    pub fn lost(&self) -> u64 {
        self.counter("lost", 0)
    }

    /// Uprobe hits so far: (at entries, at RET sites). The first cost of a probe.
    pub fn hits(&self) -> (u64, u64) {
        (self.counter("hits", 0), self.counter("hits", 1))
    }

    /// What the [`crate::KernelEnd`] tracepoints did, by counter name (empty when
    /// spans end at RET probes).
    pub fn kernel_end_counts(&self) -> Vec<(&'static str, u64)> {
        match self.spec.kernel_end {
            Some(k) if self.kernel_end => {
                let (map, names) = k.counters;
                names.iter().zip(0..).map(|(n, i)| (*n, self.counter(map, i))).collect()
            }
            _ => Vec::new(),
        }
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
    let began = std::time::Instant::now();
    let mut loader = EbpfLoader::new();
    let btf_parsed = began.elapsed();
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
    // The loader holds a parsed kernel BTF (~15 MiB): gone before the tracepoints
    // below parse one of their own, so that two are never alive at once.
    drop(loader);
    let object_loaded = began.elapsed();

    let mut links = Vec::new();
    let verifying = std::cell::Cell::new(std::time::Duration::ZERO);
    for f in spec.functions {
        let Some(site) = inputs.functions.get(f.symbol) else {
            if f.need != crate::Need::Always {
                continue;
            }
            return Err(ProbeError::MissingFunction { probe, symbol: f.symbol });
        };
        if let Some(entry) = f.entry_program {
            attach(&mut ebpf, probe, entry, &[site.entry_offset], inputs, &mut links, &verifying)?;
        }
        if let Some(ret) = f.return_program.filter(|_| !inputs.kernel_end) {
            attach(&mut ebpf, probe, ret, &site.return_offsets, inputs, &mut links, &verifying)?;
        }
    }
    let kernel_end = match spec.kernel_end {
        Some(k) if inputs.kernel_end => {
            let btf = Btf::from_sys_fs().map_err(|e| ProbeError::Load { probe, source: e.into() })?;
            for &(program, tracepoint) in k.tracepoints {
                attach_tracepoint(&mut ebpf, probe, program, tracepoint, &btf)?;
            }
            true
        }
        _ => false,
    };

    tracing::debug!(
        pid = inputs.pid,
        probe,
        btf_parse_ms = ms(btf_parsed),
        maps_ms = ms(object_loaded - btf_parsed),
        verify_ms = ms(verifying.get()),
        uprobe_register_ms = ms(began.elapsed() - object_loaded - verifying.get()),
        uprobes = links.len(),
        "probe loaded"
    );
    let events =
        ebpf.take_map("events").ok_or(ProbeError::Map { probe, map: "events", reason: "not in the object".into() })?;
    let events =
        RingBuf::try_from(events).map_err(|e| ProbeError::Map { probe, map: "events", reason: e.to_string() })?;
    let waiting = ebpf.take_map("reader_waiting");
    Ok(AttachedProbe { spec, attach_points: links.len(), kernel_end, ebpf, events: Some((events, waiting)), links })
}

fn ms(d: std::time::Duration) -> f64 {
    (d.as_micros() as f64 / 1000.0 * 10.0).round() / 10.0
}

fn attach(
    ebpf: &mut Ebpf,
    probe: &'static str,
    program: &'static str,
    offsets: &[u64],
    inputs: &ProbeInputs,
    links: &mut Vec<UProbeLink>,
    verifying: &std::cell::Cell<std::time::Duration>,
) -> Result<(), ProbeError> {
    let err = |source| ProbeError::Program { probe, program, source };
    let pid = NonZeroU32::new(inputs.pid).expect("pid 0 is never a target");
    let prog: &mut UProbe = ebpf
        .program_mut(program)
        .ok_or(ProbeError::Map { probe, map: program, reason: "program not in the object".into() })?
        .try_into()
        .map_err(err)?;
    if prog.fd().is_err() {
        let began = std::time::Instant::now();
        prog.load().map_err(err)?;
        verifying.set(verifying.get() + began.elapsed());
    }
    for &off in offsets {
        let point = UProbeAttachPoint { location: UProbeAttachLocation::AbsoluteOffset(off), cookie: None };
        let id = prog.attach(point, &inputs.exe, UProbeScope::OneProcess(pid)).map_err(err)?;
        links.push(prog.take_link(id).map_err(err)?);
    }
    Ok(())
}

/// Loads `program` of `ebpf` as a BTF-typed raw tracepoint on `tracepoint` and
/// attaches it (the link lives as long as `ebpf`).
pub(crate) fn attach_tracepoint(
    ebpf: &mut Ebpf,
    probe: &'static str,
    program: &'static str,
    tracepoint: &str,
    btf: &Btf,
) -> Result<(), ProbeError> {
    let err = |source| ProbeError::Program { probe, program, source };
    let prog: &mut BtfTracePoint = ebpf
        .program_mut(program)
        .ok_or(ProbeError::Map { probe, map: program, reason: "program not in the object".into() })?
        .try_into()
        .map_err(err)?;
    prog.load(tracepoint, btf).map_err(err)?;
    prog.attach().map_err(err)?;
    Ok(())
}

impl std::fmt::Debug for AttachedProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttachedProbe").field("probe", &self.spec.name).finish()
    }
}

#[allow(dead_code)]
fn _assert_span_send(_: crate::ProbeSpan) {}
