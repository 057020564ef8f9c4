//! gRPC server probe (google.golang.org/grpc): one SERVER event per RPC, from
//! `(*grpc.Server).handleStream` entry to the status write. C program:
//! `probe.bpf.c` beside this file. Cost: 2 uprobe hits per RPC.
//!
//! Layouts differ across grpc-go releases (uprobes/grpc/layouts.md): the server
//! stream is `transport.Stream` before 1.69, a `ServerStream` embedding `*Stream`
//! in 1.69–1.76 and embedding `Stream` by value from 1.77; the status writer is
//! `WriteStatus` before 1.69 and `writeStatus` after. Offsets come from the binary.

use crate::shared_fields::{grpc_field, GO_NET, GRPC_STATUS, GRPC_STATUS_ADDRESSES, TCP_ADDR_ITAB};
use crate::{std_field, AddressSpec, Event, FieldSpec, FunctionSpec, ProbeSpec, RawIpPort, RawSpanContext};

pub const HANDLE_STREAM: &str = "google.golang.org/grpc.(*Server).handleStream";
pub const WRITE_STATUS: &str = "google.golang.org/grpc/internal/transport.(*http2Server).writeStatus|\
                                google.golang.org/grpc/internal/transport.(*http2Server).WriteStatus";
const TRANSPORT: &str = "google.golang.org/grpc/internal/transport";

pub static SPEC: ProbeSpec = ProbeSpec {
    name: "grpc_server",
    module: Some(&super::MODULE),
    functions: &[
        FunctionSpec {
            symbol: HANDLE_STREAM,
            entry_program: Some("handle_stream_entry"),
            return_program: None,
            optional: false,
        },
        FunctionSpec {
            symbol: WRITE_STATUS,
            entry_program: Some("write_status_entry"),
            return_program: None,
            optional: false,
        },
    ],
    fields: &[FIELDS, GO_NET, GRPC_STATUS, crate::go_header::FIELDS],
    addresses: &[
        TCP_ADDR_ITAB,
        GRPC_STATUS_ADDRESSES[0],
        GRPC_STATUS_ADDRESSES[1],
        AddressSpec { global: "value_ctx_itab", concrete: "*context.valueCtx", interface: "context.Context" },
    ],
    object: crate::bpf_object!("grpc_server"),
    decode,
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

/// One RPC served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrpcServerEvent {
    pub start_ns: u64,
    pub end_ns: u64,
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub parent_span_id: Option<[u8; 8]>,
    pub flags: u8,
    /// gRPC status code sent.
    pub code: i32,
    /// Full method, `/package.Service/Method`.
    pub method: String,
    pub peer: Option<std::net::SocketAddr>,
    pub local: Option<std::net::SocketAddr>,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct RawEvent {
    start_ns: u64,
    end_ns: u64,
    sc: RawSpanContext,
    parent_span_id: [u8; 8],
    code: i32,
    has_parent: u8,
    _pad: [u8; 3],
    peer: RawIpPort,
    local: RawIpPort,
    method_len: u16,
    _pad2: [u16; 3],
    method: [u8; 128],
}

const _: () = assert!(std::mem::size_of::<RawEvent>() == 248, "update probe.bpf.c");

fn decode(bytes: &[u8]) -> Option<Event> {
    let raw: RawEvent = crate::read_raw(bytes)?;
    Some(Event::GrpcServer(GrpcServerEvent {
        start_ns: raw.start_ns,
        end_ns: raw.end_ns,
        trace_id: raw.sc.trace_id,
        span_id: raw.sc.span_id,
        parent_span_id: (raw.has_parent != 0).then_some(raw.parent_span_id),
        flags: raw.sc.flags,
        code: raw.code,
        method: crate::event_text(&raw.method, raw.method_len).0,
        peer: raw.peer.addr(),
        local: raw.local.addr(),
    }))
}
