/* gosight — Kafka in sk_msg: a `traceparent` record header added to the records of
 * Produce requests whose producer probe left the span's context (kafka_context.h).
 *
 * A connection is Kafka when its first message is a well-formed request header
 * (kafka_request_start, kafka_wire.h). From there its requests are followed by
 * their size prefixes across messages (`skip`, `partial` in the socket state). A
 * Produce request (v3-v12; flexible, compact encodings, from v9) whole in one
 * message is parsed: topics, partitions, and each partition's record batch, which
 * kafka_batch.h changes. Then the partition's records size (an int32, or from v9
 * an unsigned varint that may need one more byte) and the request size are fixed.
 * A Produce request split across messages, another version (v13 names topics by
 * id), request-header tagged fields, and everything kafka_batch.h refuses are left
 * as they are and counted. Losing the request boundaries turns insertion off for
 * the connection (counted), never a guess.
 */
#pragma once

#include "kafka_wire.h"
#include "kafka_batch.h"

struct kp_walk {
	struct sk_msg_md *msg;
	struct kafka_scratch *sc;
	u32 p;          /* parse position */
	u32 end;        /* end of the request */
	u32 topics;     /* topics still to come */
	u32 parts;      /* partitions of the current topic still to come */
	u32 added;
	u32 pid;
	u32 tgid;
	u8 flex;
	u8 bad;
};

/* One topic header or one partition per step. */
static long kp_step(u64 idx, void *ctx)
{
	struct kp_walk *w = ctx;
	struct sk_msg_md *msg = w->msg;
	u8 b[32] = {};
	u32 p = w->p;
	u32 n = kread(msg, p, b), q = 0;
	u64 u = 0;
	if (!n)
		goto bad;
	if (!w->parts) {
		if (!w->topics)
			return 1;
		/* Topic: name, partition count. */
		u32 nl;
		if (w->flex) {
			if (!uvarint(b, n, &q, &u, 5) || u == 0 || u > 32768)
				goto bad;
			nl = (u32)u - 1;
		} else {
			s16 l = be16(b);
			if (l < 0)
				goto bad;
			nl = (u32)l;
			q = 2;
		}
		p += q + nl;
		n = kread(msg, p, b);
		q = 0;
		u32 count;
		if (w->flex) {
			if (!n || !uvarint(b, n, &q, &u, 5) || u == 0)
				goto bad;
			count = (u32)u - 1;
		} else {
			if (n < 4)
				goto bad;
			count = be32(b);
			q = 4;
		}
		if (count > KAFKA_MAX_PARTITIONS)
			goto bad;
		p += q;
		w->topics--;
		w->parts = count;
		if (!count && w->flex)
			p += 1; /* the topic's tagged fields (none: checked below) */
		w->p = p;
		return 0;
	}
	/* Partition: index, records size, records. */
	if (n < 5)
		goto bad;
	u32 field = p + 4, fsz, rl;
	q = 4;
	if (w->flex) {
		if (!uvarint(b, n, &q, &u, 5))
			goto bad;
		fsz = q - 4;
		rl = u ? (u32)u - 1 : 0;
	} else {
		if (n < 8)
			goto bad;
		s32 l = (s32)be32(b + 4);
		rl = l > 0 ? (u32)l : 0;
		fsz = 4;
	}
	u32 bs = field + fsz;
	if (bs + rl > w->end)
		goto bad;
	u32 grew = 0;
	if (rl) {
		grew = kafka_batch(msg, bs, rl, w->sc, ((u64)w->tgid << 32) | w->pid);
		if (grew) {
			if (w->flex) {
				u64 vb = 0;
				u32 nsz = put_uvarint(&vb, (u64)rl + grew + 1, fsz);
				if (!nsz || nsz < fsz)
					goto bad;
				if (nsz > fsz) {
					if (bpf_msg_push_data(msg, field, nsz - fsz, 0))
						goto bad;
					grew += nsz - fsz;
				}
				if (bpf_msg_pull_data(msg, field, field + nsz, 0))
					goto bad;
				u8 *d = msg->data;
				for (u32 i = 0; i < 5; i++) {
					if (i >= nsz)
						break;
					if ((void *)(d + i + 1) > msg->data_end)
						goto bad;
					d[i] = (u8)(vb >> (8 * i));
				}
			} else if (put_be32(msg, field, rl + grew)) {
				goto bad;
			}
		}
	}
	w->added += grew;
	w->end += grew;
	p = bs + rl + grew;
	if (w->flex)
		p += 1; /* the partition's tagged fields */
	w->parts--;
	if (!w->parts && w->flex)
		p += 1; /* the topic's tagged fields */
	w->p = p;
	return 0;
bad:
	w->bad = 1;
	return 1;
}

/* The Produce request of s bytes (after its size) at o, whole in this message;
 * `who`: the target's pid (low half) and the sending tgid (high half). Returns the
 * bytes it grew by. (A global function: verified once, on its own.) */
