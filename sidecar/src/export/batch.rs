//! The bounded span queue and the single tokio task that drains it.
//!
//! One FIFO queue holds the spans of all targets (capacity `OTEL_BSP_MAX_QUEUE_SIZE`);
//! a full queue drops the new span and counts it. The worker wakes when the schedule
//! delay elapses (exports everything queued at that moment) or when a full batch is
//! waiting (exports full batches), takes at most `max_export_batch_size` spans at a time,
//! groups them by target and hands each group to that target's sink, bounded by the
//! export timeout. Failed groups are dropped and counted; nothing is kept for later,
//! so memory is bounded by the queue plus one batch in flight whatever the collector
//! does. Drops are reported by a rate-limited `warn!` from the worker, never per span.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use opentelemetry_sdk::trace::SpanData;
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::time::Instant;

use super::config::BatchConfig;
use super::{ExportStats, Target};

/// At most one drop warning per this interval.
const DROP_WARN_INTERVAL: Duration = Duration::from_secs(10);

type Item = (Arc<Target>, SpanData);

/// State shared by the submitting threads and the worker.
#[derive(Debug)]
pub(crate) struct Shared {
    cfg: BatchConfig,
    queue: Mutex<VecDeque<Item>>,
    notify: Notify,
    /// Set by shutdown: later submissions are dropped (counted as export failures).
    closed: AtomicBool,
    /// Spans that entered the queue; each ends up in `exported` or `failed`.
    accepted: AtomicU64,
    exported: AtomicU64,
    /// Accepted spans whose export failed, timed out or was cut off by shutdown.
    failed: AtomicU64,
    /// Spans submitted after shutdown (reported as export failures).
    rejected_closed: AtomicU64,
    dropped_queue_full: AtomicU64,
}

