/* gosight — what the Kafka probes read of github.com/IBM/sarama's values: a
 * ProducerMessage (topic, key and value Encoders, partition, offset) and a
 * ConsumerMessage (topic, key, partition, offset, record headers). Offsets are
 * filled per target (kafka_sarama/fields.rs); layouts across releases:
 * tests/go-apps/kafkaapp/PROBING.md.
 */
#pragma once

#include "go_types.h"
#include "../kafka/kafka.h"

volatile const u64 off_pm_topic = OFF_ABSENT;     /* ProducerMessage.Topic (string) */
volatile const u64 off_pm_key = OFF_ABSENT;       /* ProducerMessage.Key (Encoder) */
volatile const u64 off_pm_value = OFF_ABSENT;     /* ProducerMessage.Value (Encoder) */
volatile const u64 off_pm_offset = OFF_ABSENT;    /* ProducerMessage.Offset (int64) */
volatile const u64 off_pm_partition = OFF_ABSENT; /* ProducerMessage.Partition (int32) */
volatile const u64 off_cm_headers = OFF_ABSENT;   /* ConsumerMessage.Headers ([]*RecordHeader) */
volatile const u64 off_cm_key = OFF_ABSENT;       /* ConsumerMessage.Key ([]byte) */
volatile const u64 off_cm_topic = OFF_ABSENT;     /* ConsumerMessage.Topic */
volatile const u64 off_cm_partition = OFF_ABSENT; /* ConsumerMessage.Partition (int32) */
volatile const u64 off_cm_offset = OFF_ABSENT;    /* ConsumerMessage.Offset (int64) */
volatile const u64 off_rh_key = OFF_ABSENT;       /* RecordHeader.Key ([]byte) */
volatile const u64 off_rh_value = OFF_ABSENT;     /* RecordHeader.Value ([]byte) */

/* The Encoders whose bytes are read: ByteEncoder ([]byte) and StringEncoder
 * (string); the interface's data word points to the slice or string header. */
volatile const u64 byte_encoder_itab = 0;
volatile const u64 string_encoder_itab = 0;

/* Where an Encoder's bytes are: (ptr, len); 0 when it is nil or another type.
 * Returns whether it was set at all (a non-nil interface). */
static __always_inline int sarama_encoder_bytes(u64 base, u64 off, struct go_string *out)
{
	struct go_iface e = {};
	if (off == OFF_ABSENT || bpf_probe_read_user(&e, sizeof(e), (void *)(base + off)) || !e.tab)
		return 0;
	if ((e.tab == byte_encoder_itab || e.tab == string_encoder_itab) && e.data)
		bpf_probe_read_user(out, sizeof(*out), (void *)e.data);
	return 1;
}

/* Topic and key of a *ProducerMessage; the key's and value's bytes in *key and
 * *value (for the context offer: ptr 0, len -1 for a nil key). */
static __always_inline void sarama_producer_message(u64 pm, struct kafka_message *m, struct go_string *key,
						    struct go_string *value)
{
	struct go_string topic = {};
	if (off_pm_topic != OFF_ABSENT)
		bpf_probe_read_user(&topic, sizeof(topic), (void *)(pm + off_pm_topic));
	kafka_set_topic(m, topic.ptr, topic.len);
	int has_key = sarama_encoder_bytes(pm, off_pm_key, key);
	if (!has_key)
		key->len = -1;
	kafka_set_key(m, has_key, key->ptr, key->len);
	sarama_encoder_bytes(pm, off_pm_value, value);
	m->partition = -1;
	m->offset = -1;
}

/* Partition and offset the broker gave a delivered *ProducerMessage. */
static __always_inline void sarama_producer_result(u64 pm, struct kafka_message *m)
{
	if (off_pm_partition != OFF_ABSENT) {
		s32 p = -1;
		bpf_probe_read_user(&p, sizeof(p), (void *)(pm + off_pm_partition));
		m->partition = p;
	}
	if (off_pm_offset != OFF_ABSENT)
		m->offset = (s64)read_u64(pm + off_pm_offset);
}

/* A *ConsumerMessage: topic, key, partition, offset, and the context of its
 * `traceparent` record header into *parent (m->has_context). */
static __always_inline void sarama_consumer_message(u64 cm, struct kafka_message *m, struct span_ctx *parent)
{
	struct go_string s = {};
	if (off_cm_topic != OFF_ABSENT && !bpf_probe_read_user(&s, sizeof(s), (void *)(cm + off_cm_topic)))
		kafka_set_topic(m, s.ptr, s.len);
	struct go_string key = {};
	if (off_cm_key != OFF_ABSENT)
		bpf_probe_read_user(&key, sizeof(key), (void *)(cm + off_cm_key));
	kafka_set_key(m, key.ptr != 0, key.ptr, key.len);
	m->partition = -1;
	if (off_cm_partition != OFF_ABSENT) {
		s32 p = -1;
		bpf_probe_read_user(&p, sizeof(p), (void *)(cm + off_cm_partition));
		m->partition = p;
	}
	m->offset = off_cm_offset != OFF_ABSENT ? (s64)read_u64(cm + off_cm_offset) : -1;
	struct go_string headers = {};
	if (off_cm_headers != OFF_ABSENT)
		bpf_probe_read_user(&headers, sizeof(headers), (void *)(cm + off_cm_headers));
	struct kafka_header_layout l = { .stride = 8, .indirect = 1, .key_off = off_rh_key, .value_off = off_rh_value };
	m->has_context = kafka_find_traceparent(headers.ptr, headers.len, &l, parent);
}
