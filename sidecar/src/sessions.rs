//! The sessions of every target, started and stopped off the discovery loop.
//!
//! Where the time goes (measured on this project's VM, kernel 6.18, see
//! ARCHITECTURE.md "Lifecycle"): attaching a target takes ~100–150 ms of blocking
//! work (kernel BTF parse, BPF verification, uprobe registration); detaching takes
//! ~100 ms *per uprobe*, because closing a uprobe's perf event waits for RCU grace
//! periods while holding the kernel's `event_mutex` — which every uprobe
//! registration needs too. So:
//! - starts run on blocking threads, at most one per CPU at a time (more would
//!   only share the CPUs and multiply the memory each load takes);
//! - detaching runs in the background, one uprobe at a time and only while no
//!   start is waiting, so a new target waits at most for the one uprobe being
//!   detached (an exited process's uprobes cannot fire: they only hold memory
//!   meanwhile). Its rings are drained into the exporter first, as it exits.
//! - at shutdown every running target's uprobes are detached at once, then the
//!   rings are drained; exited targets' detaches still queued are awaited, then
//!   the export queue is flushed.
//!
//! A target's pid may be reused as soon as it exits: each start carries a ticket,
//! and a start that finishes after its target exited (or after its pid became
//! another process) is detached and never reported as started.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::{JoinHandle, JoinSet};

use gosight_uprobes::UProbeLink;

use crate::attach::{Session, SessionError, Shared};
use crate::discover::Target;

/// A start that finished for a target that is still running.
pub struct Started {
    pub pid: u32,
    pub exe: std::path::PathBuf,
    pub result: Result<Vec<&'static str>, SessionError>,
}

type StartOutcome = (u32, u64, std::path::PathBuf, Result<Session, SessionError>);

/// Every target's session: attached, being attached, being detached.
pub struct Sessions {
    shared: Arc<Shared>,
    attached: HashMap<u32, Session>,
    /// Pid → ticket of the start in flight for the process that has it now.
    starting: HashMap<u32, u64>,
    next_ticket: u64,
    starts: JoinSet<Option<StartOutcome>>,
    /// Starts allowed to run at once.
    slots: Arc<Semaphore>,
    /// Starts not finished yet (detaching waits while there are any).
    in_flight: watch::Sender<usize>,
    /// Sessions of targets that exited in this round of changes, queued for
    /// detaching by [`Sessions::detach_exited`] once the round's starts are counted.
    exited: Vec<Session>,
    /// Uprobe links of targets that exited, by pid (their spans are read already).
    detach_queue: mpsc::UnboundedSender<(u32, Vec<UProbeLink>)>,
    detacher: JoinHandle<()>,
}

impl Sessions {
    pub fn new(shared: Shared) -> Sessions {
        let cpus = std::thread::available_parallelism().map_or(2, usize::from);
        let (in_flight, idle) = watch::channel(0);
        let (detach_queue, queue) = mpsc::unbounded_channel();
        Sessions {
            shared: Arc::new(shared),
            attached: HashMap::new(),
            starting: HashMap::new(),
            next_ticket: 0,
            starts: JoinSet::new(),
            slots: Arc::new(Semaphore::new(cpus.max(1))),
            in_flight,
            exited: Vec::new(),
            detach_queue,
            detacher: tokio::spawn(detach_in_turn(queue, idle)),
        }
    }

    /// Starts attaching `target` on a blocking thread; [`Sessions::next_started`]
    /// says when it is done.
    pub fn start(&mut self, target: Target) {
        let pid = target.process.pid;
        self.next_ticket += 1;
        let ticket = self.next_ticket;
        self.starting.insert(pid, ticket);
        self.in_flight.send_modify(|n| *n += 1);
        let (shared, slots) = (self.shared.clone(), self.slots.clone());
        self.starts.spawn(async move {
            // Closed at shutdown: starts still waiting for a slot do not begin.
            let _slot = slots.acquire_owned().await.ok()?;
            let exe = target.process.exe.clone();
            match tokio::task::spawn_blocking(move || Session::start(&target, &shared)).await {
                Ok(r) => Some((pid, ticket, exe, r)),
                Err(e) => {
                    tracing::warn!(pid, "attaching: {e}");
                    None
                }
            }
        });
    }

    /// The target `pid` exited: its session, if attached, is detached in the
    /// background after [`Sessions::detach_exited`]; a start in flight is detached
    /// when it finishes. Returns whether it was attached.
    pub fn exited(&mut self, pid: u32) -> bool {
        self.starting.remove(&pid);
        match self.attached.remove(&pid) {
            Some(session) => {
                self.exited.push(session);
                true
            }
            None => false,
        }
    }

    /// Hands the sessions of the targets that exited to the detacher; called after
    /// a round of changes, so that it sees the round's starts first and lets them
    /// register their uprobes before it takes the kernel's lock.
    pub fn detach_exited(&mut self) {
        for session in std::mem::take(&mut self.exited) {
            self.detach_later(session);
        }
    }

