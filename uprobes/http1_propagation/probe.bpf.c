/* gosight — W3C trace context into outgoing HTTP/1 requests, in the kernel.
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
	__uint(max_entries, 8);
	__type(key, u32);
	__type(value, u64);
} counters SEC(".maps");

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

SEC("sk_msg")
int insert_traceparent(struct sk_msg_md *msg)
{
	struct proc_key key = { .tgid = bpf_get_current_pid_tgid() >> 32 };
	key.ptr = current_goroutine();
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
