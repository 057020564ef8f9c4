/* gosight — handing a Kafka producer span's context to the sk_msg program that
 * writes it into the record on the wire as a `traceparent` record header
 * (uprobes/context_propagation/kafka.h).
 *
 * A producer probe calls kafka_offer_context once per message, with user-space
 * pointers to the message's key and value bytes as the client will encode them
 * and the producer span's context. A nil key or value (null on the wire) is NULL
 * with length -1 or 0: a Go nil slice can be passed as it is (an empty non-nil
 * slice has a non-NULL pointer, and is empty on the wire). The context waits in
 * `pending_kafka` (shared_maps.h) under the record's fingerprint: the process,
 * the key's and value's lengths, and a hash of the lengths and of the first
 * KAFKA_FP_BYTES bytes of each. The sk_msg program computes the same fingerprint
 * from each record of a Produce request, inserts the header when an entry is
 * there, and removes it. Two identical messages in flight at once share one entry:
 * the first of them on the wire gets the context of the later offer, the second
 * none; the entry remembers it replaced one, and the sk_msg program counts that
 * (`kafka_shared`) when it inserts the context.
 */
#pragma once

#include "go_types.h"
#include "shared_maps.h"
#include "traceparent.h"

/* FNV-1a, 64 bits: over the zero-padded key prefix, the zero-padded value prefix,
 * then both lengths (kafka_fp_bytes twice, then kafka_fp_lens). */
#define KAFKA_FP_INIT 0xcbf29ce484222325ULL

/* How long an offered context waits for its record: the sk_msg side drops older
 * ones (its kafka_pending_ttl_ns), and an earlier offer of the same fingerprint
 * younger than this is taken to be still in flight. */
#define KAFKA_PENDING_TTL_NS 10000000000ULL

static __always_inline u64 kafka_fp_bytes(u64 h, const u8 *p)
{
#pragma unroll
	for (int i = 0; i < KAFKA_FP_BYTES; i++)
		h = (h ^ p[i]) * 0x100000001b3ULL;
	return h;
}

static __always_inline u64 kafka_fp_lens(u64 h, s32 key_len, s32 value_len)
{
	u64 l = ((u64)(u32)value_len << 32) | (u32)key_len;
#pragma unroll
	for (int i = 0; i < 8; i++)
		h = (h ^ ((l >> (8 * i)) & 0xff)) * 0x100000001b3ULL;
	return h;
}

static __always_inline u64 kafka_fp_hash(s32 key_len, s32 value_len, const u8 *key, const u8 *value)
{
	return kafka_fp_lens(kafka_fp_bytes(kafka_fp_bytes(KAFKA_FP_INIT, key), value), key_len, value_len);
}

/* Copies the first min(len, KAFKA_FP_BYTES) bytes at the user address p into
 * out (zero-filled beforehand). */
static __always_inline int kafka_fp_copy_user(u8 *out, const void *p, s64 len)
{
	if (len <= 0 || !p)
		return 0;
	if (len >= KAFKA_FP_BYTES)
		return bpf_probe_read_user(out, KAFKA_FP_BYTES, p);
	u32 n = (u32)len & (KAFKA_FP_BYTES - 1);
	if (!n)
		return 0;
	return bpf_probe_read_user(out, n, p);
}

static __always_inline void kafka_offer_context(const void *key, s64 key_len, const void *value, s64 value_len,
						const struct span_ctx *sc)
{
	if (!key && key_len == 0)
		key_len = -1;
	if (!value && value_len == 0)
		value_len = -1;
	if (key_len < -1 || key_len > 0x7fffffff || value_len < -1 || value_len > 0x7fffffff)
		return;
	u8 kb[KAFKA_FP_BYTES] = {}, vb[KAFKA_FP_BYTES] = {};
	if (kafka_fp_copy_user(kb, key, key_len) || kafka_fp_copy_user(vb, value, value_len))
		return;
	struct kafka_fp fp = {
		.tgid = bpf_get_current_pid_tgid() >> 32,
		.key_len = (s32)key_len,
		.value_len = (s32)value_len,
	};
	fp.hash = kafka_fp_hash(fp.key_len, fp.value_len, kb, vb);
	struct kafka_pending p = { .created_ns = bpf_ktime_get_ns(), .sc = *sc };
	struct kafka_pending *earlier = bpf_map_lookup_elem(&pending_kafka, &fp);
	if (earlier && p.created_ns - earlier->created_ns <= KAFKA_PENDING_TTL_NS)
		p.shared = earlier->shared + 1;
	bpf_map_update_elem(&pending_kafka, &fp, &p, BPF_ANY);
}
