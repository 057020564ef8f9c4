//! TCP connections of the pod, seen from kernel tracepoints (C program:
//! `probe.bpf.c` beside this file; its header comment details each hook). One
//! instance per gosight, not per target: it records every TCP connection of one
//! network namespace, whatever the process's language.
//!
//! Hooks — all tracepoints, attached as BTF-typed raw tracepoints (`tp_btf`: no
//! tracefs, argument types from the running kernel's BTF, and tracepoints are the
//! kernel's stable hooks, unlike internal function signatures):
//! - `sock:inet_sock_set_state` — CLOSE→SYN_SENT is a client's connect(), in its
//!   process context (pid, comm, open time); SYN_SENT→ESTABLISHED completes its
//!   tuple (OPEN record); SYN_RECV→ESTABLISHED is a server-side connection;
//!   SYN_SENT→CLOSE a failed connect; →CLOSE stamps the close time.
//! - `sock:sock_send_length` / `sock:sock_recv_length` (6.3+) — bytes written and
//!   read through the socket layer (send/write/sendmsg/sendfile/io_uring;
//!   `MSG_PEEK` and error-queue reads excluded), in the app's process context:
//!   the first one on a server-side connection names its process (there is no
//!   process-context hook at accept()) and emits its OPEN record.
//! - `tcp:tcp_destroy_sock` — the socket's release: CLOSE record. Later than
//!   TCP_CLOSE on purpose: a half-closed client may still read after it, and no
//!   map entry can leak.
//!
//! Why not fentry/fexit (`tcp_connect`, `inet_csk_accept`, `tcp_sendmsg`...):
//! they need BPF trampolines, which some kernels refuse (the development machine,
//! 6.18 in lockdown, answers EPERM to any fentry/fexit load and has no kprobes),
//! and they bind to internal signatures (`inet_csk_accept` changed in 6.10).
//!
//! Scope: a connection is tracked only when its socket's network namespace is the
//! one given to [`SocketProbe::start`] (normally the sidecar's own, which in a pod
//! is the pod's). Costs: per send or receive of any TCP socket one hash lookup (and
//! an atomic add when tracked); per connection end a few state-change hits (~5,
//! most return at once), the release, and two 112-byte records. The burst test
//! prints the measured run time of each program (tens to hundreds of ns).
//!
//! Loss is never silent: a full ring buffer (1 MiB, about 8,700 records) or a full
//! connection map (65,536 live connections) is counted in [`SocketCounters`], so
//! records received + counted loss is exact.
//!
//! Kernels: 5.8+ with BTF for connections and times; byte counts and server
//! process names need `sock_send_length`/`sock_recv_length` (6.3+): without them
//! the probe runs with bytes 0 and server pids 0 ([`SocketProbe::counts_bytes`]).
//! Not seen: connections opened before the probe started; bytes moved without the
//! socket layer's sendmsg/recvmsg (splice from a socket, `TCP_ZEROCOPY_RECEIVE`;
//! sendfile before 6.5). Bytes are the app's: a header that gosight's sk_msg
//! inserts is received by the peer but was not sent by the app. A failed connect
//! may show local port 0 (the kernel releases it before the CLOSE transition).

mod decode;

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use aya::maps::{MapData, RingBuf};
use aya::{Btf, Ebpf, EbpfLoader};

pub use decode::{decode, ConnEvent, ConnKind, ConnRole};

use crate::ring::BatchedRing;
use crate::ProbeError;

const PROBE: &str = "socket";
static OBJECT: &[u8] = crate::bpf_object!("socket");

/// (program name in probe.bpf.c, tracepoint, required), in attach order: the
/// close path first, so no connection is opened before its end can be seen.
const HOOKS: &[(&str, &str, bool)] = &[
    ("on_destroy", "tcp_destroy_sock", true),
    ("on_send", "sock_send_length", false),
    ("on_recv", "sock_recv_length", false),
    ("on_state", "inet_sock_set_state", true),
];

