//! The `gosight` sidecar: wires the pipeline stages together and owns the process
//! lifecycle (start-up checks, the discovery loop, SIGTERM/SIGINT, the final flush).

use std::time::{Duration, Instant};

use clap::Parser;
use gosight::attach::Shared;
use gosight::clock::Clock;
use gosight::config::{log_filter, sampling_from, Config};
use gosight::connections::Connections;
use gosight::discover::{Change, Selector, Watcher};
use gosight::export::{ExportConfig, Exporter};
use gosight::metrics::red::RedMetrics;
use gosight::metrics::{MetricsExporter, MetricsPipeline};
use gosight::propagation::Propagation;
use gosight::sessions::Sessions;
use gosight::spans::SpanFactory;
use gosight_uprobes::exec_watch::ExecWatch;
use tokio::signal::unix::{signal, SignalKind};

fn main() -> std::process::ExitCode {
    let config = Config::parse();
    let filter = log_filter(std::env::var("RUST_LOG").ok(), std::env::var("OTEL_LOG_LEVEL").ok());
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(&filter).unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    bound_heap_retention();

    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(config: Config) -> anyhow::Result<()> {
    let started = Instant::now();
    let selector = Selector::from_config(&config)
        .map_err(|e| anyhow::anyhow!("invalid --target-exe / OTEL_GO_AUTO_TARGET_EXE pattern: {e}"))?;
    let export_config = ExportConfig::from_env()?;
    raise_memlock_limit();

    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        targets = %selector.describe(),
        exporter = %export_config.describe(),
        "gosight starting"
    );
    let exporter = Exporter::start(export_config)?;
    let clock = Clock::new();
    let _refresh = clock.spawn_refresh(config.clock_refresh);
    let sampling = sampling_from(
        std::env::var("OTEL_TRACES_SAMPLER").ok().as_deref(),
        std::env::var("OTEL_TRACES_SAMPLER_ARG").ok().as_deref(),
    )
    .unwrap_or_else(|e| {
        tracing::warn!("{e}; using parentbased_always_on");
        Default::default()
    });
    let mut propagation = Propagation::start(&config);
    let metrics = MetricsPipeline::from_env();
    let meter = metrics.as_ref().map(MetricsPipeline::meter);
    let red = meter.as_ref().map(|m| std::sync::Arc::new(RedMetrics::new(m)));
    tracing::info!(
        exporter = ?metrics.as_ref().map_or(MetricsExporter::None, MetricsPipeline::kind),
        "metrics: RED from every probe call{}",
        if red.is_some() { " (unsampled spans are sent to be counted, then dropped)" } else { " off" }
    );
    let mut connections = if config.socket_probe {
        Connections::start(meter.as_ref())
    } else {
        tracing::info!("socket probe off (GOSIGHT_SOCKET_PROBE=off)");
        None
    };
    let shared = Shared {
        factory: SpanFactory::new(clock),
        exporter: exporter.clone(),
        pin_dir: propagation.pin_dir(),
        sampling,
        propagate: propagation.inserting(),
        offsets_db: gosight::offsets::database::load(config.offsets_db.as_deref()),
        connections: connections.as_ref().map(Connections::join),
        red: red.clone(),
    };

    let mut watcher = Watcher::new(config.proc_root.clone(), selector);
    let mut execs = match ExecWatch::start() {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(
                interval_ms = config.scan_interval.as_millis() as u64,
                "new processes are found by the /proc scan alone: {e}"
            );
            None
        }
    };
    let mut last_poll = Instant::now();
    tracing::info!(start_up_ms = started.elapsed().as_millis() as u64, "watching for targets");
    let mut sessions = Sessions::new(shared);
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut scan = tokio::time::interval(config.scan_interval);
    scan.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_report = Instant::now();

    loop {
        tokio::select! {
            _ = scan.tick() => {}
            woken = exec_seen(&mut execs) => {
                if let Err(e) = woken {
                    tracing::warn!("exec wake-up stopped; new processes are found by the /proc scan alone: {e}");
                    execs = None;
                    continue;
                }
                // A burst of execs costs one scan per MIN_SCAN_GAP at most.
                let wait = MIN_SCAN_GAP.saturating_sub(last_poll.elapsed());
                tokio::time::sleep(wait).await;
            }
            started = sessions.next_started() => {
                let pid = started.pid;
                match started.result {
                    Ok(probes) => propagation.register(pid, &probes),
                    Err(e) => {
                        propagation.register(pid, &[]);
                        tracing::warn!(pid, exe = %started.exe.display(), "not tracing: {e}")
                    }
                }
                continue;
            }
            _ = sigterm.recv() => { tracing::info!("SIGTERM: detaching and flushing"); break; }
            _ = sigint.recv() => { tracing::info!("SIGINT: detaching and flushing"); break; }
        }
        last_poll = Instant::now();
        for change in watcher.poll() {
            match change {
                Change::Started(target) => {
                    let p = &target.process;
                    tracing::info!(pid = p.pid, exe = %p.exe.display(), go = %target.binary.build.go_version, "target found");
                    // Registered before its probes attach, so that no connection it
                    // opens once they run goes untagged.
                    propagation.register_early(p.pid);
                    sessions.start(target);
                }
                Change::Exited(p) => {
                    propagation.unregister(p.pid);
                    if sessions.exited(p.pid) {
                        tracing::info!(pid = p.pid, exe = %p.exe.display(), "target exited; releasing its probes");
                    }
                }
            }
        }
        sessions.detach_exited();
        if last_report.elapsed() >= Duration::from_secs(10) {
            sessions.report_lost();
            propagation.check();
            if let Some(c) = connections.as_mut() {
                c.check();
            }
            last_report = Instant::now();
        }
    }

    // Every running target's uprobes detached at once, then what the rings hold is
    // read (exited targets' spans were read as they exited); the export totals stay
    // the last line, after exited targets' queued detaches.
    let backlog = sessions.shutdown().await;
    backlog.wait().await;
    propagation.report();
    drop(propagation);
    if let Some(c) = connections {
        c.shutdown();
    }
    if let Some(r) = &red {
        r.report_totals();
    }
    if let Some(m) = &metrics {
        m.shutdown();
    }
    exporter.shutdown(config.shutdown_timeout).await;
    Ok(())
}

