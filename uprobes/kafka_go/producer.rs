//! kafka-go producer probe: one PRODUCER span (`send <topic>`) per
//! `(*Writer).WriteMessages` call, `messaging.batch.message_count` when it
//! carries several messages, parented to the span the calling goroutine serves
//! (or its context's); each message's context is offered to the kernel's
//! record-header insertion. C program: `producer.bpf.c` beside this file.
//!
//! Cost: 2 uprobe hits per call (entry, RET), whatever the number of messages.

use super::fields::{derive, MESSAGE_FIELDS, WRITER_FIELDS};
use crate::{FunctionSpec, Need, ProbeSpec};

pub const WRITE_MESSAGES: &str = "github.com/segmentio/kafka-go.(*Writer).WriteMessages";

pub static SPEC: ProbeSpec = ProbeSpec {
    name: "kafka_go_producer",
    modules: &[&super::fields::KAFKA_GO],
    functions: &[FunctionSpec {
        symbol: WRITE_MESSAGES,
        entry_program: Some("write_messages_entry"),
        return_program: Some("write_messages_return"),
        need: Need::Always,
    }],
    fields: &[MESSAGE_FIELDS, WRITER_FIELDS],
    addresses: &[],
    object: crate::bpf_object!("kafka_go_producer"),
    decode: crate::kafka::span::decode,
    kernel_end: None,
    derive,
};
