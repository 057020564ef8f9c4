/* gosight — Kafka wire format in sk_msg: reading the message and a linear region,
 * varints, the limits of the bounded work, the CRC-32C table and the per-socket
 * scratch the batch rewrite (kafka_batch.h) lists its changes in, and recognising
 * a Kafka connection by its first request. kafka.h says how it all fits.
 */
#pragma once

#include "go_types.h"
#include "shared_maps.h"
#include "traceparent.h"
#include "kafka_context.h"
#include "sock_state.h"

#define KAFKA_MAX_REQUEST (64u << 20)
#define KAFKA_MAX_BATCH 65536    /* bytes of one record batch worked on */
#define KAFKA_MAX_RECORDS 1024   /* records of one batch */
#define KAFKA_MAX_INSERTS 64     /* headers added to one batch */
#define KAFKA_MAX_PARTITIONS 64  /* topics + partitions of one request */
#define KAFKA_MAX_REQUESTS 32    /* requests followed in one message */
#define KAFKA_MAX_HEADERS 16     /* a record's own headers looked through */
#define KAFKA_BATCH_HDR 61
#define KAFKA_CRC_FROM 21        /* the CRC covers attributes .. end of batch */
/* varint(11) "traceparent" varint(55) value: zigzag varints, 0x16 and 0x6e */
#define KAFKA_HDR_LEN (1 + 11 + 1 + TRACEPARENT_LEN)
#define CRC32C_T1 0xf26b8303u    /* crc32c_table[1]: the sidecar filled the table */

/* A pending context older than this is not used (dropped, counted). */
volatile const u64 kafka_pending_ttl_ns = 10000000000ULL;

/* CRC-32C (Castagnoli, reflected 0x82f63b78) byte table, written by the sidecar. */
struct crc_table {
	u32 t[256];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, struct crc_table);
} crc32c_table SEC(".maps");

/* One record to change, offsets from the batch start. */
struct kafka_insert {
	u32 rec;     /* record start (its length varint) */
	u32 hc;      /* its headers-count varint (one byte) */
	u32 end;     /* record end: where the header goes */
	u8 lsz;      /* bytes of the length varint now */
	u8 new_lsz;  /* and after */
	u8 hc_byte;  /* the new headers count */
	u8 _pad;
	u64 varint;  /* the new length varint, byte i in bits 8i.. */
	struct span_ctx sc;
	char hdr[KAFKA_HDR_LEN];
	u8 _pad2[4];
};

/* Per Kafka socket: sendmsg holds the socket lock, so no other run shares it. */
struct kafka_scratch {
	struct kafka_insert ins[KAFKA_MAX_INSERTS];
	/* The linear batch's kernel address: stored here so that it reads back as a
	 * plain number, which global functions take. */
	u64 base;
};

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct kafka_scratch);
} kafka_scratch SEC(".maps");

static __always_inline u32 be32(const u8 *b)
{
	return ((u32)b[0] << 24) | ((u32)b[1] << 16) | ((u32)b[2] << 8) | b[3];
}

static __always_inline s16 be16(const u8 *b)
{
	return (s16)(((u16)b[0] << 8) | b[1]);
}

/* Up to 32 bytes of the message at off (fewer at its end) into b; how many. */
static __always_inline u32 kread(struct sk_msg_md *msg, u32 off, u8 *b)
{
	u32 size = msg->size;
	if (off >= size)
		return 0;
	u32 n = size - off;
	if (n > 32)
		n = 32;
	if (bpf_msg_pull_data(msg, off, off + n, 0))
		return 0;
	void *d = msg->data, *e = msg->data_end;
	if (d + n > e)
		return 0;
	n &= 63;
	if (n == 0 || n > 32 || bpf_probe_read_kernel(b, n, d))
		return 0;
	return n;
}

/* Up to 16 bytes of the message at off into b (a smaller stack buffer, for the
 * frames deep in the call chain); how many. */
static __always_inline u32 kread16(struct sk_msg_md *msg, u32 off, u8 *b)
{
	u32 size = msg->size;
	if (off >= size)
		return 0;
	u32 n = size - off;
	if (n > 16)
		n = 16;
	if (bpf_msg_pull_data(msg, off, off + n, 0))
		return 0;
	void *d = msg->data, *e = msg->data_end;
	if (d + n > e)
		return 0;
	n &= 31;
	if (n == 0 || n > 16 || bpf_probe_read_kernel(b, n, d))
		return 0;
	return n;
}

/* Up to 32 bytes at base+off of a linear region of len bytes, into b. */
static __always_inline u32 lread(u64 base, u32 len, u32 off, u8 *b)
{
	if (off >= len)
		return 0;
	u32 n = len - off;
	if (n > 32)
		n = 32;
	n &= 63;
	if (n == 0 || n > 32 || bpf_probe_read_kernel(b, n, (void *)(base + off)))
		return 0;
	return n;
}

/* An unsigned LEB128 varint of at most max bytes at b[*p] (b: 32 bytes, n valid). */
static __always_inline int uvarint(const u8 *b, u32 n, u32 *p, u64 *out, int max)
{
	u64 v = 0;
	u32 q = *p;
#pragma unroll
	for (int i = 0; i < 10; i++) {
		if (i >= max || q >= n)
			return 0;
		u8 c = b[q & 31];
		v |= (u64)(c & 0x7f) << (7 * i);
		q++;
		if (!(c & 0x80)) {
			*p = q;
			*out = v;
			return 1;
		}
	}
	return 0;
}

/* A zigzag varint (record fields) as a signed value. */
static __always_inline int zvarint(const u8 *b, u32 n, u32 *p, s64 *out, int max)
{
	u64 v;
	if (!uvarint(b, n, p, &v, max))
		return 0;
	*out = (s64)(v >> 1) ^ -(s64)(v & 1);
	return 1;
}

/* v as LEB128 of at least min bytes (continuation-padded), byte i in bits
 * 8i..8i+7 of *out (no indexed stores: clang turns those into pointer arithmetic
 * the verifier refuses); the size, 0 when it does not fit 5 bytes. */
static __always_inline u32 put_uvarint(u64 *out, u64 v, u32 min)
{
	u64 acc = 0;
#pragma unroll
	for (int i = 0; i < 5; i++) {
		u64 c = v & 0x7f;
		v >>= 7;
		if (v || (u32)(i + 1) < min) {
			acc |= (c | 0x80) << (8 * i);
		} else {
			acc |= c << (8 * i);
			*out = acc;
			return i + 1;
		}
	}
	return 0;
}

/* Whether the message starts with a plausible Kafka request header: size, api key,
 * api version, correlation id, client id (null, or printable). HTTP, TLS, h2 and
 * the like fail the size alone. */
static __always_inline int kafka_request_start(struct sk_msg_md *msg)
{
	u8 b[32] = {};
	u32 n = kread(msg, 0, b);
	if (n < 14)
		return 0;
	u32 s = be32(b);
	s16 key = be16(b + 4), ver = be16(b + 6), cl = be16(b + 12);
	s32 corr = (s32)be32(b + 8);
	if (s < 10 || s > KAFKA_MAX_REQUEST || key < 0 || key > 100 || ver < 0 || ver > 30 || corr < 0)
		return 0;
	if (cl < -1 || (cl > 0 && (u32)cl + 10 > s))
		return 0;
	/* The client id's first bytes, as far as this read goes, are printable. */
	for (int i = 0; i < 16; i++) {
		if (i >= cl || 14 + i >= n)
			break;
		u8 c = b[(14 + i) & 31];
		if (c < 0x20 || c > 0x7e)
			return 0;
	}
	return 1;
}
