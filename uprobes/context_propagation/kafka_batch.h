/* gosight — one Kafka record batch (v2, magic 2) in sk_msg: which of its records
 * get a `traceparent` header, the CRC-32C check of the batch as carried and the
 * CRC of the batch as it will be (phase 1, reading the batch made linear), then
 * the changes (phase 2, last record first). kafka.h says how it fits.
 *
 * Record batch: baseOffset i64, batchLength i32 (@8), partitionLeaderEpoch i32,
 * magic i8 (@16), crc u32 (@17, over @21 .. end), attributes i16 (@21: bits 0-2
 * compression, 5 control), lastOffsetDelta, baseTimestamp, maxTimestamp,
 * producerId, producerEpoch, baseSequence, records count i32 (@57), records (@61).
 * Record: length varint, attributes i8, timestampDelta varlong, offsetDelta
 * varint, key (varint length, -1 null), value (same), headers count varint,
 * headers (key: varint length + bytes, value: varint length + bytes).
 *
 * Idempotent and transactional batches are changed like any other: sequence
 * numbers count records, and the number of records does not change; the broker
 * checks the CRC, which is recomputed.
 */
#pragma once

#include "kafka_wire.h"

/* Copies the first min(len, KAFKA_FP_BYTES) bytes at base+off into dst. */
static __always_inline int lcopy_fp(u8 *dst, u64 base, u32 off, u32 len)
{
	if (!len)
		return 0;
	if (len >= KAFKA_FP_BYTES)
		return bpf_probe_read_kernel(dst, KAFKA_FP_BYTES, (void *)(base + off));
	u32 n = len & (KAFKA_FP_BYTES - 1);
	if (!n)
		return 0;
	return bpf_probe_read_kernel(dst, n, (void *)(base + off));
}

/* ---- phase 1: the records ---- */

struct kh_walk {
	u64 base;
	u32 len;
	u32 q;   /* next header */
	u32 end; /* end of the record */
	u32 n;   /* headers */
	u8 found;
	u8 bad;
};

/* One of a record's own headers per step: is its key `traceparent`? */
static long kb_header(u64 idx, void *ctx)
{
	struct kh_walk *h = ctx;
	if (idx >= h->n)
		return 1;
	u8 b[32] __attribute__((aligned(8))) = {};
	u32 n = lread(h->base, h->len, h->q, b);
	u32 p = 0;
	s64 ks = 0, vs = 0;
	if (!n || !zvarint(b, n, &p, &ks, 5) || ks < 0 || ks > h->len) {
		h->bad = 1;
		return 1;
	}
	if (ks == 11) {
		/* "tracepar" and "ent", as little-endian words: two compares. */
		u64 *k = (u64 *)b;
		if (lread(h->base, h->len, h->q + p, b) >= 11 && k[0] == 0x7261706563617274ULL &&
		    (k[1] & 0xffffff) == 0x746e65)
			h->found = 1;
	}
	u32 v = h->q + p + (u32)ks;
	n = lread(h->base, h->len, v, b);
	p = 0;
	if (!n || !zvarint(b, n, &p, &vs, 5) || vs < -1 || vs > h->len) {
		h->bad = 1;
		return 1;
	}
	h->q = v + p + (vs > 0 ? (u32)vs : 0);
	if (h->q > h->end) {
		h->bad = 1;
		return 1;
	}
	return 0;
}

/* A record's framing and fingerprint, from its start r in a linear batch. */
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

/* Parses the record at r of the linear batch at base (len bytes). 0 when it is
 * well-formed. (A global function: verified once, on its own.) */