__attribute__((noinline)) int kafka_produce(struct sk_msg_md *msg, u32 o, u32 s, struct kafka_scratch *sc, u64 who)
{
	if (!msg || !sc)
		return 0;
	u32 pid = (u32)who, tgid = who >> 32;
	/* The request's bytes, then the walk's state: one at a time on the stack. */
	union {
		u8 b[32];
		struct kp_walk w;
	} m;
	__builtin_memset(&m, 0, sizeof(m));
	u8 *b = m.b;
	u32 n = kread(msg, o, b);
	if (n < 14)
		return 0;
	s16 ver = be16(b + 6), cl = be16(b + 12);
	if (ver < 3 || ver > 12) {
		count_for(pid, C_KAFKA_UNSUPPORTED);
		return 0;
	}
	u8 flex = ver >= 9;
	u32 p = o + 14 + (cl > 0 ? (u32)cl : 0), q = 0;
	u64 u = 0;
	n = kread(msg, p, b);
	if (flex) {
		/* Request header tagged fields: clients send none. */
		if (!n || b[0] != 0) {
			count_for(pid, C_KAFKA_UNSUPPORTED);
			return 0;
		}
		p += 1;
		n = kread(msg, p, b);
	}
	/* transactional_id, acks, timeout_ms, topic count */
	if (flex) {
		if (!n || !uvarint(b, n, &q, &u, 5) || u > 32768)
			return 0;
		p += q + (u ? (u32)u - 1 : 0);
	} else {
		if (n < 2)
			return 0;
		s16 tl = be16(b);
		p += 2 + (tl > 0 ? (u32)tl : 0);
	}
	p += 6;
	n = kread(msg, p, b);
	q = 0;
	u32 topics;
	if (flex) {
		if (!n || !uvarint(b, n, &q, &u, 5) || u == 0)
			return 0;
		topics = (u32)u - 1;
	} else {
		if (n < 4)
			return 0;
		topics = be32(b);
		q = 4;
	}
	if (topics > KAFKA_MAX_PARTITIONS) {
		count_for(pid, C_KAFKA_TOO_LONG);
		return 0;
	}
	__builtin_memset(&m, 0, sizeof(m));
	m.w.msg = msg;
	m.w.sc = sc;
	m.w.p = p + q;
	m.w.end = o + 4 + s;
	m.w.topics = topics;
	m.w.pid = pid;
	m.w.tgid = tgid;
	m.w.flex = flex;
	bpf_loop(2 * KAFKA_MAX_PARTITIONS, kp_step, &m.w, 0);
	u32 added = m.w.added, bad = m.w.bad;
	if (bad && !added)
		count_for(pid, C_KAFKA_UNSUPPORTED);
	else if (bad)
		count_for(pid, C_KAFKA_FAILED);
	if (added && put_be32(msg, o, s + added))
		count_for(pid, C_KAFKA_FAILED);
	return added;
}

struct km_walk {
	struct sk_msg_md *msg;
	struct sock_state *st;
	struct kafka_scratch *sc;
	u32 tgid;
	u32 o;     /* next request's size field in this message */
	u32 done;
};

/* One request per step: Produce requests are worked on, others stepped over. */
static long km_step(u64 idx, void *ctx)
{
	struct km_walk *w = ctx;
	struct sk_msg_md *msg = w->msg;
	struct sock_state *st = w->st;
	u32 size = msg->size, o = w->o;
	if (o >= size) {
		st->skip = o - size;
		w->done = 1;
		return 1;
	}
	u8 b[32] = {};
	u32 n = kread(msg, o, b);
	if (!n)
		return 1;
	if (n < 4) {
		/* The size continues in the next message: keep what we have. */
		for (u32 i = 0; i < 3; i++)
			if (i < n)
				st->partial[i] = b[i];
		st->partial_len = n;
		st->skip = 0;
		w->done = 1;
		return 1;
	}
	u32 s = be32(b);
	if (s < 8 || s > KAFKA_MAX_REQUEST)
		return 1;
	if (n >= 6 && be16(b + 4) == 0) {
		if (o + 4 + s > size)
			count_for(st->pid, C_KAFKA_SPLIT);
		else
			s += (u32)kafka_produce(msg, o, s, w->sc, ((u64)w->tgid << 32) | st->pid);
	}
	w->o = o + 4 + s;
	return 0;
}

/* Follows the requests of one message on a Kafka connection. (Inlined into the
 * sk_msg program: one frame less in a call chain whose stack must fit 512 bytes.) */
static __always_inline int kafka_frames(struct sk_msg_md *msg, struct sock_state *st, u32 tgid)
{
	if (st->lost)
		return 0;
	struct bpf_sock *sk = msg->sk;
	if (!sk)
		return 0;
	struct kafka_scratch *sc = bpf_sk_storage_get(&kafka_scratch, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!sc)
		return 0;
	u32 o = st->skip;
	if (st->partial_len) {
		/* Finish the size field split at the end of the last message. */
		u32 pl = st->partial_len & 3;
		u8 b[16] = {};
		u32 n = kread16(msg, 0, b);
		u32 need = 4 - pl;
		if (n < need) {
			st->lost = 1;
			count_for(st->pid, C_KAFKA_LOST);
			return 0;
		}
		u8 *sp = st->partial;
		u32 s;
		if (pl == 1)
			s = ((u32)sp[0] << 24) | ((u32)b[0] << 16) | ((u32)b[1] << 8) | b[2];
		else if (pl == 2)
			s = ((u32)sp[0] << 24) | ((u32)sp[1] << 16) | ((u32)b[0] << 8) | b[1];
		else
			s = ((u32)sp[0] << 24) | ((u32)sp[1] << 16) | ((u32)sp[2] << 8) | b[0];
		if (s < 8 || s > KAFKA_MAX_REQUEST) {
			st->lost = 1;
			count_for(st->pid, C_KAFKA_LOST);
			return 0;
		}
		/* A Produce request (api key 0) whose size was split is split too. */
		if (kread16(msg, need, b) >= 2 && b[0] == 0 && b[1] == 0)
			count_for(st->pid, C_KAFKA_SPLIT);
		o = need + s;
		st->partial_len = 0;
	}
	struct km_walk w = { .msg = msg, .st = st, .sc = sc, .tgid = tgid, .o = o };
	bpf_loop(KAFKA_MAX_REQUESTS, km_step, &w, 0);
	if (!w.done) {
		st->lost = 1;
		count_for(st->pid, C_KAFKA_LOST);
	}
	return 0;
}
