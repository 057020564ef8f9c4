/* gosight — HTTP/1 in sk_msg: recognising a request line, finding where it ends,
 * judging the request's own `traceparent` header lines, and inserting ours.
 *
 * Only the first message after the request was handed to the connection's write
 * loop is considered: bodies are never touched.
 */
#pragma once

#include "go_types.h"
#include "shared_maps.h"
#include "traceparent.h"
#include "sock_state.h"

#define SCAN_MAX 16384
#define CHUNK 64
#define MAX_LINES 32 /* header lines looked at for an existing traceparent */

struct scan {
	u64 data;   /* start of the (pulled, linear) message */
	u32 from;   /* where scanning starts */
	u32 n;      /* bytes to scan (from 0) */
	u32 found;  /* index just past the first CRLF after `from`, 0 = none yet */
	char prev;  /* last byte of the previous chunk */
	u8 ended;   /* lines: the empty line ending the header block was seen */
	u32 nlines;
	u32 last;   /* lines: start of the current line */
	u16 starts[MAX_LINES]; /* < SCAN_MAX */
};

/* Copies the chunk at `off` (at most CHUNK bytes, fewer at the end); its length. */
static __always_inline u32 read_chunk(struct scan *s, u32 off, char *chunk)
{
	if (off >= s->n || off >= SCAN_MAX)
		return 0;
	u32 len = s->n - off;
	if (len >= CHUNK) {
		if (bpf_probe_read_kernel(chunk, CHUNK, (void *)(s->data + off)))
			return 0;
		return CHUNK;
	}
	len &= CHUNK - 1;
	if (len == 0 || bpf_probe_read_kernel(chunk, len, (void *)(s->data + off)))
		return 0;
	return len;
}

/* One 64-byte chunk per bpf_loop step: copied out, then scanned unrolled; stops
 * at the first CRLF. */
static long scan_chunk(u64 idx, void *ctx)
{
	struct scan *s = ctx;
	u32 off = s->from + idx * CHUNK;
	char chunk[CHUNK] = {};
	u32 len = read_chunk(s, off, chunk);
	if (!len)
		return 1;
	char prev = s->prev;
#pragma unroll
	for (u32 j = 0; j < CHUNK; j++) {
		if (j < len && chunk[j] == '\n' && prev == '\r') {
			s->found = off + j + 1;
			return 1;
		}
		prev = chunk[j];
	}
	s->prev = prev;
	return 0;
}

/* One 64-byte chunk per bpf_loop step: records where header lines start, up to
 * the empty line that ends the block. No branch reads `nlines` (the caller checks
 * it afterwards): a counter that branches decide on would keep the verifier from
 * seeing this callback's states converge. */
static long lines_chunk(u64 idx, void *ctx)
{
	struct scan *s = ctx;
	u32 off = s->from + idx * CHUNK;
	char chunk[CHUNK] = {};
	u32 len = read_chunk(s, off, chunk);
	if (!len)
		return 1;
	char prev = s->prev;
#pragma unroll
	for (u32 j = 0; j < CHUNK; j++) {
		if (j < len && chunk[j] == '\n' && prev == '\r') {
			u32 next = off + j + 1;
			if (next - s->last == 2) { /* an empty line: end of the header block */
				s->ended = 1;
				s->found = s->last;
				return 1;
			}
			s->last = next;
			s->starts[s->nlines & (MAX_LINES - 1)] = next;
			s->nlines++;
		}
		prev = chunk[j];
	}
	s->prev = prev;
	return 0;
}

/* Index just past the first CRLF in the first SCAN_MAX bytes, or 0. */
static __always_inline u32 end_of_first_line(struct sk_msg_md *msg)
{
	u32 n = msg->size < SCAN_MAX ? msg->size : SCAN_MAX;
	if (n < 2 || bpf_msg_pull_data(msg, 0, n, 0))
		return 0;
	void *data = msg->data, *end = msg->data_end;
	if (data + n > end)
		return 0;
	struct scan s = { .data = (u64)data, .n = n };
	bpf_loop(SCAN_MAX / CHUNK, scan_chunk, &s, 0);
	return s.found;
}

/* Whether the message starts like an HTTP/1 request: an upper-case method token
 * followed by a space, then '/' (origin form) or a scheme (absolute form) or '*'. */
static __always_inline int starts_with_request_line(struct sk_msg_md *msg)
{
	if (msg->size < 16 || bpf_msg_pull_data(msg, 0, 16, 0))
		return 0;
	u8 *data = msg->data, *end = msg->data_end;
	if (data + 16 > end)
		return 0;
	int i;
	for (i = 0; i < 8; i++) {
		u8 c = data[i];
		if (c == ' ')
			break;
		if (c < 'A' || c > 'Z')
			return 0;
	}
	if (i < 3 || i == 8)
		return 0;
	u8 next = data[i + 1 < 16 ? i + 1 : 15];
	return next == '/' || next == '*' || (next >= 'a' && next <= 'z');
}