__attribute__((noinline)) int record_parse(u64 base, u32 len, u32 r, struct rec_info *out)
{
	if (!out)
		return -1;
	u8 b[32] = {};
	u32 n = lread(base, len, r, b);
	u32 p = 0;
	s64 L = 0, skip = 0, klen = 0, vlen = 0;
	if (!n || !zvarint(b, n, &p, &L, 5) || L < 0 || L > len)
		return -1;
	u32 lsz = p;
	u32 end = r + lsz + (u32)L;
	if (end > len)
		return -1;
	p += 1; /* attributes */
	if (!zvarint(b, n, &p, &skip, 10) || !zvarint(b, n, &p, &skip, 5) || !zvarint(b, n, &p, &klen, 5) ||
	    klen < -1 || klen > len)
		return -1;
	u32 k0 = r + p, kl = klen > 0 ? (u32)klen : 0;
	if (k0 + kl > end)
		return -1;
	/* The fingerprint as kafka_fp_hash computes it, with one prefix buffer (b). */
	__builtin_memset(b, 0, KAFKA_FP_BYTES);
	if (lcopy_fp(b, base, k0, kl))
		return -1;
	u64 hash = kafka_fp_bytes(KAFKA_FP_INIT, b);
	u32 v = k0 + kl;
	n = lread(base, len, v, b);
	p = 0;
	if (!n || !zvarint(b, n, &p, &vlen, 5) || vlen < -1 || vlen > len)
		return -1;
	u32 v0 = v + p, vl = vlen > 0 ? (u32)vlen : 0;
	if (v0 + vl > end)
		return -1;
	__builtin_memset(b, 0, KAFKA_FP_BYTES);
	if (lcopy_fp(b, base, v0, vl))
		return -1;
	hash = kafka_fp_lens(kafka_fp_bytes(hash, b), (s32)klen, (s32)vlen);
	out->len = L;
	out->lsz = lsz;
	out->end = end;
	out->h = v0 + vl;
	out->key_len = (s32)klen;
	out->value_len = (s32)vlen;
	out->hash = hash;
	return 0;
}

/* A record's own headers from h (its count varint) to end: their count, or -1
 * when malformed or more than KAFKA_MAX_HEADERS; *own set when one is
 * `traceparent`. (A global function: verified once, on its own.) */
__attribute__((noinline)) int record_headers(u64 base, u32 len, u32 h, u32 end, u32 *own)
{
	if (!own)
		return -1;
	/* A count up to KAFKA_MAX_HEADERS is a one-byte zigzag varint. */
	u8 c = 0;
	if (h >= len || bpf_probe_read_kernel(&c, 1, (void *)(base + h)) || (c & 0x81))
		return -1;
	u32 hcount = c >> 1;
	if (hcount > KAFKA_MAX_HEADERS)
		return -1;
	struct kh_walk hw = { .base = base, .len = len, .q = h + 1, .end = end, .n = (u32)hcount };
	bpf_loop(KAFKA_MAX_HEADERS, kb_header, &hw, 0);
	if (hw.bad || hw.q != end)
		return -1;
	*own = hw.found;
	return (int)hcount;
}

struct kb_walk {
	u64 base; /* the batch, linear */
	struct kafka_scratch *sc;
	u32 len;
	u32 o;    /* next record */
	u32 nrec;
	u32 tgid;
	u32 pid;
	u32 n_ins;
	u32 stop; /* a C_KAFKA_* reason, 0 = none */
};

/* One record per step: its fingerprint, and when a context is pending for it,
 * its entry in the scratch list. */
