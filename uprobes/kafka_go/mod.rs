//! github.com/segmentio/kafka-go: its producer probe ([`producer`],
//! `producer.bpf.c`: the Writer) and what any Kafka probe reads of kafka-go's
//! values (`kafka_go.h`, [`fields`]): the Reader side is the shared Kafka
//! consumer probe (`kafka/consumer.bpf.c`). Functions and layouts across
//! releases: `tests/go-apps/kafkaapp/PROBING.md`.

pub mod fields;
pub mod producer;