/// What the probe did so far (its per-CPU counters summed over CPUs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SocketCounters {
    /// Connection ends tracked in the watched namespace (a client's connect(),
    /// a server side's completed handshake). Each gets a CLOSE record or is
    /// counted in `lost_records`.
    pub tracked: u64,
    /// CLOSE records submitted to the ring buffer.
    pub closed: u64,
    /// OPEN records lost to a full ring buffer (the connection is still tracked
    /// and gets its CLOSE record).
    pub lost_open: u64,
    /// CLOSE records lost to a full ring buffer.
    pub lost_records: u64,
    /// Connection ends not tracked because the connection map was full: neither
    /// OPEN nor CLOSE record.
    pub untracked: u64,
    /// Connects that failed (each has a CLOSE record with `failed`, unless lost).
    pub failed_connects: u64,
    /// Connection ends of other network namespaces, ignored.
    pub other_netns: u64,
}

impl SocketCounters {
    /// Connection ends whose CLOSE record will never arrive: `lost_records +
    /// untracked`. CLOSE records received + this = every connection end of the
    /// namespace opened and closed while the probe ran.
    pub fn close_records_missing(&self) -> u64 {
        self.lost_records + self.untracked
    }
}

/// Sizes of the probe's kernel buffers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketLimits {
    /// Ring buffer bytes: a power of two, at least a page. Each record takes
    /// 120 bytes (112 + the ring's 8-byte header).
    pub ring_buffer_bytes: u32,
    /// Connections tracked at once (live, or closed but not yet released).
    pub max_connections: u32,
}

impl Default for SocketLimits {
    /// 1 MiB (about 8,700 records, 4,300 connections with both ends in the pod,
    /// between two reads: the reader drains it as records arrive) and 65,536
    /// connections. A BPF ring's data pages are mapped twice into gosight and all
    /// end up resident: 8 MiB cost 16 MiB of RSS for a burst buffer rarely used.
    fn default() -> Self {
        SocketLimits { ring_buffer_bytes: 1 << 20, max_connections: 65536 }
    }
}

/// Run time of one of the probe's programs since BPF run-time statistics were
/// enabled (`BPF_ENABLE_STATS`; zero otherwise).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProgramStats {
    pub program: &'static str,
    pub tracepoint: &'static str,
    pub run_count: u64,
    pub run_time_ns: u64,
}

/// The loaded, attached socket probe. Dropping it detaches every hook (an
/// already-taken [`ConnEventReader`] stays readable, and receives nothing more).
pub struct SocketProbe {
    ebpf: Ebpf,
    /// The ring buffer and its `reader_waiting` flag, until taken.
    events: Option<(RingBuf<MapData>, Option<aya::maps::Map>)>,
    netns_ino: u64,
    counts_bytes: bool,
}

impl SocketProbe {
    /// Loads the programs with `netns_ino` (the inode of a network namespace, e.g.
    /// [`own_netns_ino`]) as their scope and attaches them.
    pub fn start(netns_ino: u64) -> Result<SocketProbe, ProbeError> {
        Self::start_with(netns_ino, SocketLimits::default())
    }

    /// [`start`](Self::start) with other buffer sizes.
    pub fn start_with(netns_ino: u64, limits: SocketLimits) -> Result<SocketProbe, ProbeError> {
        let ino = u32::try_from(netns_ino).map_err(|_| ProbeError::Map {
            probe: PROBE,
            map: "netns_ino",
            reason: format!("{netns_ino} is not a namespace inode (they are 32-bit)"),
        })?;
        let mut ebpf = EbpfLoader::new()
            .override_global("netns_ino", &ino, true)
            .map_max_entries("events", limits.ring_buffer_bytes)
            .map_max_entries("conns", limits.max_connections)
            .load(OBJECT)
            .map_err(|source| ProbeError::Load { probe: PROBE, source })?;
        // Parsed after the loader (which parses its own copy and drops it) is gone:
        // one parsed kernel BTF (~15 MiB) in memory at a time, not two.
        let btf = Btf::from_sys_fs().map_err(|e| ProbeError::Load { probe: PROBE, source: e.into() })?;
        let mut counts_bytes = true;
        for &(name, tracepoint, required) in HOOKS {
            match crate::loader::attach_tracepoint(&mut ebpf, PROBE, name, tracepoint, &btf) {
                Ok(()) => {}
                Err(e) if !required => {
                    tracing::warn!("socket probe: no {tracepoint} tracepoint (kernel < 6.3?): bytes and server processes are not recorded ({e})");
                    counts_bytes = false;
                }
                Err(e) => return Err(e),
            }
        }
        let events = ebpf.take_map("events").ok_or(ProbeError::Map {
            probe: PROBE,
            map: "events",
            reason: "not in the object".into(),
        })?;
        let events = RingBuf::try_from(events).map_err(|e| ProbeError::Map {
            probe: PROBE,
            map: "events",
            reason: e.to_string(),
        })?;
        let waiting = ebpf.take_map("reader_waiting");
        Ok(SocketProbe { ebpf, events: Some((events, waiting)), netns_ino, counts_bytes })
    }

