/* gosight — HTTP/2 (h2c, gRPC) in sk_msg: following a connection frame by frame and
 * appending a `traceparent` field to the HEADERS frames the gRPC client probe left
 * a field for.
 *
 * A connection whose first message is the client preface is followed from there.
 * A connection that existed before gosight attached is joined mid-stream: its frame
 * position is learned from a message made wholly of well-formed frames (gRPC's
 * writer flushes whole frames); until one is seen nothing is inserted. If the walk
 * ever loses the frame boundaries, the connection gets nothing more: never a guess.
 *
 * The field is a literal without indexing (RFC 7541 6.2.2), which leaves both
 * peers' HPACK dynamic tables untouched; the frame length is fixed up.
 */
#pragma once

#include "go_types.h"
#include "shared_maps.h"
#include "sock_state.h"

#define H2_PREFACE_LEN 24
#define H2_FRAME_HDR 9
#define H2_MAX_FRAME 16384
#define H2_MAX_FRAMES 1024 /* frames followed in one message */

/* A pending field older than this is stale and dropped. */
volatile const u64 pending_ttl_ns = 2000000000ULL;

static __always_inline int starts_with_h2_preface(struct sk_msg_md *msg)
{
	if (msg->size < H2_PREFACE_LEN || bpf_msg_pull_data(msg, 0, H2_PREFACE_LEN, 0))
		return 0;
	u8 *d = msg->data, *end = msg->data_end;
	if (d + H2_PREFACE_LEN > end)
		return 0;
	/* "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" */
	return d[0] == 'P' && d[1] == 'R' && d[2] == 'I' && d[3] == ' ' && d[4] == '*' && d[5] == ' ' &&
	       d[6] == 'H' && d[7] == 'T' && d[8] == 'T' && d[9] == 'P' && d[10] == '/' && d[11] == '2' &&
	       d[12] == '.' && d[13] == '0' && d[14] == '\r' && d[15] == '\n' && d[16] == '\r' &&
	       d[17] == '\n' && d[18] == 'S' && d[19] == 'M' && d[20] == '\r' && d[21] == '\n' &&
	       d[22] == '\r' && d[23] == '\n';
}

/* Callback state: no field may count iterations in a way later branches read,
 * or the verifier cannot see the callback's states converge. */
struct h2_check {
	struct sk_msg_md *msg;
	u32 o;
	u8 ok;
};

/* One frame header per step: plausible type, length, reserved bit, stream id. */
static long h2_check_step(u64 idx, void *ctx)
{
	struct h2_check *c = ctx;
	struct sk_msg_md *msg = c->msg;
	u32 size = msg->size;
	u32 o = c->o;
	if (o == size) {
		c->ok = 1;
		return 1;
	}
	if (o + H2_FRAME_HDR > size || bpf_msg_pull_data(msg, o, o + H2_FRAME_HDR, 0))
		return 1;
	u8 *h = msg->data, *end = msg->data_end;
	if (h + H2_FRAME_HDR > end)
		return 1;
	u32 len = ((u32)h[0] << 16) | ((u32)h[1] << 8) | h[2];
	u8 type = h[3];
	u32 sid = (((u32)h[5]) << 24) | ((u32)h[6] << 16) | ((u32)h[7] << 8) | h[8];
	if (len > H2_MAX_FRAME || type > 9 || (sid & 0x80000000))
		return 1;
	int conn_level = type == 4 || type == 6 || type == 7;
	if (conn_level != (sid == 0) && type != 8)
		return 1;
	c->o = o + H2_FRAME_HDR + len;
	return 0;
}

/* Whether the message is one or more whole, well-formed frames. */
static __always_inline int h2_whole_frames(struct sk_msg_md *msg)
{
	struct h2_check c = { .msg = msg };
	if (!msg->size)
		return 0;
	bpf_loop(H2_MAX_FRAMES, h2_check_step, &c, 0);
	return c.ok;
}

struct h2_walk {
	struct sk_msg_md *msg;
	struct sock_state *st;
	u64 g;
	u32 tgid;
	u32 o; /* offset of the next frame header in this message */
	u32 done;
};

/* Appends the field to the HEADERS frame whose header is at `o` and whose block is
 * `len` bytes; fixes the frame length. 0 on success. */
