//! The kernel socket probe's half in the sidecar: every TCP connection of the pod
//! (Go or not) — turned into connection metrics ([`metrics`]) and into the network
//! facts of the Go spans ([`table`], [`enrich`]).
//!
//! One socket probe per gosight, scoped to gosight's own network namespace (in a
//! pod: the pod's). Records lost in the kernel (ring buffer or connection map full)
//! are counted there and reported here, never dropped silently.

pub mod enrich;
pub mod metrics;
pub mod table;

use std::sync::Arc;
use std::time::Duration;

use gosight_uprobes::socket::{ConnEvent, ConnKind, ConnRole, SocketCounters, SocketProbe};
use opentelemetry::metrics::Meter;
use tokio::task::JoinHandle;

use crate::clock::monotonic_ns;
use enrich::SpanJoin;
use metrics::{ClosedConnection, ConnectionMetrics, Role};
use table::ConnectionTable;

/// The running socket probe, its reader task and the metrics it feeds.
pub struct Connections {
    probe: SocketProbe,
    join: Arc<SpanJoin>,
    task: JoinHandle<()>,
    reported: SocketCounters,
}

impl Connections {
    /// Starts the probe for gosight's own network namespace, its connection
    /// metrics made from `meter` (None: metrics are off); `None` (with one log
    /// line saying why) when the probe cannot run — spans are traced regardless.
    pub fn start(meter: Option<&Meter>) -> Option<Connections> {
        let netns = match gosight_uprobes::socket::own_netns_ino() {
            Ok(ino) => ino,
            Err(e) => {
                tracing::warn!("socket probe off: cannot read gosight's network namespace: {e}");
                return None;
            }
        };
        let mut probe = match SocketProbe::start(netns) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!("socket probe off: {e}");
                return None;
            }
        };
        if !probe.counts_bytes() {
            tracing::warn!("socket probe: this kernel has no sock_send_length/sock_recv_length tracepoints (6.3+): bytes are not counted");
        }
        let reader = match probe.take_events() {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("socket probe off: event buffer: {e}");
                return None;
            }
        };
        let metrics = meter.map(|m| Arc::new(ConnectionMetrics::new(m)));
        let join = Arc::new(SpanJoin::new(Arc::new(ConnectionTable::default())));
        let task = tokio::spawn(read_events(reader, join.clone(), metrics));
        tracing::info!(
            netns,
            metrics = meter.is_some(),
            "socket probe attached: TCP connections of this network namespace (tracepoints inet_sock_set_state, sock_send_length, sock_recv_length, tcp_destroy_sock)"
        );
        Some(Connections { probe, join, task, reported: SocketCounters::default() })
    }

    /// The live connections and the spans waiting for theirs.
    pub fn join(&self) -> Arc<SpanJoin> {
        self.join.clone()
    }

    /// Logs loss counted in the kernel since the last call.
    pub fn check(&mut self) {
        let c = self.probe.counters();
        if c.lost_records > self.reported.lost_records || c.untracked > self.reported.untracked {
            tracing::warn!(
                lost_records = c.lost_records,
                untracked = c.untracked,
                "socket probe: connection records lost (ring buffer or connection map full); counted, not silent"
            );
        }
        self.reported = c;
    }

    /// Sends the spans still waiting for their connection and logs what the probe
    /// saw and lost (the metrics pipeline's shutdown exports them a last time).
    pub fn shutdown(self) {
        self.join.flush();
        let (joined_late, sent_without) = self.join.counts();
        let c = self.probe.counters();
        tracing::info!(
            tracked = c.tracked,
            closed = c.closed,
            failed_connects = c.failed_connects,
            lost_records = c.lost_records,
            lost_open = c.lost_open,
            untracked = c.untracked,
            other_netns = c.other_netns,
            spans_joined_late = joined_late,
            spans_sent_without_connection = sent_without,
            "socket probe totals"
        );
        self.task.abort();
    }
}

/// Applies connection records to the table and metrics; after each batch, and
/// every few milliseconds while spans wait, retries the waiting spans.
async fn read_events(
    mut reader: gosight_uprobes::socket::ConnEventReader,
    join: Arc<SpanJoin>,
    metrics: Option<Arc<ConnectionMetrics>>,
) {
    const RETRY: Duration = Duration::from_millis(10);
    loop {
        let now = monotonic_ns();
        let mut ended = Vec::new();
        let batch = reader.next_batch(|e| {
            join.table().apply(&e, now);
            if let (ConnKind::Close, Some(_)) = (e.kind, &metrics) {
                ended.extend(closed(&e));
            }
        });
        tokio::select! {
            res = batch => {
                if let Err(e) = res {
                    tracing::warn!("socket probe reader stopped: {e}");
                    join.flush();
                    return;
                }
            }
            _ = tokio::time::sleep(RETRY), if join.has_waiting() => {}
            // A span started to wait while no record came: retry on the timer.
            _ = join.span_queued(), if !join.has_waiting() => {}
        }
        if let (Some(m), false) = (&metrics, ended.is_empty()) {
            m.record_all(&ended);
        }
        join.retry(monotonic_ns());
    }
}

/// A CLOSE record as metrics see it; none for a connection no process touched.
fn closed(e: &ConnEvent) -> Option<ClosedConnection> {
    if e.pid == 0 {
        return None;
    }
    Some(ClosedConnection {
        pid: e.pid,
        command: e.comm.clone(),
        role: match e.role {
            ConnRole::Client => Role::Client,
            ConnRole::Server => Role::Server,
        },
        local: e.local,
        remote: e.remote,
        bytes_sent: e.bytes_sent,
        bytes_received: e.bytes_received,
        duration: Duration::from_nanos(e.close_ns.saturating_sub(e.open_ns)),
        srtt: Duration::from_micros(u64::from(e.srtt_us)),
    })
}
