//! Live TCP connections per process, from the socket probe's OPEN and CLOSE
//! records, and the network facts they add to Go spans.
//!
//! A span is joined to the connection its request travelled on:
//! - server spans (HTTP and gRPC) and gRPC client spans know the peer's socket
//!   address from Go's own structs (`Request.RemoteAddr`, the stream's peer): the
//!   connection of that process with that remote address confirms it;
//! - an HTTP client span knows only `server.address` (maybe a host name) and
//!   `server.port`: the process's client connections to that port that were open
//!   during the span (and to that IP, when `server.address` is one) must all agree
//!   on the peer address, else nothing is added.
//!
//! A span that matches nothing (the socket probe is off, or the connection was
//! opened before gosight attached) keeps what Go told us and gains nothing.

// foldhash: a span joins by hashing on every lookup, and SipHash was a tenth of
// gosight's CPU under connection churn (randomly seeded, like std's).
use foldhash::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;

use gosight_uprobes::socket::{ConnEvent, ConnKind, ConnRole};
use opentelemetry::KeyValue;

/// How long a closed connection stays joinable (a span's record can be read a
/// little after its connection's CLOSE record).
const CLOSED_GRACE_NS: u64 = 5_000_000_000;
/// Closed connections are purged at most this often (not per record: under
/// connection churn the table holds tens of thousands of recently closed ones).
const PURGE_EVERY_NS: u64 = 500_000_000;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Conn {
    role: ConnRole,
    remote: SocketAddr,
    open_ns: u64,
    close_ns: Option<u64>,
}

/// A process's connections with one peer in one role (what a span that knows its
/// peer's socket address confirms).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct PeerKey {
    pid: u32,
    role: ConnRole,
    ip: IpAddr,
    port: u16,
}

impl PeerKey {
    fn new(pid: u32, role: ConnRole, peer: SocketAddr) -> PeerKey {
        PeerKey { pid, role, ip: canonical(peer.ip()), port: peer.port() }
    }
}

/// Connections by (pid, the probe's connection id), indexed for the two lookups:
/// under connection churn the table holds tens of thousands of recently closed
/// connections, and a span must not scan them.
#[derive(Debug, Default)]
pub struct ConnectionTable {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    conns: HashMap<(u32, u64), Conn>,
    /// How many of `conns` each peer has, and its address as recorded.
    by_peer: HashMap<PeerKey, (SocketAddr, usize)>,
    /// Client connections by (pid, remote port): ids into `conns`.
    clients_by_port: HashMap<(u32, u16), Vec<u64>>,
    last_purge_ns: u64,
}