    /// The session of a process that is gone: nothing more can reach its rings, so
    /// its spans go out now; its uprobes' slow detach (~100 ms each) is queued.
    fn detach_later(&self, mut session: Session) {
        let (pid, links) = (session.pid, session.take_links());
        tokio::spawn(session.finish());
        if let Err(mpsc::error::SendError((_, links))) = self.detach_queue.send((pid, links)) {
            drop(links); // the detacher is gone (it never ends before shutdown): detach here
        }
    }

    /// Waits for the next start of a still-running target to finish (pending
    /// forever when none is in flight, for `select!`).
    pub async fn next_started(&mut self) -> Started {
        loop {
            let Some(joined) = self.starts.join_next().await else { return std::future::pending().await };
            self.in_flight.send_modify(|n| *n = n.saturating_sub(1));
            if *self.in_flight.borrow() == 0 {
                give_back_memory();
            }
            let Ok(Some((pid, ticket, exe, result))) = joined else { continue };
            if self.starting.get(&pid) != Some(&ticket) {
                // Exited while attaching (and the pid perhaps reused since).
                if let Ok(session) = result {
                    tracing::info!(pid, "target exited while attaching; detaching");
                    self.detach_later(session);
                }
                continue;
            }
            self.starting.remove(&pid);
            let result = result.map(|session| {
                let names = session.probe_names();
                self.attached.insert(pid, session);
                names
            });
            return Started { pid, exe, result };
        }
    }

    /// Logs events lost in the kernel since the last call, per attached target.
    pub fn report_lost(&mut self) {
        self.attached.values_mut().for_each(Session::report_lost);
    }

    /// Detaches everything for shutdown: starts not begun are dropped, starts
    /// running are awaited, then every uprobe of every running target is detached at
    /// once and the rings are drained into the exporter. Exited targets still queued
    /// for detaching go on in the background: the returned [`Backlog`].
    pub async fn shutdown(mut self) -> Backlog {
        self.slots.close();
        self.detach_exited();
        let mut sessions: Vec<Session> = self.attached.drain().map(|(_, s)| s).collect();
        while let Some(joined) = self.starts.join_next().await {
            if let Ok(Some((_, _, _, Ok(session)))) = joined {
                sessions.push(session);
            }
        }
        // The detacher stops waiting for starts and works through its queue
        // beside the detach below.
        let (in_flight, detach_queue, detacher) = (self.in_flight, self.detach_queue, self.detacher);
        drop((in_flight, detach_queue));
        let links: Vec<_> = sessions.iter_mut().flat_map(Session::take_links).collect();
        let (began, uprobes, targets) = (Instant::now(), links.len(), sessions.len());
        if let Err(e) = tokio::task::spawn_blocking(move || gosight_uprobes::detach_concurrently(links)).await {
            tracing::warn!("detaching: {e}");
        }
        let detach_ms = began.elapsed().as_millis() as u64;
        let mut finishing = JoinSet::new();
        for session in sessions {
            finishing.spawn(session.finish());
        }
        while finishing.join_next().await.is_some() {}
        tracing::info!(targets, uprobes, detach_ms, "all running targets detached");
        // Exited targets still queued have had their spans read already
        // (`detach_in_turn`); what is left is their uprobes' slow detach, which the
        // caller awaits.
        Backlog(detacher)
    }
}

/// Detaches exited targets' uprobes one at a time, each only while no start is in
/// flight (`idle` reads 0). Once `idle`'s sender is gone
/// (shutdown) it no longer waits, and it ends when the queue is closed and empty.
async fn detach_in_turn(mut queue: mpsc::UnboundedReceiver<(u32, Vec<UProbeLink>)>, mut idle: watch::Receiver<usize>) {
    while let Some((pid, links)) = queue.recv().await {
        let began = Instant::now();
        for link in links {
            let _ = idle.wait_for(|starts| *starts == 0).await;
            if let Err(e) = tokio::task::spawn_blocking(move || drop(link)).await {
                tracing::warn!(pid, "detaching: {e}");
            }
        }
        let detach_ms = began.elapsed().as_millis() as u64;
        give_back_memory();
        tracing::info!(pid, detach_ms, "target detached");
    }
}

/// Returns freed heap to the kernel. A load's transient allocations (the parsed
/// kernel BTF alone is ~18 MiB) are freed on blocking threads, whose malloc arenas
/// would otherwise keep them as RSS.
fn give_back_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases free memory; no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The uprobes of exited targets still being detached at shutdown (their spans are
/// read already), awaited before the export queue's final flush.
pub struct Backlog(JoinHandle<()>);

impl Backlog {
    pub async fn wait(self) {
        let began = Instant::now();
        let _ = self.0.await;
        tracing::debug!(wait_ms = began.elapsed().as_millis() as u64, "exited targets' uprobes detached");
    }
}
