//! What a probe hands the sidecar: the span one ring-buffer record describes, in
//! OpenTelemetry's terms (name, kind, semantic-convention attributes, status), with
//! the kernel's ids and times, and how its connection is found. Each library's
//! folder builds its spans from its records (`<library>/<probe>.rs`); what is common
//! to every record — the [`span_head`] and the strings — is read here, once.
//!
//! The sidecar turns a [`ProbeSpan`] into exported span data (wall-clock times,
//! resource, scope) without knowing which library made it.

use std::net::{IpAddr, SocketAddr};

use opentelemetry::trace::{SpanKind, Status};
use opentelemetry::KeyValue;

use crate::records::{ip_port, span_head};

/// One span, as a probe's record describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeSpan {
    pub name: String,
    pub kind: SpanKind,
    /// CLOCK_MONOTONIC nanoseconds (bpf_ktime_get_ns).
    pub start_ns: u64,
    pub end_ns: u64,
    /// The goroutine (g) that started the span.
    pub goroutine: u64,
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    /// The parent span: the caller's (from an incoming header) for a server span,
    /// the span being served for a client call.
    pub parent_span_id: Option<[u8; 8]>,
    /// W3C trace flags decided in the kernel (bit 0: sampled).
    pub flags: u8,
    pub attributes: Vec<KeyValue>,
    pub status: Status,
    /// How the span's TCP connection is found.
    pub connection: Connection,
}

/// How a span finds the TCP connection its call travelled on, in the socket
/// probe's table of the pod's connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connection {
    /// The probe knows nothing to look it up by.
    Unknown,
    /// A server span: the remote (client) end of the connection it was served on.
    Accepted(SocketAddr),
    /// A client span that read its connection's peer address.
    Dialed(SocketAddr),
    /// A client span that knows only the server's port (and its IP when the host
    /// was one): the connection the process used to that peer during the span.
    DialedDuring { ip: Option<IpAddr>, port: u16 },
}

impl ProbeSpan {
    /// A span from its record's head; the library adds the rest.
    pub fn from_head(head: &span_head, kind: SpanKind, name: String) -> ProbeSpan {
        ProbeSpan {
            name,
            kind,
            start_ns: head.start_ns,
            end_ns: head.end_ns,
            goroutine: head.goroutine,
            trace_id: head.sc.trace_id,
            span_id: head.sc.span_id,
            parent_span_id: (head.has_parent != 0).then_some(head.parent_span_id),
            flags: head.sc.flags,
            attributes: Vec::new(),
            status: Status::Unset,
            connection: Connection::Unknown,
        }
    }

    /// Whether the kernel sampled the span (only sampled spans are exported).
    pub fn sampled(&self) -> bool {
        self.flags & 1 != 0
    }

    /// The value of attribute `key`, if set.
    pub fn attribute(&self, key: &str) -> Option<&opentelemetry::Value> {
        self.attributes.iter().find(|kv| kv.key.as_str() == key).map(|kv| &kv.value)
    }
}

/// What decoding a record may need to know about its target beyond the record.
pub trait TargetInfo: Sync {
    /// The Go type name of an `error` value by its itab's runtime address
    /// (`*net.OpError`), for `error.type`.
    fn error_type(&self, itab: u64) -> Option<&str>;
}

/// A target nothing is known about (tests, tools).
pub struct NoTargetInfo;

impl TargetInfo for NoTargetInfo {
    fn error_type(&self, _: u64) -> Option<&str> {
        None
    }
}

/// A ring-buffer record as its generated type (`T` is one of [`crate::records`]'
/// plain-old-data structs); None when the bytes are too short.
pub fn read_record<T: Copy>(bytes: &[u8]) -> Option<T> {
    if bytes.len() < std::mem::size_of::<T>() {
        return None;
    }
    // SAFETY: length checked; T is a plain-old-data struct generated from a C
    // header, every bit pattern valid; read unaligned.
    Some(unsafe { std::ptr::read_unaligned(bytes.as_ptr() as *const T) })
}

