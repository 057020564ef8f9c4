//! Stage 4 — attach the probes to one target, run its event loop, detach them.
//!
//! For each probe of `gosight-uprobes`: find its functions and RET sites, resolve
//! its field offsets, load and attach it, and spawn a task that turns its events
//! into spans for the exporter. A probe that cannot be set up stands down with one
//! log line; the target's other probes, and the other targets, keep running.
//! [`Session::start`] blocks (BPF verification, uprobe registration) and detaching
//! waits for the kernel (RCU grace periods): `sessions.rs` runs both off the
//! discovery loop.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use gosight_goexe::itabs::{self, Itab};
use gosight_goexe::{Arch, GoBinary};
use gosight_uprobes::{
    AttachedProbe, FunctionSite, Need, ProbeInputs, ProbeSpan, ProbeSpec, Sampling, TargetInfo, UProbeLink, ALL_PROBES,
};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::connections::enrich::SpanJoin;
use crate::discover::Target;
use crate::export::{Exporter, TargetHandle};
use crate::metrics::red::RedMetrics;
use crate::offsets::Resolver;
use crate::spans::{resource_for, SpanFactory};

/// What every session shares: where spans go and how probes are set up.
#[derive(Clone)]
pub struct Shared {
    pub factory: SpanFactory,
    pub exporter: Exporter,
    /// gosight's bpffs directory for maps shared between probes (None: no sharing).
    pub pin_dir: Option<PathBuf>,
    pub sampling: Sampling,
    /// Whether client probes hand `traceparent` headers to the in-kernel inserter.
    pub propagate: bool,
    /// Field offsets for binaries without DWARF.
    pub offsets_db: std::sync::Arc<gosight_offsets_db::Database>,
    /// The pod's live TCP connections, for joining spans (None: the socket probe is off).
    pub connections: Option<std::sync::Arc<SpanJoin>>,
    /// RED metrics from every span (None: metrics are off, and the probes send
    /// only sampled spans).
    pub red: Option<std::sync::Arc<RedMetrics>>,
}

/// Go type names of `error` values by runtime itab address, for `error.type`.
#[derive(Debug, Default)]
pub struct ErrorTypes(HashMap<u64, String>);

impl ErrorTypes {
    fn of(itabs: &[Itab], bias: u64) -> ErrorTypes {
        ErrorTypes(
            itabs.iter().filter(|i| i.interface == "error").map(|i| (i.address + bias, i.concrete.clone())).collect(),
        )
    }
}

impl TargetInfo for ErrorTypes {
    fn error_type(&self, itab: u64) -> Option<&str> {
        self.0.get(&itab).map(String::as_str)
    }
}

/// The binary's itab table (empty, with one log line, when it cannot be read).
fn itab_table(bin: &GoBinary, resolver: &Resolver, pid: u32) -> Vec<Itab> {
    match itabs::read(bin, &|s, f| resolver.offset(s, f)) {
        Ok(table) => table,
        Err(e) => {
            tracing::warn!(pid, "itab table unreadable ({e}): error.type falls back to _OTHER and type checks are off");
            Vec::new()
        }
    }
}

/// Everything gosight runs for one target process. Detaching its links
/// ([`Session::take_links`]) then [`Session::finish`] exports what its rings still
/// hold; dropping it detaches too, but drops what was not read yet.
pub struct Session {
    pub pid: u32,
    probes: Vec<RunningProbe>,
    export: TargetHandle,
    exporter: Exporter,
}

struct RunningProbe {
    /// The loaded probe; its uprobes detach when their links are taken and
    /// dropped ([`Session::take_links`]), or when it drops.
    attached: AttachedProbe,
    /// Reads the probe's ring until told to stop, then drains it once more.
    task: JoinHandle<()>,
    stop: Option<oneshot::Sender<()>>,
    reported_lost: u64,
}

/// Why no probe at all could be attached to a target.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("unsupported: {0}")]
    Unsupported(String),
    #[error("no probe could be attached")]
    NothingAttached,
}

