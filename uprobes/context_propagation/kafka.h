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

/* One topic header or one partition per step; the partitions' batches are listed
 * in sc->part. */
static long kp_step(u64 idx, void *ctx)
{
	struct kafka_ctx *x = ctx;
	struct sk_msg_md *msg = x->msg;
	struct kafka_scratch *sc = x->sc;
	u8 *b = sc->buf_prod;
	u32 p = sc->kp.p;
	u8 flex = sc->kp.flex;
	if (!sc->kp.parts && !sc->kp.topics)
		return 1; /* done (the request may end with the message: nothing to read) */
	u32 n = kread(msg, p, b), q = 0;
	u64 u = 0;
	if (!n)
		goto bad;
	if (!sc->kp.parts) {
		/* Topic: name, partition count. */
		u32 nl;
		if (flex) {
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
		if (flex) {
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
			goto too_long;
		p += q;
		sc->kp.topics--;
		sc->kp.parts = count;
		if (!count && flex)
			p += 1; /* the topic's tagged fields */
		sc->kp.p = p;
		return 0;
	}
	/* Partition: index, records size, records. */
	if (n < 5)
		goto bad;
	u32 field = p + 4, fsz, rl;
	q = 4;
	if (flex) {
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
	if (bs + rl > sc->kp.end)
		goto bad;
	if (rl) {
		u32 i = sc->km.n_part;
		if (i >= KAFKA_MAX_PARTITIONS)
			goto too_long;
		struct kafka_part *pt = &sc->part[i & (KAFKA_MAX_PARTITIONS - 1)];
		pt->field = field;
		pt->fsz = fsz;
		pt->bs = bs;
		pt->rl = rl;
		pt->flex = flex;
		pt->req = sc->kp.req;
		sc->km.n_part = i + 1;
	}
	p = bs + rl;
	if (flex)
		p += 1; /* the partition's tagged fields */
	sc->kp.parts--;
	if (!sc->kp.parts && flex)
		p += 1; /* the topic's tagged fields */
	sc->kp.p = p;
	return 0;
bad:
	sc->kp.bad = C_KAFKA_UNSUPPORTED;
	return 1;
too_long:
	sc->kp.bad = C_KAFKA_TOO_LONG;
	return 1;
}

/* After the batch of sc->part[i] grew by `grew` bytes: its records-size field (an
 * int32, or in flexible versions an unsigned varint of size + 1, which may need a
 * byte more) and its request's size. (A global function: verified once.) */
__attribute__((noinline)) int kafka_fix_sizes(struct sk_msg_md *msg, struct kafka_scratch *sc, u32 i, u32 grew)
{
	if (!msg || !sc)
		return -1;
	struct kafka_part *pt = &sc->part[i & (KAFKA_MAX_PARTITIONS - 1)];
	struct kafka_req *rq = &sc->req[pt->req & (KAFKA_MAX_PRODUCES - 1)];
	u32 field = pt->field, fsz = pt->fsz, rl = pt->rl, more = 0;
	if (!pt->flex) {
		if (put_be32(msg, field, rl + grew))
			return -1;
	} else {
		u64 vb = 0;
		u32 nsz = put_uvarint(&vb, (u64)rl + grew + 1, fsz);
		if (!nsz || nsz < fsz)
			return -1;
		if (nsz > fsz && bpf_msg_push_data(msg, field, nsz - fsz, 0))
			return -1;
		more = nsz - fsz;
		if (bpf_msg_pull_data(msg, field, field + nsz, 0))
			return -1;
		u8 *d = msg->data;
		for (u32 k = 0; k < 5; k++) {
			if (k >= nsz)
				break;
			if ((void *)(d + k + 1) > msg->data_end)
				return -1;
			d[k] = (u8)(vb >> (8 * k));
		}
	}
	rq->s += grew + more;
	return put_be32(msg, rq->o, rq->s);
}

/* The Produce request sc->req[r], whole in this message: its topics and partitions
 * walked, its batches listed in sc->part. (A global function: verified once, on
 * its own.) */
__attribute__((noinline)) int kafka_produce(struct sk_msg_md *msg, struct kafka_scratch *sc, u32 r)
{
	if (!msg || !sc)
		return 0;
	u32 pid = sc->km.pid;
	struct kafka_req *rq = &sc->req[r & (KAFKA_MAX_PRODUCES - 1)];
	u32 o = rq->o, end = o + 4 + rq->s;
	u8 *b = sc->buf_prod;
	u32 n = kread(msg, o, b);
	if (n < 14)
		return 0;
	s16 ver = be16(b + 6), cl = be16(b + 12);
	if (ver < 3 || ver > 12)
		goto unsupported;
	u8 flex = ver >= 9;
	u32 p = o + 14 + (cl > 0 ? (u32)cl : 0), q = 0;
	u64 u = 0;
	n = kread(msg, p, b);
	if (flex) {
		/* Request header tagged fields: clients send none. */
		if (!n || b[0] != 0)
			goto unsupported;
		p += 1;
		n = kread(msg, p, b);
	}
	/* transactional_id, acks, timeout_ms, topic count */
	if (flex) {
		if (!n || !uvarint(b, n, &q, &u, 5) || u > 32768)
			goto unsupported;
		p += q + (u ? (u32)u - 1 : 0);
	} else {
		if (n < 2)
			goto unsupported;
		s16 tl = be16(b);
		p += 2 + (tl > 0 ? (u32)tl : 0);
	}
	p += 6;
	n = kread(msg, p, b);
	q = 0;
	u32 topics;
	if (flex) {
		if (!n || !uvarint(b, n, &q, &u, 5) || u == 0)
			goto unsupported;
		topics = (u32)u - 1;
	} else {
		if (n < 4)
			goto unsupported;
		topics = be32(b);
		q = 4;
	}
	if (topics > KAFKA_MAX_PARTITIONS) {
		count_for(pid, C_KAFKA_TOO_LONG);
		return 0;
	}
	u32 first = sc->km.n_part;
	sc->kp.p = p + q;
	sc->kp.end = end;
	sc->kp.topics = topics;
	sc->kp.parts = 0;
	sc->kp.req = r;
	sc->kp.flex = flex;
	sc->kp.bad = 0;
	struct kafka_ctx x = { .msg = msg, .sc = sc };
	bpf_loop(2 * KAFKA_MAX_PARTITIONS + 1, kp_step, &x, 0);
	/* The walk must have ended exactly at the end of the request (after the
	 * request's tagged fields, flexible versions): anything else is not a Produce
	 * request as understood here, and its batches are not listed. */
	u32 bad = sc->kp.bad;
	if (!bad && (sc->kp.topics || sc->kp.parts))
		bad = C_KAFKA_TOO_LONG;
	if (!bad && sc->kp.p + flex != end)
		bad = C_KAFKA_UNSUPPORTED;
	if (bad) {
		sc->km.n_part = first;
		count_for(pid, bad);
	}
	return 0;
unsupported:
	count_for(pid, C_KAFKA_UNSUPPORTED);
	return 0;
}

/* One request per step: Produce requests whole in the message are listed (sc->req),
 * others stepped over. */
static long km_step(u64 idx, void *ctx)
{
	struct kafka_ctx *x = ctx;
	struct sk_msg_md *msg = x->msg;
	struct kafka_scratch *sc = x->sc;
	struct sock_state *st = x->st;
	u32 size = msg->size, o = sc->km.o;
	if (o >= size) {
		st->skip = o - size;
		sc->km.done = 1;
		return 1;
	}
	u8 *b = sc->buf_req;
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
		sc->km.done = 1;
		return 1;
	}
	u32 s = be32(b);
	if (s < 8 || s > KAFKA_MAX_REQUEST)
		return 1;
	if (n >= 6 && be16(b + 4) == 0) {
		u32 i = sc->km.n_req;
		if (o + 4 + s > size) {
			count_for(sc->km.pid, C_KAFKA_SPLIT);
		} else if (i >= KAFKA_MAX_PRODUCES) {
			count_for(sc->km.pid, C_KAFKA_TOO_LONG);
		} else {
			sc->req[i & (KAFKA_MAX_PRODUCES - 1)].o = o;
			sc->req[i & (KAFKA_MAX_PRODUCES - 1)].s = s;
			sc->km.n_req = i + 1;
		}
	}
	sc->km.o = o + 4 + s;
	return 0;
}

/* Follows the requests of one message on a Kafka connection, lists the record
 * batches of its Produce requests, then changes those, last first (a change moves
 * only what follows it). (Inlined
 * into the sk_msg program: one frame less in a call chain whose stack must fit
 * 512 bytes.) */
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
		u8 *b = sc->buf_req;
		u32 n = kread(msg, 0, b);
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
		if (n >= need + 2 && b[need & 3] == 0 && b[(need + 1) & 7] == 0)
			count_for(st->pid, C_KAFKA_SPLIT);
		o = need + s;
		st->partial_len = 0;
	}
	sc->km.o = o;
	sc->km.done = 0;
	sc->km.n_req = 0;
	sc->km.pid = st->pid;
	struct kafka_ctx x = { .msg = msg, .sc = sc, .st = st };
	bpf_loop(KAFKA_MAX_REQUESTS, km_step, &x, 0);
	if (!sc->km.done) {
		st->lost = 1;
		count_for(st->pid, C_KAFKA_LOST);
		return 0;
	}
	u32 n_req = sc->km.n_req;
	sc->km.n_part = 0;
	for (u32 i = 0; i < KAFKA_MAX_PRODUCES; i++) {
		if (i >= n_req)
			break;
		kafka_produce(msg, sc, i);
	}
	/* The batches, last first. Here rather than in kafka_produce: a frame less
	 * above kafka_batch, whose calls go deepest. */
	u32 n_part = sc->km.n_part;
	u64 who = ((u64)tgid << 32) | st->pid;
	for (u32 i = 0; i < KAFKA_MAX_PARTITIONS; i++) {
		if (i >= n_part)
			break;
		u32 j = (n_part - 1 - i) & (KAFKA_MAX_PARTITIONS - 1);
		struct kafka_part *pt = &sc->part[j];
		u32 grew = kafka_batch(msg, pt->bs, pt->rl, sc, who);
		if (grew && kafka_fix_sizes(msg, sc, j, grew))
			count_for(st->pid, C_KAFKA_FAILED);
	}
	return 0;
}
