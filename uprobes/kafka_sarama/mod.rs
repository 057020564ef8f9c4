//! github.com/IBM/sarama: its producer probe ([`producer`], `producer.bpf.c`) and
//! what any Kafka probe reads of sarama's values (`sarama.h`, [`fields`]): the
//! consumer side is the shared Kafka consumer probe (`kafka/consumer.bpf.c`).
//! Functions and layouts across releases: `tests/go-apps/kafkaapp/PROBING.md`.

pub mod fields;
pub mod producer;