impl Session {
    /// Attaches every probe that can be attached to `target`.
    pub fn start(target: &Target, shared: &Shared) -> Result<Session, SessionError> {
        let began = std::time::Instant::now();
        let pid = target.process.pid;
        let bin = &target.binary;
        check_supported(bin)?;
        let exporter = &shared.exporter;

        let resolver = Resolver::for_binary(bin, shared.offsets_db.clone());
        let bias = load_bias(bin, Path::new(&format!("/proc/{pid}")));
        let itabs = itab_table(bin, &resolver, pid);
        let errors = std::sync::Arc::new(ErrorTypes::of(&itabs, bias));
        tracing::debug!(pid, offsets_and_itabs_ms = began.elapsed().as_millis() as u64, "target inspected");
        let resource = resource_for(target);
        let service =
            resource.get(&opentelemetry::Key::new("service.name")).unwrap_or_else(|| "unknown_service".into());
        let export = exporter.register_target(resource);
        let mut probes = Vec::new();
        for spec in ALL_PROBES.iter().copied() {
            match prepare(spec, target, &resolver, &itabs, bias, shared).and_then(|inputs| load(spec, inputs, pid)) {
                Ok(mut attached) => {
                    let reader = match attached.take_events() {
                        Ok(r) => r,
                        Err(e) => {
                            tracing::warn!(pid, probe = spec.name, "probe stands down: event buffer: {e}");
                            continue;
                        }
                    };
                    tracing::info!(
                        pid,
                        probe = spec.name,
                        uprobes = attached.attach_points,
                        kernel_end = attached.kernel_end,
                        "probe attached"
                    );
                    let sink = EventSink {
                        factory: shared.factory.clone(),
                        exporter: exporter.clone(),
                        export: export.clone(),
                        errors: errors.clone(),
                        connections: shared.connections.clone(),
                        red: shared.red.clone(),
                        service: service.clone(),
                        pid,
                    };
                    let (stop, stopped) = oneshot::channel();
                    let task = tokio::spawn(run_events(reader, sink, pid, stopped));
                    probes.push(RunningProbe { attached, task, stop: Some(stop), reported_lost: 0 });
                }
                Err(reason) => tracing::warn!(pid, probe = spec.name, "probe stands down: {reason}"),
            }
        }
        if probes.is_empty() {
            exporter.release_target(&export);
            return Err(SessionError::NothingAttached);
        }
        let attach_ms = began.elapsed().as_millis() as u64;
        tracing::info!(pid, probes = probes.len(), attach_ms, "target attached");
        Ok(Session { pid, probes, export, exporter: exporter.clone() })
    }

    /// Takes out the links of every uprobe of the target (dropping one detaches
    /// it); then [`Session::finish`].
    pub fn take_links(&mut self) -> Vec<UProbeLink> {
        self.probes.iter_mut().flat_map(|p| p.attached.take_links()).collect()
    }

    /// Ends a session whose uprobes are detached, or whose process is gone: its
    /// readers drain the rings one last time (what the probes wrote becomes spans),
    /// hit counts are logged, and the programs unloaded.
    pub async fn finish(mut self) {
        self.report_lost();
        for p in &mut self.probes {
            if let Some(stop) = p.stop.take() {
                let _ = stop.send(());
            }
        }
        for p in &mut self.probes {
            let _ = (&mut p.task).await;
            let (entry, ret) = p.attached.hits();
            let ends: Vec<String> = p.attached.kernel_end_counts().iter().map(|(n, v)| format!("{n}={v}")).collect();
            tracing::info!(
                pid = self.pid,
                probe = p.attached.spec.name,
                entry_hits = entry,
                return_hits = ret,
                kernel_ends = %ends.join(" "),
                "probe detached"
            );
        }
    }

    /// Names of the probes attached to this target.
    pub fn probe_names(&self) -> Vec<&'static str> {
        self.probes.iter().map(|p| p.attached.spec.name).collect()
    }

    /// Logs events lost in the kernel (ring buffer full) since the last call.
    pub fn report_lost(&mut self) {
        for p in &mut self.probes {
            let lost = p.attached.lost();
            if lost > p.reported_lost {
                tracing::warn!(
                    pid = self.pid,
                    probe = p.attached.spec.name,
                    lost_total = lost,
                    "events lost: the ring buffer was full (spans for those requests are missing)"
                );
                p.reported_lost = lost;
            }
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // After `finish` the readers are done already; otherwise what they did not
        // read is lost with the ring.
        for p in &self.probes {
            p.task.abort();
        }
        // AttachedProbe's drop detaches what is still attached and unloads the programs.
        self.probes.clear();
        self.exporter.release_target(&self.export);
    }
}

