//! Adds the connection a Go span's request travelled on to the span:
//! `network.peer.address`, `network.peer.port`, `network.transport`,
//! `network.type`. Each library says how its spans find their connection
//! ([`Connection`]); see [`super::table`] for the lookups.
//!
//! A span whose connection the table does not know yet (its OPEN record travels
//! through another ring buffer and may be read a moment after the span's record)
//! waits in one queue, [`SpanJoin`], retried by the socket probe's reader after each
//! batch of connection records and on a short timer — no task per span. After
//! [`MAX_WAIT_NS`] it goes out without the connection, counted.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use gosight_uprobes::socket::ConnRole;
use gosight_uprobes::Connection;
use opentelemetry_sdk::trace::SpanData;

use super::table::{network_attributes, ConnectionTable};
use crate::clock::monotonic_ns;
use crate::export::{Exporter, TargetHandle};

/// How long a span waits for its connection's record: both ring buffers are read
/// at least every `gosight_uprobes::ring::POLL_INTERVAL` (10 ms) under load.
pub const MAX_WAIT_NS: u64 = 50_000_000;

/// Joins a span of process `pid` (found by `connection`, between `start_ns` and
/// `end_ns`) to its connection, if the table knows it; false when it does not
/// (yet) or cannot.
pub fn enrich(
    table: &ConnectionTable,
    pid: u32,
    connection: Connection,
    (start_ns, end_ns): (u64, u64),
    span: &mut SpanData,
) -> bool {
    let remote = match connection {
        Connection::Unknown => return true, // nothing to look for: done
        Connection::Accepted(a) => table.confirm(pid, ConnRole::Server, a),
        Connection::Dialed(a) => table.confirm(pid, ConnRole::Client, a),
        Connection::DialedDuring { ip, port } => table.client_peer(pid, ip, port, start_ns, end_ns),
    };
    match remote {
        Some(r) => {
            span.attributes.extend(network_attributes(r));
            true
        }
        None => false,
    }
}

/// A span waiting for its connection's record, and where it goes after.
struct Waiting {
    since_ns: u64,
    pid: u32,
    connection: Connection,
    window: (u64, u64),
    span: SpanData,
    exporter: Exporter,
    export: TargetHandle,
}

/// The connection table and the spans waiting for a record of it.
pub struct SpanJoin {
    table: Arc<ConnectionTable>,
    waiting: Mutex<VecDeque<Waiting>>,
    /// Told when a span starts to wait in an empty queue: the socket reader, which
    /// retries the queue, may be asleep with no connection record coming.
    queued: tokio::sync::Notify,
    /// Spans that waited and found their connection.
    joined_late: AtomicU64,
    /// Spans sent without their connection after waiting [`MAX_WAIT_NS`].
    sent_without: AtomicU64,
}

impl SpanJoin {
    pub fn new(table: Arc<ConnectionTable>) -> SpanJoin {
        SpanJoin {
            table,
            waiting: Mutex::new(VecDeque::new()),
            queued: tokio::sync::Notify::new(),
            joined_late: AtomicU64::new(0),
            sent_without: AtomicU64::new(0),
        }
    }

    pub fn table(&self) -> &ConnectionTable {
        &self.table
    }

    /// Joins `span` and submits it, or queues it until its connection is known.
    pub fn submit(
        &self,
        pid: u32,
        connection: Connection,
        window: (u64, u64),
        mut span: SpanData,
        exporter: &Exporter,
        export: &TargetHandle,
    ) {
        if enrich(&self.table, pid, connection, window, &mut span) {
            exporter.submit(export, span);
            return;
        }
        let w = Waiting {
            since_ns: monotonic_ns(),
            pid,
            connection,
            window,
            span,
            exporter: exporter.clone(),
            export: export.clone(),
        };
        let mut waiting = self.lock();
        waiting.push_back(w);
        if waiting.len() == 1 {
            self.queued.notify_one();
        }
    }

    /// Resolves once a span has started to wait since the last call (a stored
    /// permit: a span queued before the call counts).
    pub async fn span_queued(&self) {
        self.queued.notified().await
    }

    /// Whether spans are waiting (the reader then retries on a timer).
    pub fn has_waiting(&self) -> bool {
        !self.lock().is_empty()
    }

    /// Retries every waiting span: joined ones are submitted, and so are those
    /// that waited `MAX_WAIT_NS` (counted); `now_ns` is monotonic.
    pub fn retry(&self, now_ns: u64) {
        let mut ready = Vec::new();
        {
            let mut q = self.lock();
            if q.is_empty() {
                return;
            }
            let mut keep = VecDeque::with_capacity(q.len());
            for mut w in q.drain(..) {
                if enrich(&self.table, w.pid, w.connection, w.window, &mut w.span) {
                    self.joined_late.fetch_add(1, Ordering::Relaxed);
                    ready.push(w);
                } else if now_ns.saturating_sub(w.since_ns) >= MAX_WAIT_NS {
                    self.sent_without.fetch_add(1, Ordering::Relaxed);
                    ready.push(w);
                } else {
                    keep.push_back(w);
                }
            }
            *q = keep;
        }
        for w in ready {
            w.exporter.submit(&w.export, w.span);
        }
    }

    /// Submits every waiting span as it is (at shutdown), counted as sent without.
    pub fn flush(&self) {
        self.retry(u64::MAX);
    }

    /// (joined after waiting, sent without their connection).
    pub fn counts(&self) -> (u64, u64) {
        (self.joined_late.load(Ordering::Relaxed), self.sent_without.load(Ordering::Relaxed))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Waiting>> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }
}
