//! Export stage: a bounded, counted queue in front of the OTLP / console exporters.
//!
//! Spans arrive as finished [`SpanData`] (ids and wall-clock times already set) tagged
//! with the [`TargetHandle`] of the process they came from. Each target has its own
//! [`Resource`] and therefore its own exporter instance (`set_resource` is per
//! exporter in opentelemetry 0.33); a pod runs few processes, so that is cheap.
//!
//! We deliberately do not use the SDK's `BatchSpanProcessor`: it has one resource per
//! tracer provider, and its background thread panics with the async reqwest client.
//! Instead [`batch`] runs one tokio task over one bounded queue shared by all targets.
//!
//! ```text
//! let cfg = ExportConfig::from_env()?;
//! tracing::info!("export: {}", cfg.describe());
//! let exporter = Exporter::start(cfg)?;            // inside a tokio runtime
//! let target = exporter.register_target(resource);
//! exporter.submit(&target, span);                   // never blocks
//! exporter.release_target(&target);                 // process exited
//! exporter.shutdown(Duration::from_secs(5)).await;  // flush + final stats log
//! ```

mod batch;
mod config;
mod console;
mod otlp_env;
mod sink;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use opentelemetry_sdk::trace::SpanData;
use opentelemetry_sdk::Resource;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

pub use config::{BatchConfig, ExportConfig, ExporterKind, OtlpConfig};
pub(crate) use otlp_env::parse_protocol;
pub use otlp_env::OtlpProtocol;

use batch::{Control, Shared};
use sink::Sink;

/// Counters of the export stage (cumulative except `queued`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExportStats {
    /// Spans accepted and not yet exported or dropped (in the queue or being exported).
    pub queued: u64,
    /// Spans the exporter accepted (for `none`: discarded as intended).
    pub exported: u64,
    /// Spans dropped on submit because the queue was full.
    pub dropped_queue_full: u64,
    /// Spans dropped because their export failed or timed out (after retries), because
    /// shutdown ran out of time, or because they were submitted after shutdown.
    pub dropped_export_failed: u64,
}

/// One target process: its resource and its exporter instance.
#[derive(Debug)]
pub(crate) struct Target {
    pub(crate) id: u64,
    pub(crate) resource: Resource,
    pub(crate) sink: Sink,
}

/// Identifies one target's [`Resource`]; cheap to clone.
#[derive(Debug, Clone)]
pub struct TargetHandle {
    target: Arc<Target>,
}

impl TargetHandle {
    /// Process-unique id of this registration (for logs).
    pub fn id(&self) -> u64 {
        self.target.id
    }

    /// The resource this target's spans are exported with.
    pub fn resource(&self) -> &Resource {
        &self.target.resource
    }
}

/// The export stage; clones share one queue and one worker task.
#[derive(Debug, Clone)]
pub struct Exporter {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    cfg: ExportConfig,
    shared: Arc<Shared>,
    ctrl: mpsc::UnboundedSender<Control>,
    worker: Mutex<Option<JoinHandle<()>>>,
    targets: Mutex<HashMap<u64, Arc<Target>>>,
    next_id: AtomicU64,
    runtime: tokio::runtime::Handle,
    shut_down: AtomicBool,
}

impl Exporter {
    /// Validates the exporter settings (an OTLP exporter is built once as a probe) and
    /// spawns the worker task. Must be called inside a tokio runtime.
    pub fn start(cfg: ExportConfig) -> anyhow::Result<Exporter> {
        let runtime =
            tokio::runtime::Handle::try_current().context("Exporter::start must be called inside a tokio runtime")?;
        Sink::build(&cfg, &Resource::builder_empty().build()).context("invalid span exporter configuration")?;
        let shared = Arc::new(Shared::new(cfg.batch.clone()));
        let (ctrl, ctrl_rx) = mpsc::unbounded_channel();
        let worker = runtime.spawn(batch::run(Arc::clone(&shared), ctrl_rx));
        Ok(Exporter {
            inner: Arc::new(Inner {
                cfg,
                shared,
                ctrl,
                worker: Mutex::new(Some(worker)),
                targets: Mutex::new(HashMap::new()),
                next_id: AtomicU64::new(1),
                runtime,
                shut_down: AtomicBool::new(false),
            }),
        })
    }

    /// The configuration this exporter runs with.
    pub fn config(&self) -> &ExportConfig {
        &self.inner.cfg
    }

    /// Creates the exporter instance for one target. Never fails: if the exporter
    /// cannot be built, the error is logged and the target's spans are counted as
    /// failed exports.
    pub fn register_target(&self, resource: Resource) -> TargetHandle {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let sink = {
            // tonic channels and the reqwest client need the runtime's context.
            let _guard = self.inner.runtime.enter();
            Sink::build(&self.inner.cfg, &resource).unwrap_or_else(|e| {
                tracing::warn!(target_id = id, "cannot build span exporter for target: {e:#}");
                Sink::Broken(format!("{e:#}"))
            })
        };
        let target = Arc::new(Target { id, resource, sink });
        lock(&self.inner.targets).insert(id, Arc::clone(&target));
        tracing::debug!(target_id = id, "export target registered");
        TargetHandle { target }
    }

    /// The target exited: its queued spans are still exported, after which the
    /// exporter instance is dropped (it lives as long as queued spans or handles refer
    /// to it). Spans submitted for it later are still exported with its resource.
    pub fn release_target(&self, t: &TargetHandle) {
        if lock(&self.inner.targets).remove(&t.target.id).is_some() {
            tracing::debug!(target_id = t.target.id, "export target released");
        }
    }

    /// Queues one span; never blocks or awaits. A full queue drops the span (counted).
    pub fn submit(&self, t: &TargetHandle, span: SpanData) {
        self.inner.shared.submit(&t.target, span);
    }

    /// Current counters.
    pub fn stats(&self) -> ExportStats {
        self.inner.shared.stats()
    }

    /// Stops accepting spans, exports everything queued within `timeout` (the rest is
    /// dropped and counted), shuts the exporters down and logs the final counters.
    /// Later calls return at once.
    pub async fn shutdown(&self, timeout: Duration) {
        let inner = &self.inner;
        if inner.shut_down.swap(true, Ordering::SeqCst) {
            return;
        }
        inner.shared.close();
        let deadline = tokio::time::Instant::now() + timeout;
        let (done, done_rx) = oneshot::channel();
        let worker = lock(&inner.worker).take();
        if inner.ctrl.send(Control::Shutdown { deadline, done }).is_ok() {
            // A little grace past the deadline: the worker cuts its exports off itself.
            let grace = deadline + Duration::from_millis(250);
            if tokio::time::timeout_at(grace, done_rx).await.is_err() {
                tracing::warn!("span export worker did not finish in time; aborting it");
                if let Some(w) = &worker {
                    w.abort();
                }
            }
        }
        if let Some(w) = worker {
            let _ = tokio::time::timeout(Duration::from_secs(1), w).await;
        }
        let lost = inner.shared.abandon_rest();
        if lost > 0 {
            tracing::warn!(spans = lost, "spans still queued at shutdown were dropped");
        }
        let targets: Vec<Arc<Target>> = lock(&inner.targets).drain().map(|(_, t)| t).collect();
        for t in targets {
            t.sink.shutdown();
        }
        let s = self.stats();
        tracing::info!(
            exported = s.exported,
            dropped_queue_full = s.dropped_queue_full,
            dropped_export_failed = s.dropped_export_failed,
            "span export shut down"
        );
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
