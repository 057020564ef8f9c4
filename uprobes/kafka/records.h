/* gosight — the Kafka probes' ring-buffer record (kafka_sarama/producer.bpf.c, kafka_go/producer.bpf.c, kafka/consumer.bpf.c): one
 * per PRODUCER span (`send <topic>`: a message, or a batch of them) and per
 * CONSUMER span (`process <topic>`: one message handed to the application). The
 * Rust side (`gosight_uprobes::records`) is generated from this file by build.rs;
 * the span is built from it in `kafka/span.rs`.
 */
#pragma once

#include "span_head.h"

#define KAFKA_TOPIC_CAP 128
#define KAFKA_KEY_CAP 64
#define KAFKA_GROUP_CAP 64
#define KAFKA_SERVER_CAP 64

enum kafka_operation {
	KAFKA_SEND = 0,    /* PRODUCER span */
	KAFKA_PROCESS = 1, /* CONSUMER span */
};

enum kafka_library {
	KAFKA_SARAMA = 0,   /* github.com/IBM/sarama */
	KAFKA_KAFKA_GO = 1, /* github.com/segmentio/kafka-go */
};

/* One message as the probe read it (the first of a batch). */
struct kafka_message {
	s64 partition;  /* -1: unknown */
	s64 offset;     /* -1: unknown */
	s64 key_len;    /* the key's full length; -1: nil key */
	u16 topic_len;  /* the topic's full length (above the buffer: cut) */
	u8 has_context; /* a valid `traceparent` record header was read (consumer) */
	u8 _pad[5];
	char topic[KAFKA_TOPIC_CAP];
	char key[KAFKA_KEY_CAP];
};

struct kafka_record {
	struct span_head head;
	u8 operation; /* enum kafka_operation */
	u8 library;   /* enum kafka_library */
	u16 group_len;
	u16 server_len;
	u16 _pad;
	u32 batch;     /* messages in the span (1 for one message) */
	u32 _pad2;
	u64 error_tab; /* itab of the error; 0 = none */
	char group[KAFKA_GROUP_CAP];   /* consumer group */
	char server[KAFKA_SERVER_CAP]; /* the broker, "host:port" */
	struct kafka_message msg;
};
