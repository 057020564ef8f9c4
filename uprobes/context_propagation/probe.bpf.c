/* gosight — W3C trace context into outgoing requests, in the kernel:
 * plaintext HTTP/1 requests and HTTP/2 (h2c, gRPC) HEADERS frames.
 *
 * The app's memory is never written (bpf_probe_write_user is refused on kernels in
 * lockdown, and a bad write can crash the app). Instead:
 *  - sockops (on the pod's cgroup) puts every actively established TCP socket into
 *    `sockets`, a SOCKHASH;
 *  - sk_msg on that map sees each message as it is sent. The net/http client probe
 *    leaves a `pending_headers` entry for the goroutine that is about to write a
 *    request (its connection's write loop); sk_msg finds the sending goroutine from
 *    the task's TLS (g at fsbase-8 on amd64), and when it has a pending header and
 *    the message starts with an HTTP/1 request line, opens a gap after that line
 *    with bpf_msg_push_data and writes "traceparent: ...\r\n" into it.
 * Bodies are never touched: only the first message after the request was handed to
 * the write loop is considered, and only right after its request line. One object
 * serves every target; the cost for a message without a pending header is one map
 * lookup.
 *
 * HTTP/2: a connection whose first message is the client preface is followed frame
 * by frame from then on (per-connection state: bytes left of the current frame, or
 * a frame header split between messages). When a HEADERS frame (END_HEADERS, not
 * padded) of a stream that the gRPC client probe left a field for goes out, the
 * 69-byte literal-without-indexing `traceparent` field is appended to its header
 * block and the frame length fixed up. Literal-without-indexing leaves both peers'
 * HPACK tables untouched. If the walk ever loses the frame boundaries (too many
 * frames in one message), that connection gets nothing more: never a guess.
 */
#include "go_types.h"
#include "shared_maps.h"
#include "probe_stats.h"
#include <bpf/bpf_core_read.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Offset of the goroutine pointer from the thread pointer (fs base): -8 for Go on
 * linux/amd64. */
volatile const s64 g_tls_offset = -8;
/* A pending header older than this is stale (its request never reached a socket we
 * see, e.g. a connection opened before gosight attached) and is dropped. */
volatile const u64 pending_ttl_ns = 2000000000ULL;

struct thread_struct {
	unsigned long fsbase;
} __attribute__((preserve_access_index));

struct task_struct {
	struct thread_struct thread;
} __attribute__((preserve_access_index));

struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, 65536);
	__type(key, u64); /* socket cookie */
	__type(value, u32); /* a socket fd, as the kernel wants it */
} sockets SEC(".maps");

/* Counters: 0 sockets added, 1 add failures, 2 headers inserted, 3 insert failures,
 * 4 pending dropped (message was not a request line), 5 stale pending dropped. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 10);
	__type(key, u32);
	__type(value, u64);
} counters SEC(".maps");

#define C_H2_LOST 8     /* connections whose frame boundaries were lost */

/* A connection, by its addresses as sk_msg and sockops both see them. */
struct conn_key {
	u32 rip[4];
	u32 lip[4];
	u32 rport; /* network order */
	u32 lport; /* host order */
};

#define KIND_HTTP1 1
#define KIND_H2 2
#define H2_PREFACE_LEN 24
#define H2_FRAME_HDR 9
#define H2_MAX_FRAME 16384
#define H2_MAX_FRAMES 1024 /* frames followed in one message */

struct conn_state {
	u32 skip;          /* bytes of the current frame still to come */
	u8 kind;
	u8 lost;
	u8 partial_len;    /* bytes of a frame header seen at the end of the last message */
	u8 _pad;
	u8 partial[8];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct conn_key);
	__type(value, struct conn_state);
} conns SEC(".maps");

#define C_H2_INSERTED 6
#define C_H2_SKIPPED 7  /* a pending field that could not go in (frame split, size) */
#define C_SOCK_ADDED 0
#define C_SOCK_ADD_FAILED 1
#define C_INSERTED 2
#define C_INSERT_FAILED 3
#define C_NOT_REQUEST 4
#define C_STALE 5

