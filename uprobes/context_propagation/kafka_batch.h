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

/* One of a record's own headers per step: is its key `traceparent`? */
static long kb_header(u64 idx, void *ctx)
{
	struct kafka_scratch *sc = ((struct kafka_ctx *)ctx)->sc;
	if (idx >= sc->kh.n)
		return 1;
	u64 base = sc->kb.base;
	u32 len = sc->kb.len, q = sc->kh.q;
	u8 *b = sc->buf_hdr;
	u32 n = lread(base, len, q, b);
	u32 p = 0;
	s64 ks = 0, vs = 0;
	if (!n || !zvarint(b, n, &p, &ks, 5) || ks < 0 || ks > len)
		goto bad;
	if (ks == 11) {
		/* "tracepar" and "ent", as little-endian words: two compares. */
		u64 *k = (u64 *)b;
		if (lread(base, len, q + p, b) >= 11 && k[0] == 0x7261706563617274ULL && (k[1] & 0xffffff) == 0x746e65)
			sc->kh.found = 1;
	}
	u32 v = q + p + (u32)ks;
	n = lread(base, len, v, b);
	p = 0;
	if (!n || !zvarint(b, n, &p, &vs, 5) || vs < -1 || vs > len)
		goto bad;
	q = v + p + (vs > 0 ? (u32)vs : 0);
	sc->kh.q = q;
	if (q > sc->kh.end)
		goto bad;
	return 0;
bad:
	sc->kh.bad = 1;
	return 1;
}

/* Parses the record at r of the linear batch (sc->kb) into sc->ri. 0 when it is
 * well-formed. (A global function: verified once, on its own.) */
