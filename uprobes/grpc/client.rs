//! gRPC client probe (google.golang.org/grpc): one CLIENT span per RPC, unary or
//! streaming, from `(*clientStream).newAttemptLocked` to `(*csAttempt).finish`
//! (C program: `client.bpf.c` beside this file; its record: `records.h`). Cost: 2 uprobe hits per RPC.

use opentelemetry::trace::SpanKind;

use super::{code_status, grpc_field, rpc_attributes, STATUS_ADDRESSES, STATUS_FIELDS};
use crate::records::grpc_client_record;
use crate::shared_fields::{GO_NET, TCP_ADDR_ITAB};
use crate::span::{push_address, read_record, text, Connection, ProbeSpan, TargetInfo};
use crate::{FieldSpec, FunctionSpec, Need, ProbeSpec};

pub const NEW_ATTEMPT: &str = "google.golang.org/grpc.(*clientStream).newAttemptLocked";
pub const ATTEMPT_FINISH: &str = "google.golang.org/grpc.(*csAttempt).finish";
pub const CREATE_HEADER_FIELDS: &str = "google.golang.org/grpc/internal/transport.(*http2Client).createHeaderFields";
pub const ORIGINATE_STREAM: &str = "google.golang.org/grpc/internal/transport.(*loopyWriter).originateStream";
pub const CLIENT_HEADER_HANDLER: &str = "google.golang.org/grpc/internal/transport.(*loopyWriter).clientHeaderHandler";

pub static SPEC: ProbeSpec = ProbeSpec {
    name: "grpc_client",
    modules: &[&super::MODULE],
    functions: &[
        FunctionSpec {
            symbol: NEW_ATTEMPT,
            entry_program: Some("new_attempt_entry"),
            return_program: None,
            need: Need::Always,
        },
        FunctionSpec {
            symbol: ATTEMPT_FINISH,
            entry_program: Some("attempt_finish_entry"),
            return_program: None,
            need: Need::Always,
        },
        FunctionSpec {
            symbol: CREATE_HEADER_FIELDS,
            entry_program: None,
            return_program: Some("create_header_fields_return"),
            need: Need::ForPropagation,
        },
        // One of these two exists (the loopy writer's client-only stream start).
        FunctionSpec {
            symbol: ORIGINATE_STREAM,
            entry_program: Some("originate_stream_entry"),
            return_program: None,
            need: Need::ForPropagation,
        },
        FunctionSpec {
            symbol: CLIENT_HEADER_HANDLER,
            entry_program: Some("client_header_handler_entry"),
            return_program: None,
            need: Need::ForPropagation,
        },
    ],
    fields: &[FIELDS, GO_NET, STATUS_FIELDS],
    addresses: &[TCP_ADDR_ITAB, STATUS_ADDRESSES[0], STATUS_ADDRESSES[1]],
    object: crate::bpf_object!("grpc_client"),
    decode,
    kernel_end: None,
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

/// The CLIENT span of one RPC made. Any non-OK code is an error for the client.
fn decode(bytes: &[u8], _: &dyn TargetInfo) -> Option<ProbeSpan> {
    let r: grpc_client_record = read_record(bytes)?;
    let (name, attributes) = rpc_attributes(&text(&r.method, r.method_len).0, r.code);
    let mut span = ProbeSpan::from_head(&r.head, SpanKind::Client, name);
    span.attributes = attributes;
    push_address(&mut span.attributes, "server", r.peer.addr());
    span.status = code_status(r.code, r.code != 0);
    if let Some(peer) = r.peer.addr() {
        span.connection = Connection::Dialed(peer);
    }
    Some(span)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::span::{record_bytes, set_text, NoTargetInfo};

    #[test]
    fn client_span_any_non_ok_code_is_an_error() {
        let mut r = grpc_client_record { code: 5, ..Default::default() };
        r.head.sc.flags = 1;
        set_text(&mut r.method, &mut r.method_len, "/helloworld.Greeter/SayHello");
        let s = decode(&record_bytes(&r), &NoTargetInfo).unwrap();
        assert_eq!(s.kind, SpanKind::Client);
        assert_eq!(s.status, opentelemetry::trace::Status::error("NOT_FOUND"));
        assert_eq!(s.connection, Connection::Unknown);
    }
}