/// Where one target's events become spans.
struct EventSink {
    factory: SpanFactory,
    exporter: Exporter,
    export: TargetHandle,
    errors: std::sync::Arc<ErrorTypes>,
    connections: Option<std::sync::Arc<SpanJoin>>,
    red: Option<std::sync::Arc<RedMetrics>>,
    /// The target's `service.name`, for its metric points.
    service: opentelemetry::Value,
    pid: u32,
}

impl EventSink {
    fn handle(&self, probe_span: ProbeSpan) {
        // Every span is counted; only sampled ones go on.
        if let Some(red) = &self.red {
            red.record(&probe_span, &self.service);
        }
        let (connection, window) = (probe_span.connection, (probe_span.start_ns, probe_span.end_ns));
        let Some(span) = self.factory.finish(probe_span) else { return };
        match &self.connections {
            Some(join) => join.submit(self.pid, connection, window, span, &self.exporter, &self.export),
            None => self.exporter.submit(&self.export, span),
        }
    }
}

/// Reads one probe's ring until `stop`, then reads what is left once more.
async fn run_events(
    mut reader: gosight_uprobes::EventReader,
    sink: EventSink,
    pid: u32,
    mut stop: oneshot::Receiver<()>,
) {
    loop {
        tokio::select! {
            // Dropping a pending `next_batch` loses nothing: it reads only once
            // the ring is readable, and then to the end without awaiting.
            res = reader.next_batch(sink.errors.as_ref(), |span| sink.handle(span)) => {
                if let Err(e) = res {
                    tracing::warn!(pid, "event reader stopped: {e}");
                    return;
                }
            }
            _ = &mut stop => {
                reader.drain(sink.errors.as_ref(), |span| sink.handle(span));
                return;
            }
        }
    }
}

fn check_supported(bin: &GoBinary) -> Result<(), SessionError> {
    let host = match std::env::consts::ARCH {
        "x86_64" => Arch::X86_64,
        "aarch64" => Arch::Aarch64,
        other => return Err(SessionError::Unsupported(format!("host architecture {other}"))),
    };
    if bin.arch != host {
        return Err(SessionError::Unsupported(format!("{:?} binary on a {:?} host", bin.arch, host)));
    }
    let v = &bin.build.go_version;
    if !v.devel && !v.at_least(1, 18) {
        return Err(SessionError::Unsupported(format!(
            "{v}: Go before 1.18 (gosight reads the register ABI and Go 1.18's build info and pclntab)"
        )));
    }
    Ok(())
}

/// Loads and attaches a prepared probe; when ending spans in the kernel fails (a
/// kernel without the tracepoints), once more with its RET probes, and one line.
fn load(spec: &'static ProbeSpec, mut inputs: ProbeInputs, pid: u32) -> Result<AttachedProbe, String> {
    match gosight_uprobes::load(spec, &inputs) {
        Err(e) if inputs.kernel_end => {
            tracing::warn!(pid, probe = spec.name, "two uprobe hits per span: ending spans in the kernel failed: {e}");
            inputs.kernel_end = false;
            inputs.settings.retain(|(name, _)| spec.kernel_end.is_none_or(|k| *name != k.setting));
            gosight_uprobes::load(spec, &inputs).map_err(|e| e.to_string())
        }
        other => other.map_err(|e| e.to_string()),
    }
}