__attribute__((noinline)) int record_parse(struct kafka_scratch *sc, u32 r)
{
	if (!sc)
		return -1;
	u64 base = sc->kb.base;
	u32 len = sc->kb.len;
	u8 *b = sc->buf_rec;
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
	struct rec_info *out = &sc->ri;
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
 * when malformed or more than KAFKA_MAX_HEADERS; sc->kh.found set when one is
 * `traceparent`. (A global function: verified once, on its own.) */
__attribute__((noinline)) int record_headers(struct kafka_scratch *sc, u32 h, u32 end)
{
	if (!sc)
		return -1;
	/* A count up to KAFKA_MAX_HEADERS is a one-byte zigzag varint. */
	u8 c = 0;
	if (h >= sc->kb.len || bpf_probe_read_kernel(&c, 1, (void *)(sc->kb.base + h)) || (c & 0x81))
		return -1;
	u32 hcount = c >> 1;
	if (hcount > KAFKA_MAX_HEADERS)
		return -1;
	sc->kh.q = h + 1;
	sc->kh.end = end;
	sc->kh.n = hcount;
	sc->kh.found = 0;
	sc->kh.bad = 0;
	struct kafka_ctx x = { .sc = sc };
	bpf_loop(KAFKA_MAX_HEADERS, kb_header, &x, 0);
	if (sc->kh.bad || sc->kh.q != end)
		return -1;
	return (int)hcount;
}

/* One record per step: its fingerprint, and when a context is pending for it,
 * its entry in the scratch list. */
static long kb_record(u64 idx, void *ctx)
{
	struct kafka_scratch *sc = ((struct kafka_ctx *)ctx)->sc;
	if (idx >= sc->kb.nrec)
		return 1;
	u32 r = sc->kb.o, pid = sc->kb.pid;
	if (record_parse(sc, r))
		goto bad;
	u32 end = sc->ri.end, h = sc->ri.h, lsz = sc->ri.lsz;
	s64 L = sc->ri.len;
	sc->kb.o = end;

	struct kafka_fp *fp = &sc->fp;
	fp->tgid = sc->kb.tgid;
	fp->key_len = sc->ri.key_len;
	fp->value_len = sc->ri.value_len;
	fp->_pad = 0;
	fp->hash = sc->ri.hash;
	struct kafka_pending *pend = bpf_map_lookup_elem(&pending_kafka, fp);
	if (!pend)
		return 0;
	if (bpf_ktime_get_ns() - pend->created_ns > kafka_pending_ttl_ns) {
		count_for(pid, C_KAFKA_STALE);
		bpf_map_delete_elem(&pending_kafka, fp);
		return 0;
	}
	int hcount = record_headers(sc, h, end);
	if (hcount < 0) {
		/* Malformed, or more headers than are looked through. */
		count_for(pid, C_KAFKA_TOO_LONG);
		bpf_map_delete_elem(&pending_kafka, fp);
		return 0;
	}
	if (sc->kh.found) {
		count_for(pid, C_KAFKA_KEPT_OWN);
		bpf_map_delete_elem(&pending_kafka, fp);
		return 0;
	}
	/* record_headers ran a loop: look the context up again. */
	pend = bpf_map_lookup_elem(&pending_kafka, fp);
	if (!pend)
		return 0;
	/* No branch reads n_ins here (the verifier could not see the callback's
	 * states converge): past KAFKA_MAX_INSERTS entries wrap, and the caller gives
	 * up on the batch. */
	struct kafka_insert *in = &sc->ins[sc->kb.n_ins & (KAFKA_MAX_INSERTS - 1)];
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
	if (pend->shared)
		count_for(pid, C_KAFKA_SHARED);
	sc->kb.n_ins++;
	bpf_map_delete_elem(&pending_kafka, fp);
	return 0;
bad:
	sc->kb.stop = C_KAFKA_BAD_BATCH;
	return 1;
}

/* One listed record per step: its header's bytes. */
static long kf_step(u64 idx, void *ctx)
{
	struct kafka_scratch *sc = ((struct kafka_ctx *)ctx)->sc;
	if (idx >= sc->kb.n_ins)
		return 1;
	struct kafka_insert *in = &sc->ins[idx & (KAFKA_MAX_INSERTS - 1)];
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

struct kc_ctx {
	struct kafka_scratch *sc;
	struct crc_table *t;
};

/* 16 bytes per step into the CRCs the masks select (no branches per byte). */
static long kc_chunk(u64 idx, void *ctx)
{
	struct kc_ctx *x = ctx;
	struct kafka_scratch *sc = x->sc;
	u32 off = sc->crc.from + (u32)idx * 16, to = sc->crc.to;
	if (off >= to)
		return 1;
	u32 n = to - off;
	if (n > 16)
		n = 16;
	u64 buf[2] = {};
	n &= 31;
	if (n == 0 || n > 16 || bpf_probe_read_kernel(buf, n, (void *)(sc->crc.base + off))) {
		sc->crc.bad = 1;
		return 1;
	}
	struct crc_table *t = x->t;
	u32 a = sc->crc.a, b = sc->crc.b, ma = sc->crc.ma, mb = sc->crc.mb;
	/* No branch per byte: bytes past n leave both CRCs alone. */
#pragma clang loop unroll(disable)
	for (u32 w = 0; w < 2; w++) {
		u64 word = buf[w & 1];
#pragma clang loop unroll(disable)
		for (u32 j = 0; j < 8; j++) {
			u8 c = word >> (8 * j);
			u32 in = (u32)((s32)(w * 8 + j - n) >> 31);
			u32 ka = ma & in, kb = mb & in;
			u32 na = t->t[(a ^ c) & 0xff] ^ (a >> 8);
			u32 nb = t->t[(b ^ c) & 0xff] ^ (b >> 8);
			a = (na & ka) | (a & ~ka);
			b = (nb & kb) | (b & ~kb);
		}
	}
	sc->crc.a = a;
	sc->crc.b = b;
	return 0;
}

/* Bytes [sc->crc.from, sc->crc.to) at sc->crc.base into the CRCs sc->crc.ma/mb
 * select. (A global function: verified once, whatever the number of call sites.) */
__attribute__((noinline)) int crc_range(struct kafka_scratch *sc)
{
	if (!sc)
		return 0;
	u32 zero = 0;
	struct crc_table *t = bpf_map_lookup_elem(&crc32c_table, &zero);
	if (!t) {
		sc->crc.bad = 1;
		return 0;
	}
	struct kc_ctx x = { .sc = sc, .t = t };
	bpf_loop(KAFKA_MAX_BATCH / 16 + 1, kc_chunk, &x, 0);
	return 0;
}

/* Bytes [from, to) at base (the batch, or scratch memory), into the CRCs that
 * ma/mb select. */
static __always_inline void crc_run(struct kafka_scratch *sc, u64 base, u32 from, u32 to, u32 ma, u32 mb)
{
	if (from >= to)
		return;
	sc->crc.base = base;
	sc->crc.from = from;
	sc->crc.to = to;
	sc->crc.ma = ma;
	sc->crc.mb = mb;
	crc_range(sc);
}

/* One listed record per step: the bytes up to it and its changes, into the CRCs. */
static long ks_step(u64 idx, void *ctx)
{
	struct kafka_scratch *sc = ((struct kafka_ctx *)ctx)->sc;
	if (idx >= sc->ks.n_ins || sc->crc.bad)
		return 1;
	struct kafka_insert *in = &sc->ins[idx & (KAFKA_MAX_INSERTS - 1)];
	u32 rec = in->rec, hc = in->hc, end = in->end, lsz = in->lsz & 7, nl = in->new_lsz & 7;
	u32 cur = sc->ks.cur;
	if (rec < cur || rec + lsz > hc || hc + 1 > end || end > sc->kb.len) {
		sc->crc.bad = 1;
		return 1;
	}
	u64 batch = sc->kb.base;
	crc_run(sc, batch, cur, rec, ~0u, ~0u);
	crc_run(sc, batch, rec, rec + lsz, ~0u, 0);
	crc_run(sc, (u64)&in->varint, 0, nl, 0, ~0u);
	crc_run(sc, batch, rec + lsz, hc, ~0u, ~0u);
	crc_run(sc, batch, hc, hc + 1, ~0u, 0);
	crc_run(sc, (u64)&in->hc_byte, 0, 1, 0, ~0u);
	crc_run(sc, batch, hc + 1, end, ~0u, ~0u);
	crc_run(sc, (u64)in->hdr, 0, KAFKA_HDR_LEN, 0, ~0u);
	sc->ks.cur = end;
	return 0;
}

/* ---- phase 2: the changes ---- */

/* One listed record per step, last first: header, headers count, length. */
static long ka_step(u64 idx, void *ctx)
{
	struct kafka_ctx *x = ctx;
	struct kafka_scratch *sc = x->sc;
	struct sk_msg_md *msg = x->msg;
	u32 n_ins = sc->ka.n_ins, bs = sc->ka.bs;
	if (idx >= n_ins)
		return 1;
	struct kafka_insert *in = &sc->ins[(n_ins - 1 - (u32)idx) & (KAFKA_MAX_INSERTS - 1)];
	u32 pos = bs + in->end;
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
	sc->ka.added += KAFKA_HDR_LEN;
	pos = bs + in->hc;
	if (bpf_msg_pull_data(msg, pos, pos + 1, 0))
		goto fail;
	d = msg->data;
	if ((void *)(d + 1) > msg->data_end)
		goto fail;
	d[0] = in->hc_byte;
	u32 lsz = in->lsz & 7, nl = in->new_lsz & 7;
	pos = bs + in->rec;
	if (nl > lsz) {
		if (bpf_msg_push_data(msg, pos, nl - lsz, 0))
			goto fail;
		sc->ka.added += nl - lsz;
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
	sc->ka.failed = 1;
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
	/* Stored, it reads back as a plain number, which global functions take. */
	sc->kb.base = (u64)data;
	u64 base = *(volatile u64 *)&sc->kb.base;
	u8 *h = sc->buf_batch;
	if (lread(base, rl, 32, h) < 29) {
		count_for(pid, C_KAFKA_BAD_BATCH);
		return 0;
	}
	u32 nrec = be32(h + 25);
	if (lread(base, rl, 0, h) < 32) {
		count_for(pid, C_KAFKA_BAD_BATCH);
		return 0;
	}
	u32 bl = be32(h + 8);
	u8 magic = h[16];
	u32 carried = be32(h + 17);
	u16 attrs = (u16)be16(h + 21);
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
	sc->kb.len = rl;
	sc->kb.o = KAFKA_BATCH_HDR;
	sc->kb.nrec = nrec;
	sc->kb.tgid = tgid;
	sc->kb.pid = pid;
	sc->kb.n_ins = 0;
	sc->kb.stop = 0;
	struct kafka_ctx x = { .msg = msg, .sc = sc };
	bpf_loop(KAFKA_MAX_RECORDS, kb_record, &x, 0);
	u32 stop = sc->kb.stop, n_ins = sc->kb.n_ins;
	if (!stop && sc->kb.o != rl)
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
	bpf_loop(KAFKA_MAX_INSERTS, kf_step, &x, 0);
	sc->crc.a = 0xffffffff;
	sc->crc.b = 0xffffffff;
	sc->crc.bad = 0;
	sc->ks.n_ins = n_ins;
	sc->ks.cur = KAFKA_CRC_FROM;
	bpf_loop(KAFKA_MAX_INSERTS, ks_step, &x, 0);
	crc_run(sc, base, sc->ks.cur, rl, ~0u, ~0u);
	if (sc->crc.bad || (sc->crc.a ^ 0xffffffff) != carried) {
		count_for(pid, C_KAFKA_BAD_BATCH);
		return 0;
	}
	u32 crc = sc->crc.b ^ 0xffffffff;

	sc->ka.bs = bs;
	sc->ka.n_ins = n_ins;
	sc->ka.added = 0;
	sc->ka.failed = 0;
	bpf_loop(KAFKA_MAX_INSERTS, ka_step, &x, 0);
	u32 added = sc->ka.added, failed = sc->ka.failed;
	if (added && (put_be32(msg, bs + 8, bl + added) || put_be32(msg, bs + 17, crc)))
		failed = 1;
	if (failed)
		count_for(pid, C_KAFKA_FAILED);
	else
		count_n_for(pid, C_KAFKA_INSERTED, n_ins);
	return added;
}