/// The attributes a joined connection adds to a span.
pub fn network_attributes(remote: SocketAddr) -> [KeyValue; 4] {
    [
        KeyValue::new("network.peer.address", remote.ip().to_string()),
        KeyValue::new("network.peer.port", i64::from(remote.port())),
        KeyValue::new("network.transport", "tcp"),
        KeyValue::new("network.type", if remote.is_ipv4() { "ipv4" } else { "ipv6" }),
    ]
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn same_ip(a: IpAddr, b: IpAddr) -> bool {
    canonical(a) == canonical(b)
}

impl ConnectionTable {
    /// Applies one record; `now_ns` (monotonic) drives the purge of closed ones.
    pub fn apply(&self, e: &ConnEvent, now_ns: u64) {
        let mut guard = self.inner.lock().expect("connection table lock");
        let inner = &mut *guard;
        let conn = inner.conns.entry((e.pid, e.id)).or_insert_with(|| {
            let peer = inner.by_peer.entry(PeerKey::new(e.pid, e.role, e.remote)).or_insert((e.remote, 0));
            peer.1 += 1;
            if e.role == ConnRole::Client {
                inner.clients_by_port.entry((e.pid, e.remote.port())).or_default().push(e.id);
            }
            Conn { role: e.role, remote: e.remote, open_ns: e.open_ns, close_ns: None }
        });
        if e.kind == ConnKind::Close {
            conn.close_ns = Some(e.close_ns);
        }
        if now_ns.saturating_sub(inner.last_purge_ns) >= PURGE_EVERY_NS {
            inner.last_purge_ns = now_ns;
            inner.purge(now_ns);
        }
    }

    /// Connections held, live and recently closed.
    pub fn len(&self) -> usize {
        self.inner.lock().expect("connection table lock").conns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The remote address of `pid`'s connection with remote `peer` in `role`, if
    /// the probe saw it.
    pub fn confirm(&self, pid: u32, role: ConnRole, peer: SocketAddr) -> Option<SocketAddr> {
        let inner = self.inner.lock().expect("connection table lock");
        inner.by_peer.get(&PeerKey::new(pid, role, peer)).map(|&(remote, _)| remote)
    }

    /// The peer of an HTTP client span: `pid`'s client connections to `port` (and
    /// `ip`, if known) open during `[start_ns, end_ns]`, when they all agree.
    pub fn client_peer(
        &self,
        pid: u32,
        ip: Option<IpAddr>,
        port: u16,
        start_ns: u64,
        end_ns: u64,
    ) -> Option<SocketAddr> {
        let inner = self.inner.lock().expect("connection table lock");
        let mut found: Option<SocketAddr> = None;
        for id in inner.clients_by_port.get(&(pid, port))? {
            let Some(c) = inner.conns.get(&(pid, *id)) else { continue };
            let overlaps = c.open_ns <= end_ns && c.close_ns.is_none_or(|t| t >= start_ns);
            if !overlaps || ip.is_some_and(|ip| !same_ip(ip, c.remote.ip())) {
                continue;
            }
            match found {
                None => found = Some(c.remote),
                Some(f) if same_ip(f.ip(), c.remote.ip()) => {}
                Some(_) => return None,
            }
        }
        found
    }
}

impl Inner {
    /// Forgets connections closed more than `CLOSED_GRACE_NS` ago, and their index entries.
    fn purge(&mut self, now_ns: u64) {
        let by_peer = &mut self.by_peer;
        self.conns.retain(|&(pid, _), c| {
            let keep = c.close_ns.is_none_or(|t| now_ns.saturating_sub(t) < CLOSED_GRACE_NS);
            if !keep {
                let key = PeerKey::new(pid, c.role, c.remote);
                if let Some(n) = by_peer.get_mut(&key) {
                    n.1 -= 1;
                    if n.1 == 0 {
                        by_peer.remove(&key);
                    }
                }
            }
            keep
        });
        let conns = &self.conns;
        self.clients_by_port.retain(|&(pid, _), ids| {
            ids.retain(|&id| conns.contains_key(&(pid, id)));
            !ids.is_empty()
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(kind: ConnKind, id: u64, role: ConnRole, remote: &str, open_ns: u64, close_ns: u64) -> ConnEvent {
        ConnEvent {
            kind,
            id,
            pid: 42,
            comm: "app".into(),
            role,
            local: "127.0.0.1:8080".parse().unwrap(),
            remote: remote.parse().unwrap(),
            open_ns,
            close_ns,
            bytes_sent: 0,
            bytes_received: 0,
            srtt_us: 0,
            failed: false,
        }
    }

    #[test]
    fn spans_join_the_connection_they_used() {
        let t = ConnectionTable::default();
        t.apply(&ev(ConnKind::Open, 1, ConnRole::Server, "127.0.0.1:50000", 100, 0), 100);
        t.apply(&ev(ConnKind::Open, 2, ConnRole::Client, "[::1]:9000", 200, 0), 200);
        t.apply(&ev(ConnKind::Open, 3, ConnRole::Client, "10.0.0.7:9000", 200, 0), 200);
        t.apply(&ev(ConnKind::Open, 4, ConnRole::Client, "10.0.0.8:5432", 200, 0), 200);
        // Server span: RemoteAddr confirmed; v4-mapped spelling matches too.
        assert_eq!(
            t.confirm(42, ConnRole::Server, "127.0.0.1:50000".parse().unwrap()),
            Some("127.0.0.1:50000".parse().unwrap())
        );
        assert_eq!(
            t.confirm(42, ConnRole::Server, "[::ffff:127.0.0.1]:50000".parse().unwrap()).map(|a| a.port()),
            Some(50000)
        );
        assert_eq!(t.confirm(42, ConnRole::Server, "127.0.0.1:50001".parse().unwrap()), None);
        assert_eq!(t.confirm(7, ConnRole::Server, "127.0.0.1:50000".parse().unwrap()), None);
        // Client span to port 9000 by name: two candidates disagree → nothing.
        assert_eq!(t.client_peer(42, None, 9000, 300, 400), None);
        // ... by IP: the one.
        assert_eq!(
            t.client_peer(42, Some("10.0.0.7".parse().unwrap()), 9000, 300, 400),
            Some("10.0.0.7:9000".parse().unwrap())
        );
        assert_eq!(t.client_peer(42, None, 5432, 300, 400), Some("10.0.0.8:5432".parse().unwrap()));
        // Not open during the span.
        assert_eq!(t.client_peer(42, None, 5432, 50, 150), None);
        // Closed connections stay joinable for a while, then go.
        t.apply(&ev(ConnKind::Close, 4, ConnRole::Client, "10.0.0.8:5432", 200, 500), 500);
        assert_eq!(t.client_peer(42, None, 5432, 300, 600), Some("10.0.0.8:5432".parse().unwrap()));
        assert_eq!(t.client_peer(42, None, 5432, 600, 700), None, "closed before the span");
        t.apply(
            &ev(ConnKind::Open, 5, ConnRole::Client, "10.0.0.9:1", 500 + CLOSED_GRACE_NS, 0),
            500 + CLOSED_GRACE_NS + PURGE_EVERY_NS,
        );
        assert_eq!(t.len(), 4, "the closed one was purged");
        assert_eq!(t.client_peer(42, None, 5432, 300, 600), None, "and left the port index");
        t.apply(&ev(ConnKind::Close, 1, ConnRole::Server, "127.0.0.1:50000", 100, 600), 600);
        assert!(t.confirm(42, ConnRole::Server, "127.0.0.1:50000".parse().unwrap()).is_some(), "closed, in grace");
        t.apply(&ev(ConnKind::Open, 6, ConnRole::Client, "10.0.0.9:2", 700, 0), 2 * (600 + CLOSED_GRACE_NS));
        assert_eq!(t.confirm(42, ConnRole::Server, "127.0.0.1:50000".parse().unwrap()), None, "purged from the index");
        let attrs = network_attributes("[::1]:9000".parse().unwrap());
        assert_eq!(attrs[3].value.as_str(), "ipv6");
    }
}
