//! Adds the connection a Go span's request travelled on to the span:
//! `network.peer.address`, `network.peer.port`, `network.transport`,
//! `network.type` (see [`super::table`] for how a span finds its connection).

use std::net::{IpAddr, SocketAddr};

use gosight_uprobes::socket::ConnRole;
use gosight_uprobes::Event;
use opentelemetry_sdk::trace::SpanData;

use super::table::{network_attributes, ConnectionTable};
use crate::spans::split_host_port;

/// Joins `event`'s span of process `pid` to its connection, if the table knows it;
/// false when it does not (yet: the connection's OPEN record travels through another
/// ring buffer and may be read a moment after the span's record).
pub fn enrich(table: &ConnectionTable, pid: u32, event: &Event, span: &mut SpanData) -> bool {
    let remote = match event {
        Event::HttpServer(e) => {
            e.remote_addr.parse::<SocketAddr>().ok().and_then(|a| table.confirm(pid, ConnRole::Server, a))
        }
        Event::GrpcServer(e) => e.peer.and_then(|a| table.confirm(pid, ConnRole::Server, a)),
        Event::GrpcClient(e) => e.peer.and_then(|a| table.confirm(pid, ConnRole::Client, a)),
        Event::HttpClient(e) => {
            let (host, port) = host_and_port(&e.host, &e.scheme);
            let ip = host.parse::<IpAddr>().ok();
            port.and_then(|p| table.client_peer(pid, ip, p, e.start_ns, e.end_ns))
        }
    };
    match remote {
        Some(r) => {
            span.attributes.extend(network_attributes(r));
            true
        }
        None => false,
    }
}

/// `host[:port]` or `[v6][:port]` of a URL, with the scheme's default port.
fn host_and_port<'a>(hostport: &'a str, scheme: &str) -> (&'a str, Option<u16>) {
    let (host, port) = split_host_port(hostport).unwrap_or(("", None));
    let default = match scheme {
        "https" => Some(443),
        "http" => Some(80),
        _ => None,
    };
    (host, port.or(default))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_hosts() {
        assert_eq!(host_and_port("127.0.0.1:8080", "http"), ("127.0.0.1", Some(8080)));
        assert_eq!(host_and_port("[::1]:9", "http"), ("::1", Some(9)));
        assert_eq!(host_and_port("[::1]", "https"), ("::1", Some(443)));
        assert_eq!(host_and_port("example.com", "http"), ("example.com", Some(80)));
    }
}