/// Resolves one probe's spec against the target; Err is the one-line reason.
fn prepare(
    spec: &'static ProbeSpec,
    target: &Target,
    resolver: &Resolver,
    itabs: &[Itab],
    bias: u64,
    shared: &Shared,
) -> Result<ProbeInputs, String> {
    let bin = &target.binary;
    let pid = target.process.pid;
    // Each function may name alternatives (`a|b`) across library versions.
    // Functions only propagation needs are not attached when it is off; those
    // another function covers in this binary are not attached either.
    let has = |names: &[&str]| bin.functions(names).is_ok_and(|found| found.iter().any(Option::is_some));
    let wanted = spec.functions.iter().filter(|f| match f.need {
        Need::ForPropagation => shared.propagate,
        Need::UnlessOnly(types) => !types.are_the_only_ones(itabs.iter().map(|i| (&*i.concrete, &*i.interface))),
        Need::Unless(other) => !has(&[other]),
        Need::Alongside(others) => has(others),
        Need::Always | Need::IfPresent => true,
    });
    // The functions that rule out ending spans in the kernel are looked up too.
    let blockers = spec.kernel_end.map_or(&[][..], |k| k.ruled_out_by);
    let symbols: Vec<&str> =
        wanted.clone().flat_map(|f| f.symbol.split('|')).chain(blockers.iter().map(|(f, _)| *f)).collect();
    let mut found: HashMap<&str, gosight_goexe::Function> = symbols
        .iter()
        .copied()
        .zip(bin.functions(&symbols).map_err(|e| e.to_string())?)
        .filter_map(|(name, f)| Some((name, f?)))
        .collect();
    let mut functions = HashMap::new();
    for f in wanted {
        let Some(site) = f.symbol.split('|').find_map(|name| found.remove(name)) else {
            if f.need != Need::Always {
                tracing::debug!(pid, probe = spec.name, "function {} not in the binary (not needed)", f.symbol);
                continue;
            }
            return Err(format!("function {} not in the binary", f.symbol.replace('|', " or ")));
        };
        if f.return_program.is_some() && site.return_offsets.is_empty() {
            return Err(format!("no RET instruction found in {}", f.symbol));
        }
        // The entry probe goes on the jump after the stack check when there is one
        // (one trap instead of two, same registers: `gosight_goexe::entry_probe_offset`).
        let entry_offset = site.entry_probe_offset;
        functions.insert(f.symbol, FunctionSite { entry_offset, return_offsets: site.return_offsets });
    }
    if functions.is_empty() {
        return Err("none of its functions in the binary".into());
    }
    let fields = resolver.resolve(spec).map_err(|e| e.to_string())?;
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));
    let addresses: HashMap<&str, u64> = spec
        .addresses
        .iter()
        .map(|a| {
            let itab = itabs.iter().find(|i| i.concrete == a.concrete && i.interface == a.interface);
            (a.global, itab.map_or(0, |i| i.address + bias))
        })
        .collect();
    let kernel_end = spec.kernel_end.is_some_and(|k| {
        let host_is_amd64 = std::env::consts::ARCH == "x86_64";
        match k.ruled_out(host_is_amd64, &|f| found.contains_key(f), &fields, &addresses) {
            None => true,
            Some(why) => {
                tracing::info!(pid, probe = spec.name, "two uprobe hits per span: {why}");
                false
            }
        }
    });
    let one_hit = spec.kernel_end.filter(|_| kernel_end).map(|k| (k.setting, 1));
    Ok(ProbeInputs {
        pid,
        exe: proc_dir.join("exe"),
        fields,
        functions,
        addresses,
        pin_dir: shared.pin_dir.clone(),
        sampling: shared.sampling,
        settings: [("propagate", shared.propagate as u64), ("send_unsampled", shared.red.is_some() as u64)]
            .into_iter()
            .chain(one_hit)
            .chain((spec.derive)(&|strukt, field| resolver.offset(strukt, field)))
            .collect(),
        kernel_end,
    })
}

/// Where a position-independent executable was loaded (0 for fixed-address ones).
fn load_bias(bin: &GoBinary, proc_dir: &Path) -> u64 {
    let Some(first_vaddr) = bin.pie_first_load_vaddr() else { return 0 };
    let Ok(maps) = std::fs::read_to_string(proc_dir.join("maps")) else { return 0 };
    let exe = std::fs::read_link(proc_dir.join("exe")).unwrap_or_default();
    for line in maps.lines() {
        let cols: Vec<&str> = line.split_whitespace().collect();
        if cols.len() < 6 || Path::new(cols[5]) != exe || cols[2] != "00000000" {
            continue;
        }
        if let Some(start) = cols[0].split('-').next().and_then(|s| u64::from_str_radix(s, 16).ok()) {
            return start.wrapping_sub(first_vaddr & !0xfff);
        }
    }
    0
}