SEC("sockops")
int track_sockets(struct bpf_sock_ops *skops)
{
	if (skops->op != BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB)
		return 1;
	if (skops->family != 2 /* AF_INET */ && skops->family != 10 /* AF_INET6 */)
		return 1;
	/* A new connection may reuse an old one's addresses: forget its state. */
	struct conn_key ck = { .rport = skops->remote_port, .lport = skops->local_port };
	if (skops->family == 2) {
		ck.rip[0] = skops->remote_ip4;
		ck.lip[0] = skops->local_ip4;
	} else {
		ck.rip[0] = skops->remote_ip6[0];
		ck.rip[1] = skops->remote_ip6[1];
		ck.rip[2] = skops->remote_ip6[2];
		ck.rip[3] = skops->remote_ip6[3];
		ck.lip[0] = skops->local_ip6[0];
		ck.lip[1] = skops->local_ip6[1];
		ck.lip[2] = skops->local_ip6[2];
		ck.lip[3] = skops->local_ip6[3];
	}
	bpf_map_delete_elem(&conns, &ck);
	u64 cookie = bpf_get_socket_cookie(skops);
	if (bpf_sock_hash_update(skops, &sockets, &cookie, BPF_NOEXIST) == 0)
		count_in(&counters, C_SOCK_ADDED);
	else
		count_in(&counters, C_SOCK_ADD_FAILED);
	return 1;
}

static __always_inline u64 current_goroutine(void)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	unsigned long fsbase = BPF_CORE_READ(task, thread.fsbase);
	if (!fsbase)
		return 0;
	u64 g = 0;
	bpf_probe_read_user(&g, sizeof(g), (void *)(fsbase + g_tls_offset));
	return g;
}

#define SCAN_MAX 16384
#define CHUNK 64

struct scan {
	u64 data;   /* start of the (pulled, linear) message */
	u32 n;      /* bytes to scan */
	u32 found;  /* index just past the first CRLF, 0 = none yet */
	char prev;  /* last byte of the previous chunk */
};

/* One 64-byte chunk per bpf_loop step: copied out, then scanned unrolled. */
static long scan_chunk(u64 idx, void *ctx)
{
	struct scan *s = ctx;
	u32 off = idx * CHUNK;
	if (off >= s->n || off >= SCAN_MAX)
		return 1;
	u32 len = s->n - off;
	char chunk[CHUNK] = {};
	if (len >= CHUNK) {
		len = CHUNK;
		if (bpf_probe_read_kernel(chunk, CHUNK, (void *)(s->data + off)))
			return 1;
	} else {
		len &= CHUNK - 1;
		if (len == 0 || bpf_probe_read_kernel(chunk, len, (void *)(s->data + off)))
			return 1;
	}
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

static __always_inline void conn_key_of(struct sk_msg_md *msg, struct conn_key *ck)
{
	ck->rport = msg->remote_port;
	ck->lport = msg->local_port;
	if (msg->family == 2) {
		ck->rip[0] = msg->remote_ip4;
		ck->lip[0] = msg->local_ip4;
	} else {
		ck->rip[0] = msg->remote_ip6[0];
		ck->rip[1] = msg->remote_ip6[1];
		ck->rip[2] = msg->remote_ip6[2];
		ck->rip[3] = msg->remote_ip6[3];
		ck->lip[0] = msg->local_ip6[0];
		ck->lip[1] = msg->local_ip6[1];
		ck->lip[2] = msg->local_ip6[2];
		ck->lip[3] = msg->local_ip6[3];
	}
}

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

struct h2_walk {
	struct sk_msg_md *msg;
	struct conn_state *st;
	u64 g;
	u32 tgid;
	u32 o;      /* offset of the next frame header in this message */
	u32 done;
};

/* Appends the field to the HEADERS frame whose header is at `o` and whose block
 * ends at `end_of_block`; fixes the frame length. 0 on success. */
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
		if (d + 8 > end) {
			/* copy byte by byte within bounds */
			for (int i = 0; i < 8; i++) {
				if (i >= have || d + i + 1 > end)
					break;
				w->st->partial[i] = d[i];
			}
		} else {
			__builtin_memcpy(w->st->partial, d, 8);
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
				count_in(&counters, C_H2_INSERTED);
			} else {
				count_in(&counters, C_H2_SKIPPED);
			}
			bpf_map_delete_elem(&pending_h2, &key);
		}
	}
	w->o = o + H2_FRAME_HDR + len;
	return 0;
}