static __always_inline int insert_at(struct sk_msg_md *msg, u32 pos, struct pending_header *p)
{
	if (pos > SCAN_MAX)
		return -1;
	if (bpf_msg_push_data(msg, pos, TP_HEADER_LEN, 0))
		return -1;
	/* The gap holds uninitialised memory until it is filled: make it linear and
	 * write it, or take it out again. */
	if (bpf_msg_pull_data(msg, pos, pos + TP_HEADER_LEN, 0) == 0) {
		u8 *data = msg->data, *end = msg->data_end;
		if (data + TP_HEADER_LEN <= end) {
			__builtin_memcpy(data, p->line, TP_HEADER_LEN);
			/* Small messages are linearised whole: the gap would otherwise split
			 * the request into three TCP segments. */
			if (msg->size <= 2048)
				bpf_msg_pull_data(msg, 0, msg->size, 0);
			return 0;
		}
	}
	bpf_msg_pop_data(msg, pos, TP_HEADER_LEN, 0);
	return -1;
}

static __always_inline u8 lower(u8 c)
{
	return (c >= 'A' && c <= 'Z') ? c + 32 : c;
}

#define TP_LINE_LEN (13 + TRACEPARENT_LEN + 2) /* "traceparent: " value CRLF */

struct tp_lines {
	u32 start[2];
	u32 len[2];
	u8 n;      /* traceparent lines found (at most 2 kept; more = malformed) */
	u8 more;   /* a third one */
	u8 valid;  /* the one line found is a well-formed traceparent */
};

struct judge {
	u64 data;
	u32 n;
	u32 nlines;
	struct tp_lines *out;
	struct scan *s;
};

/* One header line per step: is it a traceparent line, and a well-formed one? */
static long judge_line(u64 idx, void *ctx)
{
	struct judge *j = ctx;
	struct scan *s = j->s;
	if (idx >= j->nlines || idx >= MAX_LINES)
		return 1;
	u32 o = s->starts[idx & (MAX_LINES - 1)];
	u32 next = (idx + 1 < j->nlines) ? s->starts[(idx + 1) & (MAX_LINES - 1)] : s->found;
	if (o + 12 > j->n || next <= o)
		return 1;
	char b[TP_LINE_LEN] = {};
	u32 len = next - o;
	if (bpf_probe_read_kernel(b, 12, (void *)(j->data + o)))
		return 1;
	const char *name = "traceparent:";
	for (int i = 0; i < 12; i++)
		if (lower(b[i]) != name[i])
			return 0;
	struct tp_lines *t = j->out;
	if (t->n >= 2) {
		t->more = 1;
		return 0;
	}
	t->start[t->n & 1] = o;
	t->len[t->n & 1] = len;
	t->n++;
	t->valid = 0;
	if (len == TP_LINE_LEN && o + TP_LINE_LEN <= j->n &&
	    bpf_probe_read_kernel(b, TP_LINE_LEN, (void *)(j->data + o)) == 0 && b[12] == ' ' &&
	    b[TP_LINE_LEN - 2] == '\r') {
		struct span_ctx sc;
		t->valid = traceparent_parse(b + 13, &sc) && b[13] == '0' && b[14] == '0';
	}
	return 0;
}

/* Finds the request's own traceparent lines in the header block that starts at
 * `pos` (within this message). Returns -1 when the header block does not end in
 * this message or has more lines than are looked at (then nothing is judged). */
static __always_inline int find_traceparent_lines(struct sk_msg_md *msg, u32 pos, struct scan *s,
						  struct tp_lines *t)
{
	u32 n = msg->size < SCAN_MAX ? msg->size : SCAN_MAX;
	if (bpf_msg_pull_data(msg, 0, n, 0))
		return -1;
	void *data = msg->data, *end = msg->data_end;
	if (data + n > end)
		return -1;
	s->data = (u64)data;
	s->from = pos;
	s->n = n;
	s->last = pos;
	s->starts[0] = pos;
	s->nlines = 1;
	s->prev = 0;
	/* The first header line starts at pos: a CRLF right there ends the block. */
	bpf_loop(SCAN_MAX / CHUNK, lines_chunk, s, 0);
	if (!s->ended || s->nlines > MAX_LINES)
		return -1;
	struct judge j = { .data = (u64)data, .n = n, .nlines = s->nlines, .out = t, .s = s };
	bpf_loop(MAX_LINES, judge_line, &j, 0);
	return 0;
}