/// The shortest time between two `/proc` scans that execs trigger.
const MIN_SCAN_GAP: Duration = Duration::from_millis(25);

/// Waits for a process of gosight's pid namespace to exec (never, without the hook).
async fn exec_seen(execs: &mut Option<ExecWatch>) -> std::io::Result<usize> {
    match execs {
        Some(w) => w.next().await,
        None => std::future::pending().await,
    }
}

/// glibc's malloc keeps freed memory by default in ways that cost a sidecar tens of
/// MiB for good: its mmap threshold grows to the largest block freed (aya parses the
/// kernel BTF, a 5 MiB file and ~15 MiB of types, for every object loaded), after which
/// such transient blocks come from the heap and stay; and each thread may get an arena
/// of its own. Fixed thresholds give large blocks and a free heap top back at once.
fn bound_heap_retention() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // glibc's initial value, kept fixed.
        const THRESHOLD: libc::c_int = 128 * 1024;
        // SAFETY: mallopt only sets malloc parameters; called before any other thread exists.
        let ok = unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, THRESHOLD) == 1
                && libc::mallopt(libc::M_TRIM_THRESHOLD, THRESHOLD) == 1
                && libc::mallopt(libc::M_ARENA_MAX, 2) == 1
        };
        if !ok {
            tracing::warn!("mallopt refused a setting: freed memory may be kept longer");
        }
    }
}

/// Kernels before 5.11 charge BPF maps to RLIMIT_MEMLOCK; lift it where allowed.
fn raise_memlock_limit() {
    let unlimited = libc::rlimit { rlim_cur: libc::RLIM_INFINITY, rlim_max: libc::RLIM_INFINITY };
    // SAFETY: plain syscall with a valid struct.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) } != 0 {
        tracing::debug!("could not raise RLIMIT_MEMLOCK (fine on kernels >= 5.11)");
    }
}
