/* gosight — what the Kafka probes read of github.com/segmentio/kafka-go's values:
 * a Message (topic, partition, offset, key, value, record headers), the messages
 * a Reader queues for its caller (readerMessage), and the Reader's and Writer's
 * configuration (group, brokers). Offsets are filled per target
 * (kafka_go/fields.rs); layouts across releases: tests/go-apps/kafkaapp/PROBING.md.
 */
#pragma once

#include "go_types.h"
#include "../kafka/kafka.h"

volatile const u64 off_msg_topic = OFF_ABSENT;     /* Message.Topic */
volatile const u64 off_msg_partition = OFF_ABSENT; /* Message.Partition (int) */
volatile const u64 off_msg_offset = OFF_ABSENT;    /* Message.Offset */
volatile const u64 off_msg_key = OFF_ABSENT;       /* Message.Key ([]byte) */
volatile const u64 off_msg_value = OFF_ABSENT;     /* Message.Value ([]byte) */
volatile const u64 off_msg_headers = OFF_ABSENT;   /* Message.Headers ([]protocol.Header) */
volatile const u64 off_header_key = OFF_ABSENT;    /* protocol.Header.Key (string) */
volatile const u64 off_header_value = OFF_ABSENT;  /* protocol.Header.Value ([]byte) */
volatile const u64 off_msg_time = OFF_ABSENT;      /* Message.Time (its last field: gives size_msg) */
volatile const u64 size_msg = OFF_ABSENT;          /* sizeof(Message) (derived) */

/* A kafka-go Message at m: topic, key, partition, offset; the context of its
 * `traceparent` header into *parent (consumer side). */
static __always_inline void kafka_go_message(u64 m, struct kafka_message *out, struct span_ctx *parent)
{
	struct go_string s = {};
	if (off_msg_topic != OFF_ABSENT && !bpf_probe_read_user(&s, sizeof(s), (void *)(m + off_msg_topic)))
		kafka_set_topic(out, s.ptr, s.len);
	struct go_string key = {};
	if (off_msg_key != OFF_ABSENT)
		bpf_probe_read_user(&key, sizeof(key), (void *)(m + off_msg_key));
	kafka_set_key(out, key.ptr != 0, key.ptr, key.len);
	out->partition = off_msg_partition != OFF_ABSENT ? (s64)read_u64(m + off_msg_partition) : -1;
	out->offset = off_msg_offset != OFF_ABSENT ? (s64)read_u64(m + off_msg_offset) : -1;
	if (!parent)
		return;
	struct go_string headers = {};
	if (off_msg_headers != OFF_ABSENT)
		bpf_probe_read_user(&headers, sizeof(headers), (void *)(m + off_msg_headers));
	struct kafka_header_layout l = { .stride = 40, .indirect = 0, .key_off = off_header_key, .value_off = off_header_value };
	out->has_context = kafka_find_traceparent(headers.ptr, headers.len, &l, parent);
}
