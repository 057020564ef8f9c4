//! Adds the connection a Go span's request travelled on to the span:
//! `network.peer.address`, `network.peer.port`, `network.transport`,
//! `network.type`. Each library says how its spans find their connection
//! ([`Connection`]); see [`super::table`] for the lookups.

use gosight_uprobes::socket::ConnRole;
use gosight_uprobes::Connection;
use opentelemetry_sdk::trace::SpanData;

use super::table::{network_attributes, ConnectionTable};

/// Joins a span of process `pid` (found by `connection`, between `start_ns` and
/// `end_ns`) to its connection, if the table knows it; false when it does not
/// (yet: the connection's OPEN record travels through another ring buffer and may
/// be read a moment after the span's record) or cannot.
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
