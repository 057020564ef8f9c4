//! The sarama Go module, its struct fields the Kafka probes read (`sarama.h`,
//! `producer.bpf.c`, the consumer's channel in `kafka/consumer.bpf.c`) and the
//! Encoder itabs whose bytes are read. All optional: what is unknown is left out
//! of the span (a consumer without its message channel stands down by itself).

use crate::{AddressSpec, FieldSpec, GoModule};

pub static SARAMA: GoModule = GoModule {
    path: "github.com/IBM/sarama",
    short: "sarama",
    oldest: "v1.45.0",
    program: &[("go.mod", include_str!("tracker/sarama/go.mod")), ("main.go", include_str!("tracker/sarama/main.go"))],
};

const fn field(global: &'static str, strukt: &'static str, field: &'static str) -> FieldSpec {
    FieldSpec { global, strukt, field, required: false }
}

/// ProducerMessage, and the producer a produceSet belongs to.
pub const PRODUCER_FIELDS: &[FieldSpec] = &[
    field("off_pm_topic", "github.com/IBM/sarama.ProducerMessage", "Topic"),
    field("off_pm_key", "github.com/IBM/sarama.ProducerMessage", "Key"),
    field("off_pm_value", "github.com/IBM/sarama.ProducerMessage", "Value"),
    field("off_pm_offset", "github.com/IBM/sarama.ProducerMessage", "Offset"),
    field("off_pm_partition", "github.com/IBM/sarama.ProducerMessage", "Partition"),
    field("off_ps_parent", "github.com/IBM/sarama.produceSet", "parent"),
];

/// ConsumerMessage and its headers; the partition consumer's channel and broker;
/// a consumer group session's group name.
pub const CONSUMER_FIELDS: &[FieldSpec] = &[
    field("off_cm_headers", "github.com/IBM/sarama.ConsumerMessage", "Headers"),
    field("off_cm_key", "github.com/IBM/sarama.ConsumerMessage", "Key"),
    field("off_cm_topic", "github.com/IBM/sarama.ConsumerMessage", "Topic"),
    field("off_cm_partition", "github.com/IBM/sarama.ConsumerMessage", "Partition"),
    field("off_cm_offset", "github.com/IBM/sarama.ConsumerMessage", "Offset"),
    field("off_rh_key", "github.com/IBM/sarama.RecordHeader", "Key"),
    field("off_rh_value", "github.com/IBM/sarama.RecordHeader", "Value"),
    field("off_pc_messages", "github.com/IBM/sarama.partitionConsumer", "messages"),
    field("off_pc_broker", "github.com/IBM/sarama.partitionConsumer", "broker"),
    field("off_bc_broker", "github.com/IBM/sarama.brokerConsumer", "broker"),
    field("off_broker_addr", "github.com/IBM/sarama.Broker", "addr"),
    field("off_cgs_parent", "github.com/IBM/sarama.consumerGroupSession", "parent"),
    field("off_cg_group", "github.com/IBM/sarama.consumerGroup", "groupID"),
];

/// The Encoders whose bytes the producer probe reads (0 when the binary has none).
pub const ADDRESSES: &[AddressSpec] = &[
    AddressSpec {
        global: "byte_encoder_itab",
        concrete: "github.com/IBM/sarama.ByteEncoder",
        interface: "github.com/IBM/sarama.Encoder",
    },
    AddressSpec {
        global: "string_encoder_itab",
        concrete: "github.com/IBM/sarama.StringEncoder",
        interface: "github.com/IBM/sarama.Encoder",
    },
];