static long kb_record(u64 idx, void *ctx)
{
	struct kb_walk *w = ctx;
	if (idx >= w->nrec)
		return 1;
	u64 base = w->base;
	u32 len = w->len, r = w->o;
	struct rec_info ri = {};
	if (record_parse(base, len, r, &ri))
		goto bad;
	u32 end = ri.end, h = ri.h, lsz = ri.lsz;
	s64 L = ri.len;
	w->o = end;

	struct kafka_fp fp = { .tgid = w->tgid, .key_len = ri.key_len, .value_len = ri.value_len, .hash = ri.hash };
	struct kafka_pending *pend = bpf_map_lookup_elem(&pending_kafka, &fp);
	if (!pend)
		return 0;
	if (bpf_ktime_get_ns() - pend->created_ns > kafka_pending_ttl_ns) {
		count_for(w->pid, C_KAFKA_STALE);
		bpf_map_delete_elem(&pending_kafka, &fp);
		return 0;
	}
	u32 own = 0;
	int hcount = record_headers(base, len, h, end, &own);
	if (hcount < 0) {
		/* Malformed, or more headers than are looked through. */
		count_for(w->pid, C_KAFKA_TOO_LONG);
		bpf_map_delete_elem(&pending_kafka, &fp);
		return 0;
	}
	if (own) {
		count_for(w->pid, C_KAFKA_KEPT_OWN);
		bpf_map_delete_elem(&pending_kafka, &fp);
		return 0;
	}
	/* No branch reads n_ins here (the verifier could not see the callback's
	 * states converge): past KAFKA_MAX_INSERTS entries wrap, and the caller gives
	 * up on the batch. */
	struct kafka_insert *in = &w->sc->ins[w->n_ins & (KAFKA_MAX_INSERTS - 1)];
	u64 vv = 0;
	u32 nl = put_uvarint(&vv, (u64)(L + KAFKA_HDR_LEN) << 1, lsz);
	if (!nl || nl < lsz)
		goto bad;
	in->varint = vv;
	in->rec = r;
	in->hc = h;
	in->end = end;
	in->lsz = lsz;
	in->new_lsz = nl;
	in->hc_byte = (u8)((hcount + 1) << 1);
	in->sc = pend->sc;
	w->n_ins++;
	bpf_map_delete_elem(&pending_kafka, &fp);
	return 0;
bad:
	w->stop = C_KAFKA_BAD_BATCH;
	return 1;
}

struct kf_walk {
	struct kafka_scratch *sc;
	u32 n_ins;
};

/* One listed record per step: its header's bytes. */
static long kf_step(u64 idx, void *ctx)
{
	struct kf_walk *f = ctx;
	if (idx >= f->n_ins)
		return 1;
	struct kafka_insert *in = &f->sc->ins[idx & (KAFKA_MAX_INSERTS - 1)];
	char *h = in->hdr;
	h[0] = 0x16;
	h[1] = 't';
	h[2] = 'r';
	h[3] = 'a';
	h[4] = 'c';
	h[5] = 'e';
	h[6] = 'p';
	h[7] = 'a';
	h[8] = 'r';
	h[9] = 'e';
	h[10] = 'n';
	h[11] = 't';
	h[12] = 0x6e;
	traceparent_format(&in->sc, h + 13);
	return 0;
}

/* ---- phase 1: the CRCs ---- */

struct kc_walk {
	u64 base;  /* kernel address the offsets count from */
	struct crc_table *t;
	u32 from;
	u32 to;
	u32 a;     /* CRC of the batch as carried */
	u32 b;     /* CRC of the batch as it will be */
	u32 ma;    /* ~0: these bytes go into a, 0: not */
	u32 mb;    /* same for b */
	u32 bad;
};

/* 16 bytes per step into the CRCs the masks select (no branches per byte). */
static long kc_chunk(u64 idx, void *ctx)
{
	struct kc_walk *c = ctx;
	u32 off = c->from + (u32)idx * 16;
	if (off >= c->to)
		return 1;
	u32 n = c->to - off;
	if (n > 16)
		n = 16;
	u64 buf[2] = {};
	n &= 31;
	if (n == 0 || n > 16 || bpf_probe_read_kernel(buf, n, (void *)(c->base + off))) {
		c->bad = 1;
		return 1;
	}
	struct crc_table *t = c->t;
	u32 a = c->a, b = c->b, ma = c->ma, mb = c->mb;
	/* No branch per byte: bytes past n leave both CRCs alone. */
#pragma clang loop unroll(disable)
	for (u32 w = 0; w < 2; w++) {
		u64 word = buf[w & 1];
#pragma clang loop unroll(disable)
		for (u32 j = 0; j < 8; j++) {
			u8 x = word >> (8 * j);
			u32 in = (u32)((s32)(w * 8 + j - n) >> 31);
			u32 ka = ma & in, kb = mb & in;
			u32 na = t->t[(a ^ x) & 0xff] ^ (a >> 8);
			u32 nb = t->t[(b ^ x) & 0xff] ^ (b >> 8);
			a = (na & ka) | (a & ~ka);
			b = (nb & kb) | (b & ~kb);
		}
	}
	c->a = a;
	c->b = b;
	return 0;
}

