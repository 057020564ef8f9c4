//! sarama producer probe: one PRODUCER span (`send <topic>`) per message a
//! SyncProducer or AsyncProducer delivers or fails, parented to the span the
//! producing goroutine serves, ended with the partition and offset the broker
//! gave it. C program: `producer.bpf.c` beside this file; record and span:
//! `kafka/records.h`, [`crate::kafka::span`].
//!
//! Cost: 3 uprobe hits per message, all entry probes — the caller's
//! (`SendMessage`, `Input`), the broker producer adding it to a batch
//! (`(*produceSet).add`, where the span starts and its context is offered to the
//! kernel's record-header insertion), and one per batch when the broker answers
//! (`returnSuccesses`/`returnErrors`).

use super::fields::{ADDRESSES, PRODUCER_FIELDS};
use crate::{FunctionSpec, Need, ProbeSpec};

pub const SEND_MESSAGE: &str = "github.com/IBM/sarama.(*syncProducer).SendMessage";
pub const SEND_MESSAGE_CTX: &str = "github.com/IBM/sarama.(*syncProducer).SendMessageContext";
pub const SEND_MESSAGES: &str = "github.com/IBM/sarama.(*syncProducer).SendMessages";
pub const SEND_MESSAGES_CTX: &str = "github.com/IBM/sarama.(*syncProducer).SendMessagesContext";
pub const INPUT: &str = "github.com/IBM/sarama.(*asyncProducer).Input";
pub const PRODUCE_SET_ADD: &str = "github.com/IBM/sarama.(*produceSet).add";
pub const RETURN_SUCCESSES: &str = "github.com/IBM/sarama.(*asyncProducer).returnSuccesses";
pub const RETURN_ERRORS: &str = "github.com/IBM/sarama.(*asyncProducer).returnErrors";
pub const RETURN_ERROR: &str = "github.com/IBM/sarama.(*asyncProducer).returnError";

const fn entry(symbol: &'static str, program: &'static str, need: Need) -> FunctionSpec {
    FunctionSpec { symbol, entry_program: Some(program), return_program: None, need }
}

pub static SPEC: ProbeSpec = ProbeSpec {
    name: "kafka_sarama_producer",
    modules: &[&super::fields::SARAMA],
    // From v1.61 SendMessage(s) call SendMessage(s)Context, which then carry
    // the probe (one hit, not two).
    functions: &[
        entry(PRODUCE_SET_ADD, "produce_set_add_entry", Need::IfPresent),
        entry(SEND_MESSAGE_CTX, "send_message_ctx_entry", Need::IfPresent),
        entry(SEND_MESSAGE, "send_message_entry", Need::Unless(SEND_MESSAGE_CTX)),
        entry(SEND_MESSAGES_CTX, "send_messages_ctx_entry", Need::IfPresent),
        entry(SEND_MESSAGES, "send_messages_entry", Need::Unless(SEND_MESSAGES_CTX)),
        entry(INPUT, "input_entry", Need::IfPresent),
        entry(RETURN_SUCCESSES, "return_successes_entry", Need::IfPresent),
        // One calls the other (returnErrors → returnError up to v1.50, the other
        // way round since), and the linker inlines the small one.
        entry(RETURN_ERRORS, "return_errors_entry", Need::IfPresent),
        entry(RETURN_ERROR, "return_error_entry", Need::IfPresent),
    ],
    fields: &[PRODUCER_FIELDS],
    addresses: ADDRESSES,
    object: crate::bpf_object!("kafka_sarama_producer"),
    decode: crate::kafka::span::decode,
    kernel_end: None,
    derive: crate::derive_nothing,
};