/* Follows the frames of one message on an HTTP/2 connection. */
static __always_inline void h2_message(struct sk_msg_md *msg, struct conn_state *st, u64 g, u32 tgid)
{
	if (st->lost)
		return;
	u32 o = st->skip;
	if (st->partial_len) {
		/* Finish the frame header split at the end of the last message. */
		u32 need = H2_FRAME_HDR - st->partial_len;
		if (need > H2_FRAME_HDR || msg->size < need || bpf_msg_pull_data(msg, 0, need, 0)) {
			st->lost = 1;
			count_in(&counters, C_H2_LOST);
			return;
		}
		u8 hdr[H2_FRAME_HDR] = {};
		u8 *d = msg->data, *end = msg->data_end;
		for (int i = 0; i < H2_FRAME_HDR; i++) {
			if (i < st->partial_len) {
				hdr[i] = st->partial[i & 7];
			} else {
				u32 j = i - st->partial_len;
				if (d + j + 1 > end) {
					st->lost = 1;
					count_in(&counters, C_H2_LOST);
					return;
				}
				hdr[i] = d[j];
			}
		}
		u32 len = ((u32)hdr[0] << 16) | ((u32)hdr[1] << 8) | hdr[2];
		o = need + len;
		st->partial_len = 0;
	}
	struct h2_walk w = { .msg = msg, .st = st, .g = g, .tgid = tgid, .o = o };
	bpf_loop(H2_MAX_FRAMES, h2_step, &w, 0);
	if (!w.done) {
		st->lost = 1;
		count_in(&counters, C_H2_LOST);
	}
}

SEC("sk_msg")
int insert_traceparent(struct sk_msg_md *msg)
{
	struct proc_key key = { .tgid = bpf_get_current_pid_tgid() >> 32 };
	key.ptr = current_goroutine();

	struct conn_key ck = {};
	conn_key_of(msg, &ck);
	struct conn_state *st = bpf_map_lookup_elem(&conns, &ck);
	if (!st) {
		struct conn_state fresh = {};
		if (starts_with_h2_preface(msg)) {
			fresh.kind = KIND_H2;
			fresh.skip = H2_PREFACE_LEN;
		} else {
			fresh.kind = KIND_HTTP1;
		}
		bpf_map_update_elem(&conns, &ck, &fresh, BPF_NOEXIST);
		st = bpf_map_lookup_elem(&conns, &ck);
		if (!st)
			return SK_PASS;
	}
	if (st->kind == KIND_H2) {
		h2_message(msg, st, key.ptr, key.tgid);
		return SK_PASS;
	}

	if (!key.ptr)
		return SK_PASS;
	struct pending_header *p = bpf_map_lookup_elem(&pending_headers, &key);
	if (!p)
		return SK_PASS;
	if (bpf_ktime_get_ns() - p->created_ns > pending_ttl_ns) {
		count_in(&counters, C_STALE);
		bpf_map_delete_elem(&pending_headers, &key);
		return SK_PASS;
	}

	if (!p->awaiting_crlf && !starts_with_request_line(msg)) {
		/* Not a plaintext request (TLS, or something else): never guess. */
		count_in(&counters, C_NOT_REQUEST);
		bpf_map_delete_elem(&pending_headers, &key);
		return SK_PASS;
	}
	u32 pos = end_of_first_line(msg);
	if (!pos) {
		if (msg->size <= SCAN_MAX) {
			/* The whole message is request line: it continues in the next one. */
			p->awaiting_crlf = 1;
			return SK_PASS;
		}
		/* A line longer than we scan: give up rather than guess. */
		count_in(&counters, C_INSERT_FAILED);
		bpf_map_delete_elem(&pending_headers, &key);
		return SK_PASS;
	}
	if (insert_at(msg, pos, p) == 0)
		count_in(&counters, C_INSERTED);
	else
		count_in(&counters, C_INSERT_FAILED);
	bpf_map_delete_elem(&pending_headers, &key);
	return SK_PASS;
}