/* Bytes [c->from, c->to) at c->base into the CRCs c->ma/c->mb select. (A global
 * function: verified once, whatever the number of call sites.) */
__attribute__((noinline)) int crc_range(struct kc_walk *c)
{
	if (!c)
		return 0;
	u32 zero = 0;
	struct crc_table *t = bpf_map_lookup_elem(&crc32c_table, &zero);
	if (!t) {
		c->bad = 1;
		return 0;
	}
	struct kc_walk w = *c;
	w.t = t;
	bpf_loop(KAFKA_MAX_BATCH / 16 + 1, kc_chunk, &w, 0);
	c->a = w.a;
	c->b = w.b;
	c->bad |= w.bad;
	return 0;
}

/* Bytes [from, to) at base (the batch, or scratch memory), into the CRCs that
 * ma/mb select. */
static __always_inline void crc_run(struct kc_walk *c, u64 base, u32 from, u32 to, u32 ma, u32 mb)
{
	if (from >= to)
		return;
	c->base = base;
	c->from = from;
	c->to = to;
	c->ma = ma;
	c->mb = mb;
	crc_range(c);
}

struct ks_walk {
	struct kc_walk c;
	u64 batch; /* kernel address of the batch (linear) */
	struct kafka_scratch *sc;
	u32 len;
	u32 n_ins;
	u32 cur; /* bytes before it are in the CRCs */
};

/* One listed record per step: the bytes up to it and its changes, into the CRCs. */
static long ks_step(u64 idx, void *ctx)
{
	struct ks_walk *s = ctx;
	if (idx >= s->n_ins || s->c.bad)
		return 1;
	struct kafka_insert *in = &s->sc->ins[idx & (KAFKA_MAX_INSERTS - 1)];
	u32 rec = in->rec, hc = in->hc, end = in->end, lsz = in->lsz & 7, nl = in->new_lsz & 7;
	if (rec < s->cur || rec + lsz > hc || hc + 1 > end || end > s->len) {
		s->c.bad = 1;
		return 1;
	}
	u64 batch = s->batch;
	struct kc_walk *c = &s->c;
	crc_run(c, batch, s->cur, rec, ~0u, ~0u);
	crc_run(c, batch, rec, rec + lsz, ~0u, 0);
	crc_run(c, (u64)&in->varint, 0, nl, 0, ~0u);
	crc_run(c, batch, rec + lsz, hc, ~0u, ~0u);
	crc_run(c, batch, hc, hc + 1, ~0u, 0);
	crc_run(c, (u64)&in->hc_byte, 0, 1, 0, ~0u);
	crc_run(c, batch, hc + 1, end, ~0u, ~0u);
	crc_run(c, (u64)in->hdr, 0, KAFKA_HDR_LEN, 0, ~0u);
	s->cur = end;
	return 0;
}

/* ---- phase 2: the changes ---- */

struct ka_walk {
	struct sk_msg_md *msg;
	struct kafka_scratch *sc;
	u32 bs; /* the batch's offset in the message */
	u32 n_ins;
	u32 added;
	u32 failed;
};

