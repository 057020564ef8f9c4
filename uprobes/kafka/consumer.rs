//! Kafka consumer probe: one CONSUMER span (`process <topic>`) per message a
//! sarama ConsumerGroup claim or a kafka-go Reader hands to the application,
//! published as the span its receiving goroutine serves — the calls that
//! goroutine makes for the message are its children — and parented to the
//! message's `traceparent` record header. C program: `consumer.bpf.c` beside
//! this file (how the hand-over is seen, and when a span starts and ends).
//!
//! Cost per claim (sarama): 2 hits, `consume` (the group's name) and
//! `Messages` (the channel); per fetch response of a partition, 1
//! (`parseResponse`: the channel of a claim that began before gosight attached;
//! an idle partition gets one every `Consumer.MaxWaitTime`, 500 ms by default).
//! Cost per message: sarama, 1 hit at the handler's receive
//! (`runtime.chanrecv`) and 1 at the fetcher's hand-over when the handler was
//! waiting (`runtime.send`); kafka-go, 1 at `FetchMessage` and 1 at the
//! hand-over. Both runtime functions serve every channel of the process: each
//! other receive and direct hand-over costs a hit that finds nothing (the probe
//! sits on the stack-check jump, ~0.5 µs). They are attached only to binaries
//! with a sarama or kafka-go consumer.

use crate::{std_field, FieldSpec, FunctionSpec, Need, ProbeSpec};

pub const SARAMA_MESSAGES: &str = "github.com/IBM/sarama.(*partitionConsumer).Messages";
pub const SARAMA_CONSUME: &str = "github.com/IBM/sarama.(*consumerGroupSession).consume";
pub const SARAMA_PARSE: &str = "github.com/IBM/sarama.(*partitionConsumer).parseResponse";
pub const KAFKA_GO_FETCH: &str = "github.com/segmentio/kafka-go.(*Reader).FetchMessage";
pub const CHANRECV: &str = "runtime.chanrecv";
pub const SEND: &str = "runtime.send";

const fn entry(symbol: &'static str, program: &'static str, need: Need) -> FunctionSpec {
    FunctionSpec { symbol, entry_program: Some(program), return_program: None, need }
}

pub static SPEC: ProbeSpec = ProbeSpec {
    name: "kafka_consumer",
    modules: &[&crate::kafka_sarama::fields::SARAMA, &crate::kafka_go::fields::KAFKA_GO],
    functions: &[
        entry(SARAMA_MESSAGES, "sarama_messages_entry", Need::IfPresent),
        entry(SARAMA_CONSUME, "sarama_consume_entry", Need::IfPresent),
        entry(SARAMA_PARSE, "sarama_parse_entry", Need::Alongside(&[SARAMA_MESSAGES])),
        entry(KAFKA_GO_FETCH, "kafkago_fetch_entry", Need::IfPresent),
        entry(CHANRECV, "chanrecv_entry", Need::Alongside(&[SARAMA_MESSAGES])),
        entry(SEND, "send_entry", Need::Alongside(&[SARAMA_MESSAGES, KAFKA_GO_FETCH])),
    ],
    fields: &[
        RUNTIME_FIELDS,
        crate::kafka_sarama::fields::CONSUMER_FIELDS,
        crate::kafka_go::fields::MESSAGE_FIELDS,
        crate::kafka_go::fields::READER_FIELDS,
    ],
    addresses: &[],
    object: crate::bpf_object!("kafka_consumer"),
    decode: crate::kafka::span::decode,
    kernel_end: None,
    derive: crate::derive_nothing,
};


/// The channel's buffer and a waiting receiver's goroutine (the runtime's
/// layout: the Go release's; `recvx` moved in Go 1.23). Required: without them (a
/// stripped binary of a Go release the offsets database's std layer does not
/// cover) the probe stands down.
const RUNTIME_FIELDS: &[FieldSpec] = &[
    std_field("off_hchan_qcount", "runtime.hchan", "qcount", true),
    std_field("off_hchan_buf", "runtime.hchan", "buf", true),
    std_field("off_hchan_elemsize", "runtime.hchan", "elemsize", true),
    std_field("off_hchan_recvx", "runtime.hchan", "recvx", true),
    std_field("off_sudog_g", "runtime.sudog", "g", true),
];