static __always_inline int h2_append(struct sk_msg_md *msg, u32 o, u32 len, struct h2_pending *p)
{
	u32 pos = o + H2_FRAME_HDR + len;
	if (bpf_msg_push_data(msg, pos, H2_TP_FIELD_LEN, 0))
		return -1;
	if (bpf_msg_pull_data(msg, pos, pos + H2_TP_FIELD_LEN, 0) == 0) {
		u8 *data = msg->data, *end = msg->data_end;
		if (data + H2_TP_FIELD_LEN <= end) {
			__builtin_memcpy(data, p->field.bytes, H2_TP_FIELD_LEN);
			if (bpf_msg_pull_data(msg, o, o + 3, 0) == 0) {
				u8 *h = msg->data, *hend = msg->data_end;
				if (h + 3 <= hend) {
					u32 nl = len + H2_TP_FIELD_LEN;
					h[0] = nl >> 16;
					h[1] = nl >> 8;
					h[2] = nl;
					return 0;
				}
			}
		}
	}
	bpf_msg_pop_data(msg, pos, H2_TP_FIELD_LEN, 0);
	return -1;
}

/* One frame per step: read its header, maybe append to it, move past it. */
static long h2_step(u64 idx, void *ctx)
{
	struct h2_walk *w = ctx;
	struct sk_msg_md *msg = w->msg;
	u32 size = msg->size;
	u32 o = w->o;
	if (o >= size) {
		w->st->skip = o - size;
		w->done = 1;
		return 1;
	}
	if (o + H2_FRAME_HDR > size) {
		/* The header continues in the next message: keep what we have. */
		u32 have = size - o;
		if (have > 8 || bpf_msg_pull_data(msg, o, size, 0))
			return 1;
		u8 *d = msg->data, *end = msg->data_end;
		for (int i = 0; i < 8; i++) {
			if (i >= have || d + i + 1 > end)
				break;
			w->st->partial[i] = d[i];
		}
		w->st->partial_len = have;
		w->st->skip = 0;
		w->done = 1;
		return 1;
	}
	if (bpf_msg_pull_data(msg, o, o + H2_FRAME_HDR, 0))
		return 1;
	u8 *h = msg->data, *end = msg->data_end;
	if (h + H2_FRAME_HDR > end)
		return 1;
	u32 len = ((u32)h[0] << 16) | ((u32)h[1] << 8) | h[2];
	u8 type = h[3], flags = h[4];
	u32 sid = (((u32)h[5] & 0x7f) << 24) | ((u32)h[6] << 16) | ((u32)h[7] << 8) | h[8];
	if (type == 1 && (sid & 1)) {
		struct h2_key key = { .tgid = w->tgid, .stream_id = sid, .g = w->g };
		struct h2_pending *p = bpf_map_lookup_elem(&pending_h2, &key);
		if (p) {
			int ok = (flags & 0x4) && !(flags & 0x8) && len + H2_TP_FIELD_LEN <= H2_MAX_FRAME &&
				 o + H2_FRAME_HDR + len <= size && bpf_ktime_get_ns() - p->created_ns <= pending_ttl_ns;
			if (ok && h2_append(msg, o, len, p) == 0) {
				len += H2_TP_FIELD_LEN;
				count_for(w->st->pid, C_H2_INSERTED);
			} else {
				count_for(w->st->pid, C_H2_SKIPPED);
			}
			bpf_map_delete_elem(&pending_h2, &key);
		}
	}
	w->o = o + H2_FRAME_HDR + len;
	return 0;
}

/* Follows the frames of one message on an HTTP/2 connection. */
static __always_inline void h2_message(struct sk_msg_md *msg, struct sock_state *st, u64 g, u32 tgid)
{
	if (st->lost)
		return;
	if (st->unaligned) {
		if (!h2_whole_frames(msg))
			return;
		st->unaligned = 0;
		st->skip = 0;
		st->partial_len = 0;
	}
	u32 o = st->skip;
	if (st->partial_len) {
		/* Finish the frame header split at the end of the last message. */
		u32 pl = st->partial_len & 7;
		u32 need = H2_FRAME_HDR - pl;
		u8 rest[16] = {};
		if (msg->size < need || bpf_msg_pull_data(msg, 0, need, 0) || msg->data + need > msg->data_end ||
		    bpf_probe_read_kernel(rest, need, msg->data)) {
			st->lost = 1;
			count_for(st->pid, C_H2_LOST);
			return;
		}
		/* The length is the header's first 3 bytes: from the last message's part,
		 * then from this one's. */
		u32 len = 0;
		for (u32 i = 0; i < 3; i++) {
			u8 b = i < pl ? st->partial[i] : rest[(i - pl) & 15];
			len = (len << 8) | b;
		}
		o = need + len;
		st->partial_len = 0;
	}
	struct h2_walk w = { .msg = msg, .st = st, .g = g, .tgid = tgid, .o = o };
	bpf_loop(H2_MAX_FRAMES, h2_step, &w, 0);
	if (!w.done) {
		st->lost = 1;
		count_for(st->pid, C_H2_LOST);
	}
}
