//! Connection metrics from the kernel socket probe, exported through gosight's one
//! metrics pipeline (`crate::metrics`, which reads the `OTEL_METRICS_*` settings).
//!
//! Instruments (semantic conventions where they exist):
//! - `process.network.io` (counter, `By`) with `network.io.direction` =
//!   `transmit` | `receive`: application bytes written to / read from TCP sockets;
//! - `gosight.tcp.connections` (counter, `{connection}`): connections closed;
//! - `gosight.tcp.connection.duration` (histogram, `s`): open to close;
//! - `gosight.tcp.connection.rtt` (histogram, `s`): the kernel's smoothed RTT at close.
//!
//! Every point carries `process.pid`, `process.executable.name`, `network.transport`
//! (`tcp`), `network.type` (`ipv4` | `ipv6`), `network.peer.address`,
//! `gosight.connection.role` (`client` | `server`) and, for client connections,
//! `network.peer.port` — for server connections the peer port is the client's
//! ephemeral port (one series per connection), so `server.port` (the local port)
//! is recorded instead.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use opentelemetry::metrics::{Counter, Histogram, Meter};
use opentelemetry::KeyValue;

/// Which end of the connection the process is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Client,
    Server,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Client => "client",
            Role::Server => "server",
        }
    }
}

/// One closed connection, as the metrics need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClosedConnection {
    pub pid: u32,
    pub command: String,
    pub role: Role,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub duration: Duration,
    pub srtt: Duration,
}

/// The instruments.
pub struct ConnectionMetrics {
    io: Counter<u64>,
    connections: Counter<u64>,
    duration: Histogram<f64>,
    rtt: Histogram<f64>,
}

impl ConnectionMetrics {
    /// The instruments, made from gosight's meter.
    pub fn new(meter: &Meter) -> ConnectionMetrics {
        ConnectionMetrics {
            io: meter
                .u64_counter("process.network.io")
                .with_unit("By")
                .with_description("Bytes the process wrote to or read from TCP connections")
                .build(),
            connections: meter
                .u64_counter("gosight.tcp.connections")
                .with_unit("{connection}")
                .with_description("TCP connections closed")
                .build(),
            duration: meter
                .f64_histogram("gosight.tcp.connection.duration")
                .with_unit("s")
                .with_description("Time from open to close of TCP connections")
                .with_boundaries(vec![0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 60.0, 300.0, 1800.0])
                .build(),
            rtt: meter
                .f64_histogram("gosight.tcp.connection.rtt")
                .with_unit("s")
                .with_description("Smoothed round-trip time of TCP connections at close")
                .with_boundaries(vec![0.00005, 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0])
                .build(),
        }
    }

    /// Records a batch of closed connections: the connections of one series (same
    /// process, role, peer and port) are summed into one data point per counter,
    /// their attributes built once; each connection's duration and RTT are
    /// recorded in the histograms.
    pub fn record_all(&self, closed: &[ClosedConnection]) {
        let mut series: HashMap<SeriesKey<'_>, Vec<&ClosedConnection>> = HashMap::new();
        for c in closed {
            series.entry(SeriesKey::of(c)).or_default().push(c);
        }
        for conns in series.values() {
            let attrs = attributes(conns[0]);
            let (sent, received) = conns.iter().fold((0, 0), |(s, r), c| (s + c.bytes_sent, r + c.bytes_received));
            let with = |dir: &'static str| {
                let mut a = attrs.clone();
                a.push(KeyValue::new("network.io.direction", dir));
                a
            };
            if sent > 0 {
                self.io.add(sent, &with("transmit"));
            }
            if received > 0 {
                self.io.add(received, &with("receive"));
            }
            self.connections.add(conns.len() as u64, &attrs);
            for c in conns {
                self.duration.record(c.duration.as_secs_f64(), &attrs);
                if !c.srtt.is_zero() {
                    self.rtt.record(c.srtt.as_secs_f64(), &attrs);
                }
            }
        }
    }
}

/// What decides a connection's attributes ([`attributes`]): its series.
#[derive(Debug, PartialEq, Eq, Hash)]
struct SeriesKey<'a> {
    pid: u32,
    command: &'a str,
    role: Role,
    peer: std::net::IpAddr,
    /// The peer's port for a client, the local port for a server.
    port: u16,
}

impl SeriesKey<'_> {
    fn of(c: &ClosedConnection) -> SeriesKey<'_> {
        let port = match c.role {
            Role::Client => c.remote.port(),
            Role::Server => c.local.port(),
        };
        SeriesKey { pid: c.pid, command: &c.command, role: c.role, peer: c.remote.ip(), port }
    }
}

/// The attributes of one connection's data points.
pub fn attributes(c: &ClosedConnection) -> Vec<KeyValue> {
    let remote = c.remote;
    let mut a = vec![
        KeyValue::new("process.pid", i64::from(c.pid)),
        KeyValue::new("process.executable.name", c.command.clone()),
        KeyValue::new("network.transport", "tcp"),
        KeyValue::new("network.type", if remote.is_ipv4() { "ipv4" } else { "ipv6" }),
        KeyValue::new("network.peer.address", remote.ip().to_string()),
        KeyValue::new("gosight.connection.role", c.role.as_str()),
    ];
    match c.role {
        Role::Client => a.push(KeyValue::new("network.peer.port", i64::from(remote.port()))),
        Role::Server => a.push(KeyValue::new("server.port", i64::from(c.local.port()))),
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_connections_name_the_local_port_not_the_ephemeral_peer_port() {
        let c = ClosedConnection {
            pid: 7,
            command: "python3".into(),
            role: Role::Server,
            local: "127.0.0.1:8080".parse().unwrap(),
            remote: "[::1]:51234".parse().unwrap(),
            bytes_sent: 1,
            bytes_received: 2,
            duration: Duration::from_millis(3),
            srtt: Duration::from_micros(40),
        };
        let a = attributes(&c);
        let get = |k: &str| a.iter().find(|kv| kv.key.as_str() == k).map(|kv| kv.value.to_string());
        assert_eq!(get("server.port").as_deref(), Some("8080"));
        assert_eq!(get("network.peer.port"), None);
        assert_eq!(get("network.type").as_deref(), Some("ipv6"));
        assert_eq!(get("network.peer.address").as_deref(), Some("::1"));
    }
}