    /// The network namespace inode the probe is scoped to.
    pub fn netns_ino(&self) -> u64 {
        self.netns_ino
    }

    /// Whether byte counts and server-side processes are recorded (the kernel has
    /// the `sock_send_length`/`sock_recv_length` tracepoints).
    pub fn counts_bytes(&self) -> bool {
        self.counts_bytes
    }

    /// Takes the record ring buffer out (once) as an async reader. Read it
    /// continuously: a full ring buffer loses records (counted).
    pub fn take_events(&mut self) -> io::Result<ConnEventReader> {
        let (rb, waiting) = self.events.take().ok_or_else(|| io::Error::other("socket events already taken"))?;
        Ok(ConnEventReader { ring: BatchedRing::new(rb, waiting)?, malformed: 0 })
    }

    pub fn counters(&self) -> SocketCounters {
        use crate::records::*;
        let get = |i: socket_counter| crate::loader::percpu_sum(&self.ebpf, "counters", i);
        SocketCounters {
            tracked: get(C_TRACKED),
            lost_open: get(C_LOST_OPEN),
            lost_records: get(C_LOST_CLOSE),
            untracked: get(C_UNTRACKED),
            failed_connects: get(C_FAILED_CONNECT),
            closed: get(C_CLOSED),
            other_netns: get(C_OTHER_NETNS),
        }
    }

    /// Per-program run counts and times (what the probe costs the kernel).
    pub fn program_stats(&self) -> Vec<ProgramStats> {
        HOOKS
            .iter()
            .filter_map(|&(program, tracepoint, _)| {
                let info = self.ebpf.program(program)?.info().ok()?;
                Some(ProgramStats {
                    program,
                    tracepoint,
                    run_count: info.run_count(),
                    run_time_ns: info.run_time().as_nanos() as u64,
                })
            })
            .collect()
    }

    /// Live connections currently tracked (entries of the connection map; walks
    /// the map, for diagnostics).
    pub fn live_connections(&self) -> usize {
        self.ebpf
            .map("conns")
            .and_then(|m| aya::maps::HashMap::<_, u64, [u8; 112]>::try_from(m).ok())
            .map(|m| m.keys().filter(Result::is_ok).count())
            .unwrap_or(0)
    }
}

impl std::fmt::Debug for SocketProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SocketProbe").field("netns_ino", &self.netns_ino).finish()
    }
}

/// The inode of the calling process's network namespace (`/proc/self/ns/net`):
/// the pod's, for the sidecar.
pub fn own_netns_ino() -> io::Result<u64> {
    netns_ino_of(Path::new("/proc/self/ns/net"))
}

/// The inode of the network namespace a path names (`/proc/<pid>/ns/net`, or a
/// bind mount such as `/run/netns/<name>` made by `ip netns add`).
pub fn netns_ino_of(path: &Path) -> io::Result<u64> {
    Ok(std::fs::metadata(path)?.ino())
}

/// Decoded connection records, read in batches as they arrive (on the tokio
/// reactor; see [`crate::ring`]).
pub struct ConnEventReader {
    ring: BatchedRing,
    malformed: u64,
}

impl ConnEventReader {
    /// Waits until records are ready, hands each decoded one to `f`, and returns
    /// the number handed over once the ring buffer is drained.
    pub async fn next_batch(&mut self, mut f: impl FnMut(ConnEvent)) -> io::Result<usize> {
        let malformed = &mut self.malformed;
        let mut n = 0;
        self.ring
            .next_batch(|item| match decode(item) {
                Some(ev) => {
                    n += 1;
                    f(ev)
                }
                None => *malformed += 1,
            })
            .await?;
        Ok(n)
    }

    /// Records that did not decode (a C/Rust layout mismatch: a bug).
    pub fn malformed(&self) -> u64 {
        self.malformed
    }
}
