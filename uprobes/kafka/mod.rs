//! Kafka, what its client libraries share: the record every Kafka probe sends
//! (`records.h`) and the span built from it ([`span`]: PRODUCER `send <topic>`,
//! CONSUMER `process <topic>`, stable messaging conventions), the C helpers the
//! probes read messages with (`kafka.h`), and the consumer probe ([`consumer`]),
//! one object for sarama and kafka-go since both hand messages to the
//! application over a channel. The producer probes are per library:
//! `kafka_sarama/`, `kafka_go/`. Design: `tests/go-apps/kafkaapp/PROBING.md`;
//! test app: `tests/go-apps/kafkaapp`.

pub mod consumer;
pub mod span;
