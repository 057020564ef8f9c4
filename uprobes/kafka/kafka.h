/* gosight — what every Kafka probe shares in the kernel: filling the message part
 * of a record (records.h) from Go values, finding a `traceparent` record header,
 * and the clamps on what is copied. Library layouts stay in each library's header
 * (kafka_sarama/sarama.h, kafka_go/kafka_go.h), which fill a struct kafka_message
 * through these helpers.
 */
#pragma once

#include "go_types.h"
#include "traceparent.h"
#include "records.h"

/* At most this many record headers are looked at for `traceparent`. */
#define KAFKA_MAX_HEADERS 8

/* A message's topic (Go string at ptr, len). */
static __always_inline void kafka_set_topic(struct kafka_message *m, u64 ptr, s64 len)
{
	m->topic_len = copy_go_string(m->topic, KAFKA_TOPIC_CAP, ptr, len);
}

/* A message's key ([]byte or string at ptr, len; nil when !is_set). */
static __always_inline void kafka_set_key(struct kafka_message *m, int is_set, u64 ptr, s64 len)
{
	if (!is_set) {
		m->key_len = -1;
		return;
	}
	m->key_len = len < 0 ? 0 : len;
	copy_go_string(m->key, KAFKA_KEY_CAP, ptr, len);
}

/* Whether the 11 bytes at ptr spell "traceparent". */
static __always_inline int kafka_is_traceparent_key(u64 ptr, s64 len)
{
	char k[11];
	if (len != 11 || !ptr || bpf_probe_read_user(k, sizeof(k), (void *)ptr))
		return 0;
	return k[0] == 't' && k[1] == 'r' && k[2] == 'a' && k[3] == 'c' && k[4] == 'e' && k[5] == 'p' &&
	       k[6] == 'a' && k[7] == 'r' && k[8] == 'e' && k[9] == 'n' && k[10] == 't';
}

/* Parses a `traceparent` header value (a []byte at ptr, len) into *out. */
static __always_inline int kafka_parse_traceparent(u64 ptr, s64 len, struct span_ctx *out)
{
	char v[TRACEPARENT_LEN];
	if (len != TRACEPARENT_LEN || !ptr || bpf_probe_read_user(v, sizeof(v), (void *)ptr))
		return 0;
	return traceparent_parse(v, out);
}

/* A record header as the probes see it: where its key and value are. */
struct kafka_header_layout {
	u64 stride;       /* bytes per slice element */
	u8 indirect;      /* elements are pointers to the header (sarama's []*RecordHeader) */
	u64 key_off;      /* the key ([]byte or string: pointer, length) in the header */
	u64 value_off;    /* the value ([]byte) */
};

/* Looks through the headers slice (ptr, n) for a valid `traceparent`; fills *out
 * and returns 1 when found. */
static __always_inline int kafka_find_traceparent(u64 headers, s64 n, const struct kafka_header_layout *l,
						  struct span_ctx *out)
{
	if (!headers || n <= 0 || l->key_off == OFF_ABSENT || l->value_off == OFF_ABSENT)
		return 0;
#pragma clang loop unroll(disable)
	for (int i = 0; i < KAFKA_MAX_HEADERS; i++) {
		if (i >= n)
			break;
		u64 h = headers + (u64)i * l->stride;
		if (l->indirect)
			h = read_u64(h);
		if (!h)
			continue;
		struct go_string k = {}, v = {};
		if (bpf_probe_read_user(&k, sizeof(k), (void *)(h + l->key_off)))
			continue;
		if (!kafka_is_traceparent_key(k.ptr, k.len))
			continue;
		if (bpf_probe_read_user(&v, sizeof(v), (void *)(h + l->value_off)))
			return 0;
		return kafka_parse_traceparent(v.ptr, v.len, out);
	}
	return 0;
}
