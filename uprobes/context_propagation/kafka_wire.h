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
#define KAFKA_MAX_PRODUCES 4     /* Produce requests changed in one message */
#define KAFKA_MAX_HEADERS 16     /* a record's own headers looked through */
#define KAFKA_BATCH_HDR 61
#define KAFKA_CRC_FROM 21        /* the CRC covers attributes .. end of batch */
/* varint(11) "traceparent" varint(55) value: zigzag varints, 0x16 and 0x6e */
#define KAFKA_HDR_LEN (1 + 11 + 1 + TRACEPARENT_LEN)
#define CRC32C_T1 0xf26b8303u    /* crc32c_table[1]: the sidecar filled the table */

/* A pending context older than this is not used (dropped, counted). */
volatile const u64 kafka_pending_ttl_ns = KAFKA_PENDING_TTL_NS;

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

/* A Produce request whole in the message (kafka.h): its size field's offset, its size. */
struct kafka_req {
	u32 o;
	u32 s;
};

/* A partition's record batch in a Produce request (kafka.h). */
struct kafka_part {
	u32 field; /* its records-size field */
	u32 bs;    /* the batch */
	u32 rl;    /* its bytes */
	u8 fsz;    /* the records-size field's bytes */
	u8 flex;   /* a flexible version: that field is a varint */
	u8 req;    /* its request in req */
	u8 _pad;
};

/* A record's framing and fingerprint, from its start in a linear batch. */
struct rec_info {
	s64 len;      /* the record length varint's value */
	u32 lsz;      /* its bytes */
	u32 end;      /* end of the record */
	u32 h;        /* its headers-count varint */
	s32 key_len;
	s32 value_len;
	u32 _pad;
	u64 hash;
};

/* The state of each walk (kafka.h, kafka_batch.h). It lives here, not on the stack:
 * the walks nest (request, partition, record, header; CRC chunks), each level a
 * bpf_loop callback or a global function, and the combined stack of such a call
 * chain is limited to 512 bytes. Only the typed pointers a callback needs (the
 * message, this scratch, the socket state) stay on the stack, in a kafka_ctx.
 * Per socket (socket-local storage), not per CPU: sendmsg holds the socket lock,
 * so no other run shares it, while sk_msg runs with migration, not preemption,
 * disabled, and a per-CPU area could be shared with a run it preempted. */
struct kafka_scratch {
	struct kafka_insert ins[KAFKA_MAX_INSERTS];
	struct kafka_part part[KAFKA_MAX_PARTITIONS];
	struct kafka_req req[KAFKA_MAX_PRODUCES];
	struct {        /* requests of one message (km_step) */
		u32 o;      /* next request's size field */
		u32 done;
		u32 n_req;  /* Produce requests listed in req */
		u32 pid;
		u32 n_part; /* batches listed in part, all requests */
		u32 _pad;
	} km;
	struct {        /* one Produce request's topics and partitions (kp_step) */
		u32 p;      /* parse position */
		u32 end;    /* end of the request */
		u32 topics; /* topics still to come */
		u32 parts;  /* partitions of the current topic still to come */
		u8 req;     /* the request's index in req */
		u8 flex;
		u8 bad;     /* a C_KAFKA_* reason, 0 = none */
		u8 _pad;
	} kp;
	struct {        /* one batch's records (kb_record) */
		u64 base;   /* the batch, linear: its kernel address as a number */
		u32 len;
		u32 o;      /* next record */
		u32 nrec;
		u32 tgid;
		u32 pid;
		u32 n_ins;  /* entries listed in ins */
		u32 stop;   /* a C_KAFKA_* reason, 0 = none */
		u32 _pad;
	} kb;
	struct rec_info ri;   /* record_parse's answer */
	struct kafka_fp fp;   /* the record's pending_kafka key */
	struct {        /* one record's own headers (kb_header) */
		u32 q;      /* next header */
		u32 end;    /* end of the record */
		u32 n;      /* headers */
		u8 found;
		u8 bad;
		u8 _pad[2];
	} kh;
	struct {        /* CRCs over a byte range (kc_chunk) */
		u64 base;   /* kernel address the offsets count from */
		u32 from;
		u32 to;
		u32 a;      /* CRC of the batch as carried */
		u32 b;      /* CRC of the batch as it will be */
		u32 ma;     /* ~0: these bytes go into a, 0: not */
		u32 mb;     /* same for b */
		u32 bad;
		u32 _pad;
	} crc;
	struct {        /* the listed records' changes into the CRCs (ks_step) */
		u32 n_ins;
		u32 cur;    /* bytes before it are in the CRCs */
	} ks;
	struct {        /* the changes, last record first (ka_step) */
		u32 bs;     /* the batch's offset in the message */
		u32 n_ins;
		u32 added;
		u32 failed;
	} ka;
	/* Read buffers, one per level so that no level overwrites its caller's. */
	u8 buf_req[32];
	u8 buf_prod[32];
	u8 buf_batch[32];
	u8 buf_rec[32];
	u8 buf_hdr[32];
};

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct kafka_scratch);
} kafka_scratch SEC(".maps");

/* What a bpf_loop callback of the Kafka walks gets (bpf_loop wants it on the
 * stack): the typed pointers; the rest of the state is in the scratch. */
struct kafka_ctx {
	struct sk_msg_md *msg;
	struct kafka_scratch *sc;
	struct sock_state *st;
};

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
