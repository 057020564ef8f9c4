//! The sessions of every target, started and stopped off the discovery loop.
//!
//! Attaching a target blocks for ~100 ms (BPF verification, uprobe registration)
//! and detaching one waits for the kernel's RCU grace periods (~115 ms per uprobe
//! when done one after the other), so neither runs on the loop that watches
//! `/proc`: starts run on blocking threads, at most one per CPU at a time (more
//! would only share the CPUs and multiply the memory each load takes), and stops
//! run in the background, every uprobe of a target detached at once.
//!
//! A target's pid may be reused as soon as it exits: each start carries a ticket,
//! and a start that finishes after its target exited (or after its pid became
//! another process) is stopped at once and never reported as started.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

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
    stops: JoinSet<()>,
    /// Starts allowed to run at once.
    slots: Arc<Semaphore>,
}

impl Sessions {
    pub fn new(shared: Shared) -> Sessions {
        let cpus = std::thread::available_parallelism().map_or(2, usize::from);
        Sessions {
            shared: Arc::new(shared),
            attached: HashMap::new(),
            starting: HashMap::new(),
            next_ticket: 0,
            starts: JoinSet::new(),
            stops: JoinSet::new(),
            slots: Arc::new(Semaphore::new(cpus.max(1))),
        }
    }

    /// Starts attaching `target` on a blocking thread; [`Sessions::next_started`]
    /// says when it is done.
    pub fn start(&mut self, target: Target) {
        let pid = target.process.pid;
        self.next_ticket += 1;
        let ticket = self.next_ticket;
        self.starting.insert(pid, ticket);
        let (shared, slots) = (self.shared.clone(), self.slots.clone());
        self.starts.spawn(async move {
            // Closed at shutdown: starts still waiting for a slot do not begin.
            let _slot = slots.acquire_owned().await.ok()?;
            let exe = target.process.exe.clone();
            let result = tokio::task::spawn_blocking(move || Session::start(&target, &shared)).await;
            match result {
                Ok(r) => Some((pid, ticket, exe, r)),
                Err(e) => {
                    tracing::warn!(pid, "attaching: {e}");
                    None
                }
            }
        });
    }

    /// The target `pid` exited: its session, if attached, is stopped in the
    /// background; a start in flight is stopped when it finishes. Returns whether
    /// it was attached.
    pub fn exited(&mut self, pid: u32) -> bool {
        self.starting.remove(&pid);
        self.reap_stops();
        match self.attached.remove(&pid) {
            Some(session) => {
                self.stops.spawn(session.stop());
                true
            }
            None => false,
        }
    }

    /// Waits for the next start of a still-running target to finish (pending
    /// forever when none is in flight, for `select!`).
    pub async fn next_started(&mut self) -> Started {
        loop {
            let Some(joined) = self.starts.join_next().await else { return std::future::pending().await };
            let Ok(Some((pid, ticket, exe, result))) = joined else { continue };
            if self.starting.get(&pid) != Some(&ticket) {
                // Exited while attaching (and the pid perhaps reused since).
                if let Ok(session) = result {
                    tracing::info!(pid, "target exited while attaching; detaching");
                    self.stops.spawn(session.stop());
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
        self.reap_stops();
    }

    /// Detaches everything for shutdown: starts not begun are dropped, starts
    /// running are awaited, then every uprobe of every target is detached at once
    /// and the rings are drained into the exporter; stops already running are
    /// awaited.
    pub async fn shutdown(mut self) {
        self.slots.close();
        let mut sessions: Vec<Session> = self.attached.drain().map(|(_, s)| s).collect();
        while let Some(joined) = self.starts.join_next().await {
            if let Ok(Some((_, _, _, Ok(session)))) = joined {
                sessions.push(session);
            }
        }
        let links: Vec<_> = sessions.iter_mut().flat_map(Session::take_links).collect();
        let began = std::time::Instant::now();
        let uprobes = links.len();
        if let Err(e) = tokio::task::spawn_blocking(move || gosight_uprobes::detach_concurrently(links)).await {
            tracing::warn!("detaching: {e}");
        }
        let detach_ms = began.elapsed().as_millis() as u64;
        let targets = sessions.len();
        for session in sessions {
            self.stops.spawn(session.finish());
        }
        while self.stops.join_next().await.is_some() {}
        tracing::info!(targets, uprobes, detach_ms, "all targets detached");
    }

    /// Frees the stops that are done.
    fn reap_stops(&mut self) {
        while self.stops.try_join_next().is_some() {}
    }
}
