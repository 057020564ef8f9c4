//! gRPC client probe (google.golang.org/grpc): one CLIENT event per RPC, unary or
//! streaming, from `(*clientStream).newAttemptLocked` to `(*csAttempt).finish`
//! (C program: `probe.bpf.c` beside this file). Cost: 2 uprobe hits per RPC.

use crate::shared_fields::{grpc_field, GO_NET, GRPC_STATUS, GRPC_STATUS_ADDRESSES, TCP_ADDR_ITAB};
use crate::{Event, FieldSpec, FunctionSpec, ProbeSpec, RawIpPort, RawSpanContext};

pub const NEW_ATTEMPT: &str = "google.golang.org/grpc.(*clientStream).newAttemptLocked";
pub const ATTEMPT_FINISH: &str = "google.golang.org/grpc.(*csAttempt).finish";
pub const CREATE_HEADER_FIELDS: &str = "google.golang.org/grpc/internal/transport.(*http2Client).createHeaderFields";
pub const ORIGINATE_STREAM: &str = "google.golang.org/grpc/internal/transport.(*loopyWriter).originateStream";
pub const CLIENT_HEADER_HANDLER: &str = "google.golang.org/grpc/internal/transport.(*loopyWriter).clientHeaderHandler";

pub static SPEC: ProbeSpec = ProbeSpec {
    name: "grpc_client",
    module: Some(&super::MODULE),
    functions: &[
        FunctionSpec {
            symbol: NEW_ATTEMPT,
            entry_program: Some("new_attempt_entry"),
            return_program: None,
            optional: false,
        },
        FunctionSpec {
            symbol: ATTEMPT_FINISH,
            entry_program: Some("attempt_finish_entry"),
            return_program: None,
            optional: false,
        },
        FunctionSpec {
            symbol: CREATE_HEADER_FIELDS,
            entry_program: None,
            return_program: Some("create_header_fields_return"),
            optional: true,
        },
        // One of these two exists (the loopy writer's client-only stream start).
        FunctionSpec {
            symbol: ORIGINATE_STREAM,
            entry_program: Some("originate_stream_entry"),
            return_program: None,
            optional: true,
        },
        FunctionSpec {
            symbol: CLIENT_HEADER_HANDLER,
            entry_program: Some("client_header_handler_entry"),
            return_program: None,
            optional: true,
        },
    ],
    fields: &[FIELDS, GO_NET, GRPC_STATUS],
    addresses: &[TCP_ADDR_ITAB, GRPC_STATUS_ADDRESSES[0], GRPC_STATUS_ADDRESSES[1]],
    object: crate::bpf_object!("grpc_client"),
    decode,
    derive: crate::derive_nothing,
};

const FIELDS: &[FieldSpec] = &[
    FieldSpec { required: true, ..grpc_field("off_cs_callhdr", "google.golang.org/grpc.clientStream", "callHdr") },
    grpc_field("off_cs_ctx", "google.golang.org/grpc.clientStream", "ctx"),
    FieldSpec {
        required: true,
        ..grpc_field("off_callhdr_method", "google.golang.org/grpc/internal/transport.CallHdr", "Method")
    },
    FieldSpec { required: true, ..grpc_field("off_attempt_cs", "google.golang.org/grpc.csAttempt", "cs") },
    grpc_field("off_attempt_transport", "google.golang.org/grpc.csAttempt", "t|transport"),
    grpc_field("off_http2client_remote", "google.golang.org/grpc/internal/transport.http2Client", "remoteAddr"),
    grpc_field("off_outstream_id", "google.golang.org/grpc/internal/transport.outStream", "id"),
    grpc_field("off_headerframe_hf", "google.golang.org/grpc/internal/transport.headerFrame", "hf"),
    grpc_field("off_clientheaders_id", "google.golang.org/grpc/internal/transport.clientHeaders", "streamID"),
    grpc_field("off_clientheaders_hf", "google.golang.org/grpc/internal/transport.clientHeaders", "hf"),
];

/// One RPC made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrpcClientEvent {
    pub start_ns: u64,
    pub end_ns: u64,
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub parent_span_id: Option<[u8; 8]>,
    pub flags: u8,
    pub code: i32,
    pub method: String,
    pub peer: Option<std::net::SocketAddr>,
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
    method_len: u16,
    _pad2: [u16; 3],
    method: [u8; 128],
}

const _: () = assert!(std::mem::size_of::<RawEvent>() == 224, "update probe.bpf.c");

fn decode(bytes: &[u8]) -> Option<Event> {
    let raw: RawEvent = crate::read_raw(bytes)?;
    Some(Event::GrpcClient(GrpcClientEvent {
        start_ns: raw.start_ns,
        end_ns: raw.end_ns,
        trace_id: raw.sc.trace_id,
        span_id: raw.sc.span_id,
        parent_span_id: (raw.has_parent != 0).then_some(raw.parent_span_id),
        flags: raw.sc.flags,
        code: raw.code,
        method: crate::event_text(&raw.method, raw.method_len).0,
        peer: raw.peer.addr(),
    }))
}
