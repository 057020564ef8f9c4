//! Connection metrics from the kernel socket probe, exported over OTLP.
//!
//! Settings are the standard ones: `OTEL_METRICS_EXPORTER` (`otlp`, the default;
//! `console`; `none`), the protocol from `OTEL_EXPORTER_OTLP_METRICS_PROTOCOL` then
//! `OTEL_EXPORTER_OTLP_PROTOCOL` (default `http/protobuf`), and — read by
//! `opentelemetry-otlp` itself — `OTEL_EXPORTER_OTLP_[METRICS_]ENDPOINT`, `_HEADERS`,
//! `_TIMEOUT`, `_COMPRESSION`; the interval from `OTEL_METRIC_EXPORT_INTERVAL`.
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

use anyhow::{bail, Context};
use opentelemetry::metrics::{Counter, Histogram, MeterProvider as _};
use opentelemetry::KeyValue;
use opentelemetry_sdk::metrics::periodic_reader_with_async_runtime::PeriodicReader;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::Resource;

use crate::export::{parse_protocol, OtlpProtocol};

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

/// Where metrics go (`OTEL_METRICS_EXPORTER`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricsExporter {
    Otlp(OtlpProtocol),
    Console,
    None,
}

impl MetricsExporter {
    pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<MetricsExporter> {
        let kind = env("OTEL_METRICS_EXPORTER").unwrap_or_default();
        Ok(match kind.trim() {
            "" | "otlp" => {
                let var = ["OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"]
                    .into_iter()
                    .find_map(|k| env(k).filter(|v| !v.trim().is_empty()).map(|v| (k, v)));
                MetricsExporter::Otlp(match var {
                    Some((k, v)) => parse_protocol(k, &v)?,
                    None => OtlpProtocol::HttpProtobuf,
                })
            }
            "console" => MetricsExporter::Console,
            "none" => MetricsExporter::None,
            other => bail!("OTEL_METRICS_EXPORTER={other}: expected otlp, console or none"),
        })
    }
}

/// The instruments, and the provider that exports them.
pub struct ConnectionMetrics {
    provider: SdkMeterProvider,
    io: Counter<u64>,
    connections: Counter<u64>,
    duration: Histogram<f64>,
    rtt: Histogram<f64>,
}

impl ConnectionMetrics {
    /// Builds the exporter; `None` when `OTEL_METRICS_EXPORTER=none`. Must run
    /// inside the tokio runtime (the reader exports from a tokio task).
    pub fn start(kind: MetricsExporter, resource: Resource) -> anyhow::Result<Option<ConnectionMetrics>> {
        use opentelemetry_otlp::{MetricExporter, Protocol, WithExportConfig as _};
        let builder = SdkMeterProvider::builder().with_resource(resource);
        let provider = match kind {
            MetricsExporter::None => return Ok(None),
            MetricsExporter::Console => builder
                .with_reader(
                    PeriodicReader::builder(
                        opentelemetry_stdout::MetricExporter::default(),
                        opentelemetry_sdk::runtime::Tokio,
                    )
                    .build(),
                )
                .build(),
            MetricsExporter::Otlp(proto) => {
                let exporter = match proto {
                    OtlpProtocol::Grpc => MetricExporter::builder().with_tonic().build(),
                    OtlpProtocol::HttpProtobuf => {
                        MetricExporter::builder().with_http().with_protocol(Protocol::HttpBinary).build()
                    }
                    OtlpProtocol::HttpJson => {
                        MetricExporter::builder().with_http().with_protocol(Protocol::HttpJson).build()
                    }
                }
                .context("OTLP metrics exporter")?;
                builder
                    .with_reader(PeriodicReader::builder(exporter, opentelemetry_sdk::runtime::Tokio).build())
                    .build()
            }
        };
        let meter = provider.meter("gosight");
        Ok(Some(ConnectionMetrics {
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
            provider,
        }))
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

    /// Exports what is pending and stops.
    pub fn shutdown(&self) {
        if let Err(e) = self.provider.shutdown() {
            tracing::warn!("metrics: final export failed: {e}");
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

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
    }

    #[test]
    fn exporter_settings_follow_the_otel_variables() {
        assert_eq!(MetricsExporter::from_env(&env(&[])).unwrap(), MetricsExporter::Otlp(OtlpProtocol::HttpProtobuf));
        assert_eq!(
            MetricsExporter::from_env(&env(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")])).unwrap(),
            MetricsExporter::Otlp(OtlpProtocol::Grpc)
        );
        let both = [("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"), ("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "http/json")];
        assert_eq!(MetricsExporter::from_env(&env(&both)).unwrap(), MetricsExporter::Otlp(OtlpProtocol::HttpJson));
        assert_eq!(
            MetricsExporter::from_env(&env(&[("OTEL_METRICS_EXPORTER", "none")])).unwrap(),
            MetricsExporter::None
        );
        assert!(MetricsExporter::from_env(&env(&[("OTEL_METRICS_EXPORTER", "prometheus")]))
            .unwrap_err()
            .to_string()
            .contains("expected otlp"));
    }

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