/* One listed record per step, last first: header, headers count, length. */
static long ka_step(u64 idx, void *ctx)
{
	struct ka_walk *w = ctx;
	if (idx >= w->n_ins)
		return 1;
	struct sk_msg_md *msg = w->msg;
	struct kafka_insert *in = &w->sc->ins[(w->n_ins - 1 - (u32)idx) & (KAFKA_MAX_INSERTS - 1)];
	u32 pos = w->bs + in->end;
	if (bpf_msg_push_data(msg, pos, KAFKA_HDR_LEN, 0))
		goto fail;
	/* The gap holds uninitialised memory until it is written: fill it, or take it
	 * out again. */
	if (bpf_msg_pull_data(msg, pos, pos + KAFKA_HDR_LEN, 0) || msg->data + KAFKA_HDR_LEN > msg->data_end) {
		bpf_msg_pop_data(msg, pos, KAFKA_HDR_LEN, 0);
		goto fail;
	}
	u8 *d = msg->data;
	if ((void *)(d + KAFKA_HDR_LEN) > msg->data_end) {
		bpf_msg_pop_data(msg, pos, KAFKA_HDR_LEN, 0);
		goto fail;
	}
	__builtin_memcpy(d, in->hdr, KAFKA_HDR_LEN);
	w->added += KAFKA_HDR_LEN;
	pos = w->bs + in->hc;
	if (bpf_msg_pull_data(msg, pos, pos + 1, 0))
		goto fail;
	d = msg->data;
	if ((void *)(d + 1) > msg->data_end)
		goto fail;
	d[0] = in->hc_byte;
	u32 lsz = in->lsz & 7, nl = in->new_lsz & 7;
	pos = w->bs + in->rec;
	if (nl > lsz) {
		if (bpf_msg_push_data(msg, pos, nl - lsz, 0))
			goto fail;
		w->added += nl - lsz;
	}
	if (bpf_msg_pull_data(msg, pos, pos + nl, 0))
		goto fail;
	d = msg->data;
	u64 vv = in->varint;
	for (u32 i = 0; i < 5; i++) {
		if (i >= nl)
			break;
		if ((void *)(d + i + 1) > msg->data_end)
			goto fail;
		d[i] = (u8)(vv >> (8 * i));
	}
	return 0;
fail:
	w->failed = 1;
	return 1;
}

/* Writes the big-endian u32 v at off. */
static __always_inline int put_be32(struct sk_msg_md *msg, u32 off, u32 v)
{
	if (bpf_msg_pull_data(msg, off, off + 4, 0))
		return -1;
	u8 *d = msg->data;
	if ((void *)(d + 4) > msg->data_end)
		return -1;
	d[0] = v >> 24;
	d[1] = v >> 16;
	d[2] = v >> 8;
	d[3] = v;
	return 0;
}

/* The record batch of rl bytes at bs: headers added where contexts are pending.
 * `who`: the target's pid (low half) and the sending tgid (high half).
 * Returns the bytes it grew by (0: unchanged). (A global function: verified once,
 * on its own.) */