impl Shared {
    pub(crate) fn new(cfg: BatchConfig) -> Shared {
        Shared {
            queue: Mutex::new(VecDeque::with_capacity(cfg.max_queue_size.min(4096))),
            cfg,
            notify: Notify::new(),
            closed: AtomicBool::new(false),
            accepted: AtomicU64::new(0),
            exported: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            rejected_closed: AtomicU64::new(0),
            dropped_queue_full: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, VecDeque<Item>> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Enqueues without blocking on anything but the short queue lock.
    pub(crate) fn submit(&self, target: &Arc<Target>, span: SpanData) {
        if self.closed.load(Ordering::Relaxed) {
            self.rejected_closed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let mut q = self.lock();
        if q.len() >= self.cfg.max_queue_size {
            drop(q);
            self.dropped_queue_full.fetch_add(1, Ordering::Relaxed);
            return;
        }
        q.push_back((Arc::clone(target), span));
        // Counted under the lock so the worker can never resolve a span not yet counted.
        self.accepted.fetch_add(1, Ordering::Relaxed);
        let len = q.len();
        drop(q);
        if len == self.cfg.max_export_batch_size {
            self.notify.notify_one();
        }
    }

    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
    }

    pub(crate) fn queue_len(&self) -> usize {
        self.lock().len()
    }

    #[cfg(test)]
    pub(crate) fn queue_capacity(&self) -> usize {
        self.lock().capacity()
    }

    /// A snapshot; `queued` = accepted spans not yet exported or dropped (in the queue
    /// or in the batch being exported).
    pub(crate) fn stats(&self) -> ExportStats {
        // Resolved counters first: `accepted` is read last, so `queued` never underflows
        // (it may be over-estimated by spans resolved during the read).
        let exported = self.exported.load(Ordering::Relaxed);
        let failed = self.failed.load(Ordering::Relaxed);
        let accepted = self.accepted.load(Ordering::Relaxed);
        ExportStats {
            queued: accepted.saturating_sub(exported + failed),
            exported,
            dropped_queue_full: self.dropped_queue_full.load(Ordering::Relaxed),
            dropped_export_failed: failed + self.rejected_closed.load(Ordering::Relaxed),
        }
    }

    /// Drops everything still queued or lost in flight as failed; returns how many.
    /// Only call when no export is running (worker finished or aborted).
    pub(crate) fn abandon_rest(&self) -> u64 {
        self.lock().clear();
        let accepted = self.accepted.load(Ordering::Relaxed);
        let resolved = self.exported.load(Ordering::Relaxed) + self.failed.load(Ordering::Relaxed);
        let rest = accepted.saturating_sub(resolved);
        self.failed.fetch_add(rest, Ordering::Relaxed);
        rest
    }

    fn take(&self, max: usize) -> Vec<Item> {
        let mut q = self.lock();
        let n = q.len().min(max);
        q.drain(..n).collect()
    }
}

/// Requests from the [`super::Exporter`] handle to the worker.
pub(crate) enum Control {
    /// Export everything queued, then stop; exports are cut off at `deadline`.
    Shutdown { deadline: Instant, done: oneshot::Sender<()> },
}

/// Rate limiter and bookkeeping for drop warnings (worker-local).
struct DropReporter {
    last_warn: Option<Instant>,
    reported_drops: u64,
    last_error: Option<String>,
}

impl DropReporter {
    fn new() -> DropReporter {
        DropReporter { last_warn: None, reported_drops: 0, last_error: None }
    }

    /// True when drops grew since the last warning and none was given in the interval.
    fn should_warn(&mut self, drops: u64, now: Instant) -> bool {
        if drops == self.reported_drops
            || self.last_warn.is_some_and(|t| now.saturating_duration_since(t) < DROP_WARN_INTERVAL)
        {
            return false;
        }
        self.last_warn = Some(now);
        self.reported_drops = drops;
        true
    }

    fn maybe_warn(&mut self, shared: &Shared) {
        let s = shared.stats();
        if !self.should_warn(s.dropped_queue_full + s.dropped_export_failed, Instant::now()) {
            return;
        }
        tracing::warn!(
            dropped_queue_full = s.dropped_queue_full,
            dropped_export_failed = s.dropped_export_failed,
            exported = s.exported,
            queued = s.queued,
            last_error = self.last_error.as_deref().unwrap_or("-"),
            "spans dropped (running totals; at most one such message per {}s)",
            DROP_WARN_INTERVAL.as_secs()
        );
    }
}

/// The worker: runs until shutdown or until every [`super::Exporter`] clone is gone.
pub(crate) async fn run(shared: Arc<Shared>, mut ctrl: mpsc::UnboundedReceiver<Control>) {
    let delay = shared.cfg.schedule_delay;
    let batch = shared.cfg.max_export_batch_size;
    let mut reporter = DropReporter::new();
    let mut next_tick = Instant::now() + delay;
    loop {
        // Control requests first, so a busy queue cannot starve shutdown.
        match ctrl.try_recv() {
            Ok(Control::Shutdown { deadline, done }) => {
                return final_flush(&shared, deadline, done, &mut reporter).await;
            }
            Err(mpsc::error::TryRecvError::Disconnected) => return,
            Err(mpsc::error::TryRecvError::Empty) => {}
        }
        let len = shared.queue_len();
        if len >= batch {
            // Only the full batches present now; partial remainders wait for the tick.
            drain(&shared, len - len % batch, None, &mut reporter).await;
            // Instant sinks (`none`) never yield on their own; stay a good neighbour.
            tokio::task::yield_now().await;
        } else {
            tokio::select! {
                biased;
                msg = ctrl.recv() => match msg {
                    Some(Control::Shutdown { deadline, done }) => {
                        return final_flush(&shared, deadline, done, &mut reporter).await;
                    }
                    None => return,
                },
                _ = tokio::time::sleep_until(next_tick) => {
                    let pending = shared.queue_len();
                    drain(&shared, pending, None, &mut reporter).await;
                    next_tick = Instant::now() + delay;
                }
                _ = shared.notify.notified() => {}
            }
        }
        reporter.maybe_warn(&shared);
    }
}

/// Exports everything queued (cut off at `deadline`), then reports completion.
async fn final_flush(shared: &Shared, deadline: Instant, done: oneshot::Sender<()>, reporter: &mut DropReporter) {
    let pending = shared.queue_len();
    drain(shared, pending, Some(deadline), reporter).await;
    let _ = done.send(());
}

/// Exports up to `count` spans from the head of the queue, one batch at a time. With a
/// `deadline`, spans not exported by then are dropped as failed.
async fn drain(shared: &Shared, mut count: usize, deadline: Option<Instant>, reporter: &mut DropReporter) {
    let batch = shared.cfg.max_export_batch_size;
    while count > 0 {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            let rest = shared.abandon_rest();
            if rest > 0 {
                reporter.last_error = Some("shutdown timeout reached".into());
                tracing::warn!(spans = rest, "shutdown timeout reached; dropping unexported spans");
            }
            return;
        }
        let items = shared.take(count.min(batch));
        if items.is_empty() {
            return;
        }
        count -= items.len();
        export_batch(shared, items, deadline, reporter).await;
        reporter.maybe_warn(shared);
    }
}

/// Groups one batch by target (keeping first-seen order) and exports each group.
async fn export_batch(shared: &Shared, items: Vec<Item>, deadline: Option<Instant>, reporter: &mut DropReporter) {
    let mut groups: Vec<(Arc<Target>, Vec<SpanData>)> = Vec::new();
    for (target, span) in items {
        match groups.iter_mut().find(|(t, _)| t.id == target.id) {
            Some((_, spans)) => spans.push(span),
            None => groups.push((target, vec![span])),
        }
    }
    for (target, spans) in groups {
        let n = spans.len() as u64;
        let mut limit = shared.cfg.export_timeout;
        if let Some(d) = deadline {
            limit = limit.min(d.saturating_duration_since(Instant::now()));
        }
        let result = if limit.is_zero() {
            Err("shutdown timeout reached before export".to_string())
        } else {
            match tokio::time::timeout(limit, target.sink.export(spans)).await {
                Ok(r) => r,
                Err(_) => Err(format!("export timed out after {}ms", limit.as_millis())),
            }
        };
        match result {
            Ok(()) => {
                shared.exported.fetch_add(n, Ordering::Relaxed);
            }
            Err(e) => {
                shared.failed.fetch_add(n, Ordering::Relaxed);
                tracing::debug!(target_id = target.id, spans = n, error = %e, "span export failed");
                reporter.last_error = Some(e);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drop_warnings_at_most_once_per_interval() {
        let mut r = DropReporter::new();
        let t0 = Instant::now();
        assert!(!r.should_warn(0, t0), "no drops, no warning");
        assert!(r.should_warn(5, t0));
        assert!(!r.should_warn(500, t0 + Duration::from_secs(1)));
        assert!(!r.should_warn(5_000, t0 + Duration::from_millis(9_999)));
        assert!(r.should_warn(5_000, t0 + Duration::from_secs(10)));
        assert!(!r.should_warn(5_000, t0 + Duration::from_secs(60)), "no new drops");
        assert!(r.should_warn(5_001, t0 + Duration::from_secs(61)));
    }
}
