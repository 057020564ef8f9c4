//! gRPC server probe (google.golang.org/grpc): one SERVER span per RPC, from
//! `(*grpc.Server).handleStream` entry to the status write. C program:
//! `server.bpf.c` beside this file; its record: `records.h`. Cost: 2 uprobe hits per RPC.
//!
//! Layouts differ across grpc-go releases (uprobes/grpc/layouts.md): the server
//! stream is `transport.Stream` before 1.69, a `ServerStream` embedding `*Stream`
//! in 1.69–1.76 and embedding `Stream` by value from 1.77; the status writer is
//! `WriteStatus` before 1.69 and `writeStatus` after. Offsets come from the binary.

use opentelemetry::trace::SpanKind;

use super::{code_status, grpc_field, rpc_attributes, STATUS_ADDRESSES, STATUS_FIELDS};
use crate::records::grpc_server_record;
use crate::shared_fields::{GO_NET, TCP_ADDR_ITAB};
use crate::span::{push_address, read_record, text, Connection, ProbeSpan, TargetInfo};
use crate::{std_field, AddressSpec, FieldSpec, FunctionSpec, Need, ProbeSpec};

pub const HANDLE_STREAM: &str = "google.golang.org/grpc.(*Server).handleStream";
pub const WRITE_STATUS: &str = "google.golang.org/grpc/internal/transport.(*http2Server).writeStatus|\
                                google.golang.org/grpc/internal/transport.(*http2Server).WriteStatus";
const TRANSPORT: &str = "google.golang.org/grpc/internal/transport";

pub static SPEC: ProbeSpec = ProbeSpec {
    name: "grpc_server",
    modules: &[&super::MODULE],
    functions: &[
        FunctionSpec {
            symbol: HANDLE_STREAM,
            entry_program: Some("handle_stream_entry"),
            return_program: None,
            need: Need::Always,
        },
        FunctionSpec {
            symbol: WRITE_STATUS,
            entry_program: Some("write_status_entry"),
            return_program: None,
            need: Need::Always,
        },
    ],
    fields: &[FIELDS, GO_NET, STATUS_FIELDS, crate::go_header::FIELDS],
    addresses: &[
        TCP_ADDR_ITAB,
        STATUS_ADDRESSES[0],
        STATUS_ADDRESSES[1],
        AddressSpec { global: "value_ctx_itab", concrete: "*context.valueCtx", interface: "context.Context" },
    ],
    object: crate::bpf_object!("grpc_server"),
    decode,
    kernel_end: None,
    derive,
};

const FIELDS: &[FieldSpec] = &[
    FieldSpec {
        required: true,
        ..grpc_field("off_stream_method", "google.golang.org/grpc/internal/transport.Stream", "method")
    },
    grpc_field("off_stream_ctx", "google.golang.org/grpc/internal/transport.Stream", "ctx"),
    grpc_field("off_http2server_peer", "google.golang.org/grpc/internal/transport.http2Server", "peer"),
    grpc_field("off_peer_addr", "google.golang.org/grpc/peer.Peer", "Addr"),
    grpc_field("off_peer_local_addr", "google.golang.org/grpc/peer.Peer", "LocalAddr"),
    std_field("off_valuectx_val", "context.valueCtx", "val", false),
    grpc_field("off_serverstream_st", "google.golang.org/grpc/internal/transport.ServerStream", "st"),
];

/// grpc 1.69–1.76 embed `*Stream` in `ServerStream` (its next field sits at 8).
fn derive(offset: crate::OffsetLookup) -> Vec<(&'static str, u64)> {
    let st = offset(&format!("{TRANSPORT}.ServerStream"), "st");
    vec![("stream_embed_ptr", (st == Some(8)) as u64)]
}

/// The SERVER span of one RPC served.
fn decode(bytes: &[u8], _: &dyn TargetInfo) -> Option<ProbeSpan> {
    let r: grpc_server_record = read_record(bytes)?;
    let (name, attributes) = rpc_attributes(&text(&r.method, r.method_len).0, r.code);
    let mut span = ProbeSpan::from_head(&r.head, SpanKind::Server, name);
    span.attributes = attributes;
    push_address(&mut span.attributes, "server", r.local.addr());
    push_address(&mut span.attributes, "client", r.peer.addr());
    span.status = code_status(r.code, server_error(r.code));
    if let Some(peer) = r.peer.addr() {
        span.connection = Connection::Accepted(peer);
    }
    Some(span)
}

/// Codes that are errors for the server (semantic conventions): UNKNOWN,
/// DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS.
fn server_error(code: i32) -> bool {
    matches!(code, 2 | 4 | 12 | 13 | 14 | 15)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::span::{record_bytes, set_text, NoTargetInfo};
    use opentelemetry::trace::Status;

    #[test]
    fn server_span_and_which_codes_are_errors() {
        let mut r = grpc_server_record { code: 5, ..Default::default() };
        r.head.sc.flags = 1;
        set_text(&mut r.method, &mut r.method_len, "/helloworld.Greeter/SayHello");
        r.peer = crate::records::ip_port { ip: [0; 16], ip_len: 4, port: 4000, ..Default::default() };
        r.peer.ip[..4].copy_from_slice(&[127, 0, 0, 1]);
        let s = decode(&record_bytes(&r), &NoTargetInfo).unwrap();
        assert_eq!((s.name.as_str(), s.kind.clone()), ("helloworld.Greeter/SayHello", SpanKind::Server));
        assert_eq!(s.status, Status::Unset); // NOT_FOUND is the client's error, not the server's
        assert_eq!(s.connection, Connection::Accepted("127.0.0.1:4000".parse().unwrap()));
        assert_eq!(s.attribute("client.port"), Some(&opentelemetry::Value::I64(4000)));
        r.code = 14;
        assert_eq!(decode(&record_bytes(&r), &NoTargetInfo).unwrap().status, Status::error("UNAVAILABLE"));
    }
}
