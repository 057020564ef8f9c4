//! Decoding the socket probe's ring-buffer record (`struct conn_record`, declared
//! once in `records.h`) into a [`ConnEvent`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::records::{conn_record, KIND_CLOSE, KIND_OPEN, ROLE_CLIENT, ROLE_SERVER};

const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;

/// Whether a record announces a connection or ends it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConnKind {
    /// The connection is live: emitted when a client's handshake completes, and
    /// for a server-side connection at its first read or write (when its process
    /// becomes known). Bytes, close time and RTT are 0.
    Open,
    /// Emitted when the socket is released (or a connect failed): final counts.
    Close,
}

/// Which end of the connection the recorded process is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConnRole {
    /// The process called connect().
    Client,
    /// The connection came in on a listening socket.
    Server,
}

/// One connection end of a process in the watched network namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnEvent {
    pub kind: ConnKind,
    /// Unique per [`super::SocketProbe`] instance; the OPEN and CLOSE records of
    /// one connection end share it.
    pub id: u64,
    /// Process (thread group) id: for a client, the process that called
    /// connect(); for a server, the first process that read or wrote the
    /// connection. 0 when unknown: a server-side connection closed before any
    /// process used it (e.g. never accepted).
    pub pid: u32,
    /// Its command name (the kernel's `comm`, at most 15 bytes); empty when
    /// `pid` is 0.
    pub comm: String,
    pub role: ConnRole,
    /// IPv4-mapped IPv6 addresses (a dual-stack socket talking IPv4) are shown as
    /// IPv4.
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// CLOCK_MONOTONIC nanoseconds (`bpf_ktime_get_ns`): for a client, its
    /// connect() call; for a server, the end of the handshake.
    pub open_ns: u64,
    /// CLOCK_MONOTONIC nanoseconds of the transition to TCP CLOSE (or of the
    /// socket's release when that transition happened before tracking); 0 in OPEN.
    pub close_ns: u64,
    /// Bytes the processes wrote to the socket (send, write, sendmsg, sendfile,
    /// io_uring: what the socket layer accepted).
    pub bytes_sent: u64,
    /// Bytes they read from it (peeks not counted).
    pub bytes_received: u64,
    /// Smoothed RTT in microseconds at close (as `tcp_info.tcpi_rtt`); 0 in OPEN.
    pub srtt_us: u32,
    /// The connect failed (refused, timed out, reset during the handshake).
    pub failed: bool,
}

/// Decodes one ring-buffer record; None when it is malformed (short, unknown
/// kind, role or family: a C/Rust layout mismatch, a bug).
pub fn decode(bytes: &[u8]) -> Option<ConnEvent> {
    let raw: conn_record = crate::span::read_record(bytes)?;
    let kind = match raw.kind as u32 {
        KIND_OPEN => ConnKind::Open,
        KIND_CLOSE => ConnKind::Close,
        _ => return None,
    };
    let role = match raw.role as u32 {
        ROLE_CLIENT => ConnRole::Client,
        ROLE_SERVER => ConnRole::Server,
        _ => return None,
    };
    let comm: Vec<u8> = raw.comm.iter().map(|&c| c as u8).take_while(|&b| b != 0).collect();
    Some(ConnEvent {
        kind,
        id: raw.id,
        pid: raw.pid,
        comm: String::from_utf8_lossy(&comm).into_owned(),
        role,
        local: SocketAddr::new(ip(raw.family, &raw.local_ip)?, raw.local_port),
        remote: SocketAddr::new(ip(raw.family, &raw.remote_ip)?, raw.remote_port),
        open_ns: raw.open_ns,
        close_ns: raw.close_ns,
        bytes_sent: raw.bytes_sent,
        bytes_received: raw.bytes_received,
        srtt_us: raw.srtt_us,
        failed: raw.failed != 0,
    })
}

fn ip(family: u16, bytes: &[u8; 16]) -> Option<IpAddr> {
    match family {
        AF_INET => Some(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]).into()),
        AF_INET6 => {
            let v6 = Ipv6Addr::from(*bytes);
            Some(v6.to_ipv4_mapped().map(IpAddr::from).unwrap_or(v6.into()))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::span::record_bytes as bytes_of;

    fn comm_of(name: &[u8]) -> [std::os::raw::c_char; 16] {
        let mut comm = [0; 16];
        for (d, b) in comm.iter_mut().zip(name) {
            *d = *b as std::os::raw::c_char;
        }
        comm
    }

    fn record(family: u16, local: [u8; 16], remote: [u8; 16]) -> conn_record {
        let comm = comm_of(b"curl");
        conn_record {
            id: 7,
            open_ns: 100,
            close_ns: 250,
            bytes_sent: 1234,
            bytes_received: 5678,
            local_ip: local,
            remote_ip: remote,
            pid: 4242,
            srtt_us: 31,
            local_port: 40000,
            remote_port: 8080,
            family,
            kind: 2,
            role: 1,
            failed: 0,
            comm,
            ..Default::default()
        }
    }

    #[test]
    fn ipv4_record() {
        let mut l = [0u8; 16];
        l[..4].copy_from_slice(&[127, 0, 0, 1]);
        let mut r = [0u8; 16];
        r[..4].copy_from_slice(&[10, 1, 2, 3]);
        let ev = decode(&bytes_of(&record(AF_INET, l, r))).unwrap();
        assert_eq!(ev.kind, ConnKind::Close);
        assert_eq!(ev.role, ConnRole::Client);
        assert_eq!(ev.local, "127.0.0.1:40000".parse().unwrap());
        assert_eq!(ev.remote, "10.1.2.3:8080".parse().unwrap());
        assert_eq!((ev.id, ev.pid, ev.comm.as_str()), (7, 4242, "curl"));
        assert_eq!((ev.open_ns, ev.close_ns, ev.bytes_sent, ev.bytes_received, ev.srtt_us), (100, 250, 1234, 5678, 31));
        assert!(!ev.failed);
    }

    #[test]
    fn ipv6_and_v4_mapped_records() {
        let l: Ipv6Addr = "::1".parse().unwrap();
        let r: Ipv6Addr = "2001:db8::5".parse().unwrap();
        let mut raw = record(AF_INET6, l.octets(), r.octets());
        raw.kind = 1;
        raw.role = 2;
        raw.failed = 1;
        raw.comm = comm_of(b"a-full-16-bytes!"); // no NUL: all 16 bytes are the name
        let ev = decode(&bytes_of(&raw)).unwrap();
        assert_eq!(ev.local, "[::1]:40000".parse().unwrap());
        assert_eq!(ev.remote, "[2001:db8::5]:8080".parse().unwrap());
        assert_eq!((ev.kind, ev.role, ev.failed), (ConnKind::Open, ConnRole::Server, true));
        assert_eq!(ev.comm, "a-full-16-bytes!");

        let mapped: Ipv6Addr = "::ffff:192.168.1.9".parse().unwrap();
        let ev = decode(&bytes_of(&record(AF_INET6, mapped.octets(), l.octets()))).unwrap();
        assert_eq!(ev.local, "192.168.1.9:40000".parse().unwrap());
        assert!(ev.local.is_ipv4());
        assert!(ev.remote.is_ipv6());
    }

    #[test]
    fn malformed_records_are_refused() {
        let raw = record(AF_INET, [0; 16], [0; 16]);
        let b = bytes_of(&raw);
        assert!(decode(&b[..111]).is_none());
        for bad in [conn_record { kind: 0, ..raw }, conn_record { role: 3, ..raw }, conn_record { family: 1, ..raw }] {
            assert!(decode(&bytes_of(&bad)).is_none());
        }
    }
}