/// The bytes of a record (for tests that build one).
pub fn record_bytes<T: Copy>(record: &T) -> Vec<u8> {
    // SAFETY: T is a plain-old-data record; its bytes are readable for its size.
    unsafe { std::slice::from_raw_parts(record as *const T as *const u8, std::mem::size_of::<T>()) }.to_vec()
}

/// A string field of a record: a buffer and the Go string's full length. Returns
/// the text (lossy UTF-8) and whether it was cut to the buffer.
pub fn text(buf: &[std::os::raw::c_char], len: u16) -> (String, bool) {
    let n = (len as usize).min(buf.len());
    let bytes: Vec<u8> = buf[..n].iter().map(|&c| c as u8).collect();
    (String::from_utf8_lossy(&bytes).into_owned(), len as usize > buf.len())
}

/// Writes `s` into a record's string field (for tests that build records).
pub fn set_text(buf: &mut [std::os::raw::c_char], len: &mut u16, s: &str) {
    for (d, b) in buf.iter_mut().zip(s.bytes()) {
        *d = b as std::os::raw::c_char;
    }
    *len = s.len() as u16;
}

impl ip_port {
    /// The address, when the probe could read one.
    pub fn addr(&self) -> Option<SocketAddr> {
        let ip: IpAddr = match self.ip_len {
            4 => std::net::Ipv4Addr::new(self.ip[0], self.ip[1], self.ip[2], self.ip[3]).into(),
            16 => {
                let v6 = std::net::Ipv6Addr::from(self.ip);
                v6.to_ipv4_mapped().map(Into::into).unwrap_or(v6.into())
            }
            _ => return None,
        };
        Some(SocketAddr::new(ip, self.port))
    }
}

/// Splits `host:port`, `[v6]:port`, `host` or `v6` into host and optional port.
pub fn split_host_port(s: &str) -> Option<(&str, Option<u16>)> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    if let Some(rest) = s.strip_prefix('[') {
        let (host, tail) = rest.split_once(']')?;
        let port = tail.strip_prefix(':').and_then(|p| p.parse().ok());
        return Some((host, port));
    }
    match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => Some((h, p.parse().ok())),
        _ => Some((s, None)),
    }
}

/// `server.address` and `server.port` (or `client.*`, by `prefix`) of an address.
pub fn push_address(attrs: &mut Vec<KeyValue>, prefix: &str, addr: Option<SocketAddr>) {
    if let Some(a) = addr {
        attrs.push(KeyValue::new(format!("{prefix}.address"), a.ip().to_string()));
        attrs.push(KeyValue::new(format!("{prefix}.port"), a.port() as i64));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_and_ports() {
        assert_eq!(split_host_port("example.com"), Some(("example.com", None)));
        assert_eq!(split_host_port("10.0.0.1:80"), Some(("10.0.0.1", Some(80))));
        assert_eq!(split_host_port("::1"), Some(("::1", None)));
        assert_eq!(split_host_port("[::1]:9"), Some(("::1", Some(9))));
        assert_eq!(split_host_port(" "), None);
    }

    #[test]
    fn text_fields_are_cut_to_their_buffer() {
        let mut buf = [0 as std::os::raw::c_char; 4];
        let mut len = 0;
        set_text(&mut buf, &mut len, "abcdef");
        assert_eq!(text(&buf, len), ("abcd".to_string(), true));
        set_text(&mut buf, &mut len, "ab");
        assert_eq!(text(&buf, len), ("ab".to_string(), false));
    }

    #[test]
    fn head_gives_ids_and_parent() {
        let mut head = span_head { start_ns: 5, end_ns: 9, goroutine: 7, ..Default::default() };
        head.sc.flags = 1;
        let s = ProbeSpan::from_head(&head, SpanKind::Client, "x".into());
        assert!(s.sampled() && s.parent_span_id.is_none());
        head.has_parent = 1;
        head.parent_span_id = [3; 8];
        let s = ProbeSpan::from_head(&head, SpanKind::Client, "x".into());
        assert_eq!(s.parent_span_id, Some([3; 8]));
        assert_eq!((s.start_ns, s.end_ns, s.goroutine), (5, 9, 7));
    }
}
