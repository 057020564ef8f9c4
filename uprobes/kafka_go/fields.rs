//! The kafka-go Go module and its struct fields the Kafka probes read
//! (`kafka_go.h`, `producer.bpf.c`, the Reader's channel in
//! `kafka/consumer.bpf.c`). All optional: what is unknown is left out of the
//! span; without `Message`'s size (derived from its last field) the Writer's
//! calls are not traced.

use crate::{FieldSpec, GoModule, OffsetLookup};

pub static KAFKA_GO: GoModule = GoModule {
    path: "github.com/segmentio/kafka-go",
    short: "kafka-go",
    oldest: "v0.4.47",
    program: &[("go.mod", include_str!("tracker/kafkago/go.mod")), ("main.go", include_str!("tracker/kafkago/main.go"))],
};

const fn field(global: &'static str, strukt: &'static str, field: &'static str) -> FieldSpec {
    FieldSpec { global, strukt, field, required: false }
}

const MESSAGE: &str = "github.com/segmentio/kafka-go.Message";

/// Message and its headers (`kafka.Header` is `protocol.Header`).
pub const MESSAGE_FIELDS: &[FieldSpec] = &[
    field("off_msg_topic", MESSAGE, "Topic"),
    field("off_msg_partition", MESSAGE, "Partition"),
    field("off_msg_offset", MESSAGE, "Offset"),
    field("off_msg_key", MESSAGE, "Key"),
    field("off_msg_value", MESSAGE, "Value"),
    field("off_msg_headers", MESSAGE, "Headers"),
    field("off_msg_time", MESSAGE, "Time"),
    field("off_header_key", "github.com/segmentio/kafka-go/protocol.Header", "Key"),
    field("off_header_value", "github.com/segmentio/kafka-go/protocol.Header", "Value"),
];

/// The Reader's message channel and configuration.
pub const READER_FIELDS: &[FieldSpec] = &[
    field("off_reader_msgs", "github.com/segmentio/kafka-go.Reader", "msgs"),
    field("off_reader_config", "github.com/segmentio/kafka-go.Reader", "config"),
    field("off_rconf_brokers", "github.com/segmentio/kafka-go.ReaderConfig", "Brokers"),
    field("off_rconf_group", "github.com/segmentio/kafka-go.ReaderConfig", "GroupID"),
    field("off_rmsg_message", "github.com/segmentio/kafka-go.readerMessage", "message"),
];

/// The Writer's default topic.
pub const WRITER_FIELDS: &[FieldSpec] = &[field("off_writer_topic", "github.com/segmentio/kafka-go.Writer", "Topic")];

/// `size_msg`: a Message's size, its last field (`Time`, a time.Time of 24
/// bytes) ending it — the stride of the Writer's `msgs` slice.
pub fn derive(lookup: OffsetLookup) -> Vec<(&'static str, u64)> {
    lookup(MESSAGE, "Time").map(|t| vec![("size_msg", t + 24)]).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #[test]
    fn message_size_from_its_last_field() {
        let lookup = |s: &str, f: &str| (s == super::MESSAGE && f == "Time").then_some(136);
        assert_eq!(super::derive(&lookup), vec![("size_msg", 160)]);
        assert!(super::derive(&|_: &str, _: &str| None).is_empty());
    }
}