__attribute__((noinline)) int kafka_batch(struct sk_msg_md *msg, u32 bs, u32 rl, struct kafka_scratch *sc, u64 who)
{
	u32 pid = (u32)who, tgid = who >> 32;
	if (!msg || !sc)
		return 0;
	if (rl < KAFKA_BATCH_HDR) {
		count_for(pid, C_KAFKA_BAD_BATCH);
		return 0;
	}
	if (rl > KAFKA_MAX_BATCH) {
		count_for(pid, C_KAFKA_TOO_LONG);
		return 0;
	}
	/* Phase 1 reads the batch made linear. */
	if (bpf_msg_pull_data(msg, bs, bs + rl, 0)) {
		count_for(pid, C_KAFKA_FAILED);
		return 0;
	}
	void *data = msg->data;
	if (data + (rl & 0x1ffff) > msg->data_end) {
		count_for(pid, C_KAFKA_FAILED);
		return 0;
	}
	sc->base = (u64)data;
	u64 base = *(volatile u64 *)&sc->base;
	/* One buffer at a time: the walks' state and the header bytes share the
	 * stack (the call chain's frames must fit 512 bytes together). */
	union {
		u8 h[32];
		struct kb_walk w;
		struct kf_walk f;
		struct ks_walk s;
		struct ka_walk a;
	} u;
	__builtin_memset(&u, 0, sizeof(u));
	if (lread(base, rl, 32, u.h) < 29) {
		count_for(pid, C_KAFKA_BAD_BATCH);
		return 0;
	}
	u32 nrec = be32(u.h + 25);
	if (lread(base, rl, 0, u.h) < 32) {
		count_for(pid, C_KAFKA_BAD_BATCH);
		return 0;
	}
	u32 bl = be32(u.h + 8);
	u8 magic = u.h[16];
	u32 carried = be32(u.h + 17);
	u16 attrs = (u16)be16(u.h + 21);
	if (magic != 2 || bl + 12 != rl || (attrs & 0x20)) {
		/* Another format, several batches in one partition, or a control batch. */
		count_for(pid, C_KAFKA_UNSUPPORTED);
		return 0;
	}
	if (attrs & 7) {
		count_for(pid, C_KAFKA_COMPRESSED);
		return 0;
	}
	if (nrec > KAFKA_MAX_RECORDS) {
		count_for(pid, C_KAFKA_TOO_LONG);
		return 0;
	}
	__builtin_memset(&u, 0, sizeof(u));
	u.w.base = base;
	u.w.sc = sc;
	u.w.len = rl;
	u.w.o = KAFKA_BATCH_HDR;
	u.w.nrec = nrec;
	u.w.tgid = tgid;
	u.w.pid = pid;
	bpf_loop(KAFKA_MAX_RECORDS, kb_record, &u.w, 0);
	u32 stop = u.w.stop, n_ins = u.w.n_ins;
	if (!stop && u.w.o != rl)
		stop = C_KAFKA_BAD_BATCH;
	if (!stop && n_ins > KAFKA_MAX_INSERTS)
		stop = C_KAFKA_TOO_LONG;
	if (stop) {
		count_for(pid, stop);
		return 0;
	}
	if (!n_ins)
		return 0;

	u32 zero = 0;
	struct crc_table *t = bpf_map_lookup_elem(&crc32c_table, &zero);
	if (!t || t->t[1] != CRC32C_T1) {
		count_for(pid, C_KAFKA_FAILED);
		return 0;
	}
	u.f.sc = sc;
	u.f.n_ins = n_ins;
	bpf_loop(KAFKA_MAX_INSERTS, kf_step, &u.f, 0);
	__builtin_memset(&u, 0, sizeof(u));
	u.s.c.a = 0xffffffff;
	u.s.c.b = 0xffffffff;
	u.s.batch = base;
	u.s.sc = sc;
	u.s.len = rl;
	u.s.n_ins = n_ins;
	u.s.cur = KAFKA_CRC_FROM;
	bpf_loop(KAFKA_MAX_INSERTS, ks_step, &u.s, 0);
	crc_run(&u.s.c, base, u.s.cur, rl, ~0u, ~0u);
	if (u.s.c.bad || (u.s.c.a ^ 0xffffffff) != carried) {
		count_for(pid, C_KAFKA_BAD_BATCH);
		return 0;
	}
	u32 crc = u.s.c.b ^ 0xffffffff;

	__builtin_memset(&u, 0, sizeof(u));
	u.a.msg = msg;
	u.a.sc = sc;
	u.a.bs = bs;
	u.a.n_ins = n_ins;
	bpf_loop(KAFKA_MAX_INSERTS, ka_step, &u.a, 0);
	u32 added = u.a.added, failed = u.a.failed;
	if (added && (put_be32(msg, bs + 8, bl + added) || put_be32(msg, bs + 17, crc)))
		failed = 1;
	if (failed)
		count_for(pid, C_KAFKA_FAILED);
	else
		count_n_for(pid, C_KAFKA_INSERTED, n_ins);
	return added;
}
