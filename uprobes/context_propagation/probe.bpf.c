/* gosight — W3C trace context into outgoing requests, in the kernel: plaintext
 * HTTP/1 requests (http1.h) and HTTP/2 (h2c, gRPC) HEADERS frames (h2.h), on the
 * connections of the processes gosight traces and no others (sock_state.h).
 *
 * The app's memory is never written (bpf_probe_write_user is refused on kernels in
 * lockdown, and a bad write can crash the app). Instead:
 *  - tag_connect (tp_btf sock:inet_sock_set_state) marks the sockets a target
 *    connect()s; enrol_existing (iter/tcp) marks and enrols the idle connections a
 *    target had before gosight attached;
 *  - enrol_sockets (sockops on the watched cgroup) puts marked sockets into
 *    `sockets`, a SOCKHASH, when they are established, and takes out again those
 *    whose first message shows neither net/http nor gRPC (TLS, database protocols);
 *  - insert_traceparent (sk_msg on that map) sees each message as it is sent. The
 *    net/http client probe leaves a `pending_headers` entry for the goroutine about
 *    to write a request (its connection's write loop); sk_msg finds the sending
 *    goroutine from the task's TLS (g at fsbase-8 on amd64), and when the message
 *    starts with an HTTP/1 request line, opens a gap after that line with
 *    bpf_msg_push_data and writes "traceparent: ...\r\n" into it;
 *    On a Kafka connection (kafka.h) it adds a `traceparent` record header to
 *    the records of Produce requests whose producer probe left a context;
 *  - pass_stream (SK_SKB stream verdict, attached only when the start-up self-check
 *    shows the kernel needs it) passes every arrival unchanged: with it the kernel
 *    accounts received bytes through the socket's psock, so FIONREAD and epoll stay
 *    right on kernels whose sockmap FIONREAD reports only psock-queued bytes.
 * One object serves every target; a message without a pending header costs one
 * storage lookup and one map lookup.
 */
#include "go_types.h"
#include "go_tls.h"
#include "shared_maps.h"
#include "sock_state.h"
#include "http1.h"
#include "h2.h"
#include "kafka.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define SOL_TCP 6
#ifndef TCP_BPF_SOCK_OPS_CB_FLAGS
#define TCP_BPF_SOCK_OPS_CB_FLAGS 1008 /* Linux 6.14 */
#endif

/* Offset of the goroutine pointer from the thread pointer (fs base): -8 for Go on
 * linux/amd64. */
volatile const s64 g_tls_offset = -8;
/* gosight's pid namespace (device and inode of /proc/self/ns/pid): target pids are
 * the ones gosight sees. */
volatile const u64 pidns_dev = 0;
volatile const u64 pidns_ino = 0;

struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, 65536);
	__type(key, u64); /* socket cookie */
	__type(value, u32); /* a socket fd, as the kernel wants it */
} sockets SEC(".maps");

/* Socket inodes of targets' connections that existed before gosight attached, by
 * inode, to their target's pid; filled by the sidecar before it runs the iterator. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, u64);
	__type(value, u32);
} existing_inodes SEC(".maps");

struct bpf_iter_meta;

struct bpf_iter__tcp {
	struct bpf_iter_meta *meta;
	struct sock_common *sk_common;
} __attribute__((preserve_access_index));

static __always_inline u64 current_goroutine(void)
{
	return current_goroutine_at(g_tls_offset);
}

static __always_inline void reset_state(struct sock_state *st, u32 pid)
{
	__builtin_memset(st, 0, sizeof(*st));
	st->pid = pid;
	st->phase = PHASE_TAGGED;
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(tag_connect, struct sock *sk, int oldstate, int newstate)
{
	if (oldstate != TCP_CLOSE || newstate != TCP_SYN_SENT)
		return 0;
	if (BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP)
		return 0;
	struct bpf_pidns_info ns = {};
	if (bpf_get_ns_current_pid_tgid(pidns_dev, pidns_ino, &ns, sizeof(ns)))
		return 0;
	u32 pid = ns.tgid;
	if (!bpf_map_lookup_elem(&targets, &pid))
		return 0;
	struct sock_state *st = bpf_sk_storage_get(&sock_state, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (st)
		reset_state(st, pid);
	return 0;
}

SEC("iter/tcp")
int enrol_existing(struct bpf_iter__tcp *ctx)
{
	struct sock_common *skc = ctx->sk_common;
	if (!skc)
		return 0;
	struct tcp_sock *tp = bpf_skc_to_tcp_sock(skc);
	if (!tp)
		return 0;
	struct sock *sk = (struct sock *)tp;
	u64 ino = BPF_CORE_READ(sk, sk_socket, file, f_inode, i_ino);
	if (!ino)
		return 0;
	u32 *owner = bpf_map_lookup_elem(&existing_inodes, &ino);
	if (!owner)
		return 0;
	u32 pid = *owner;
	bpf_map_delete_elem(&existing_inodes, &ino);
	/* Only an idle connection joins: nothing unread, nothing unacknowledged. A busy
	 * one could have bytes queued that the socket map would reorder. */
	if (tp->rcv_nxt != tp->copied_seq || tp->snd_una != tp->write_seq) {
		count_for(pid, C_EXISTING_BUSY);
		return 0;
	}
	struct sock_state *st = bpf_sk_storage_get(&sock_state, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!st)
		return 0;
	if (st->phase == PHASE_ENROLLED || st->phase == PHASE_KEPT)
		return 0; /* already ours */
	reset_state(st, pid);
	st->existing = 1;
	u64 cookie = bpf_get_socket_cookie(sk);
	long rc = bpf_map_update_elem(&sockets, &cookie, sk, BPF_NOEXIST);
	if (rc == 0) {
		st->phase = PHASE_ENROLLED;
		count_for(pid, C_ENROLLED);
		count_for(pid, C_EXISTING_ENROLLED);
		/* The RTT callback releases it if it turns out not to be ours. Kernels
		 * before 6.14 refuse this option: such a connection then stays enrolled,
		 * passed through untouched. */
		int cb = BPF_SOCK_OPS_RTT_CB_FLAG;
		if (bpf_setsockopt(tp, SOL_TCP, TCP_BPF_SOCK_OPS_CB_FLAGS, &cb, sizeof(cb)) == 0)
			st->release_cb = 1;
	} else if (rc == -16 /* EBUSY: another program's socket map */) {
		st->phase = PHASE_HELD;
		count_for(pid, C_HELD);
	} else {
		st->phase = 0;
		count_for(pid, C_ADD_FAILED);
	}
	return 0;
}

static __always_inline int on_established(struct bpf_sock_ops *skops)
{
	struct bpf_sock *sk = skops->sk;
	if (!sk)
		return 1;
	struct sock_state *st = bpf_sk_storage_get(&sock_state, sk, 0, 0);
	if (!st || !st->pid || st->phase != PHASE_TAGGED)
		return 1;
	u32 pid = st->pid;
	if (skops->data_segs_out > 0)
		count_for(pid, C_FASTOPEN); /* data went with the SYN, before us */
	u64 cookie = bpf_get_socket_cookie(skops);
	long rc = bpf_sock_hash_update(skops, &sockets, &cookie, BPF_NOEXIST);
	if (rc == 0) {
		st->phase = PHASE_ENROLLED;
		count_for(pid, C_ENROLLED);
		bpf_sock_ops_cb_flags_set(skops, skops->bpf_sock_ops_cb_flags | BPF_SOCK_OPS_RTT_CB_FLAG);
	} else if (rc == -16 /* EBUSY */) {
		st->phase = PHASE_HELD;
		count_for(pid, C_HELD);
	} else {
		st->phase = 0;
		count_for(pid, C_ADD_FAILED);
	}
	return 1;
}

/* A socket marked for release leaves the map once its psock holds nothing unread. */
static __always_inline int on_rtt(struct bpf_sock_ops *skops)
{
	struct bpf_sock *sk = skops->sk;
	if (!sk)
		return 1;
	struct sock_state *st = bpf_sk_storage_get(&sock_state, sk, 0, 0);
	if (!st || st->phase != PHASE_RELEASING) {
		if (!st || st->phase == PHASE_KEPT || st->phase == PHASE_RELEASED)
			bpf_sock_ops_cb_flags_set(skops, skops->bpf_sock_ops_cb_flags & ~BPF_SOCK_OPS_RTT_CB_FLAG);
		return 1;
	}
	struct tcp_sock *tp = bpf_skc_to_tcp_sock(sk);
	if (!tp || !psock_queue_empty((struct sock *)tp))
		return 1;
	u64 cookie = bpf_get_socket_cookie(skops);
	if (bpf_map_delete_elem(&sockets, &cookie) == 0) {
		st->phase = PHASE_RELEASED;
		count_for(st->pid, C_RELEASED);
		bpf_sock_ops_cb_flags_set(skops, skops->bpf_sock_ops_cb_flags & ~BPF_SOCK_OPS_RTT_CB_FLAG);
	}
	return 1;
}

SEC("sockops")
int enrol_sockets(struct bpf_sock_ops *skops)
{
	if (skops->family != 2 /* AF_INET */ && skops->family != 10 /* AF_INET6 */)
		return 1;
	switch (skops->op) {
	case BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB:
		return on_established(skops);
	case BPF_SOCK_OPS_RTT_CB:
		return on_rtt(skops);
	}
	return 1;
}

SEC("sk_skb/stream_verdict")
int pass_stream(struct __sk_buff *skb)
{
	return SK_PASS;
}

/* The first message on an enrolled socket decides whether it stays. (Global
 * functions: each is verified once, on its own, which keeps the verifier's work
 * small.) */
__attribute__((noinline)) int first_message(struct sk_msg_md *msg, struct sock_state *st, u32 tgid, u64 g)
{
	if (!st)
		return 0;
	struct target *t = bpf_map_lookup_elem(&targets, &st->pid);
	u32 flags = t ? t->flags : 0;
	int preface = starts_with_h2_preface(msg);
	if (preface && (flags & TARGET_GRPC_CLIENT)) {
		st->kind = KIND_H2;
		st->phase = PHASE_KEPT;
		st->skip = H2_PREFACE_LEN;
		count_for(st->pid, C_KEPT_H2);
		return 0;
	}
	/* "PRI * HTTP/2.0" would pass for a request line: never treated as one. */
	struct proc_key key = { .tgid = tgid, .ptr = g };
	if (!preface && starts_with_request_line(msg) &&
	    ((flags & TARGET_HTTP_CLIENT) || bpf_map_lookup_elem(&pending_headers, &key))) {
		st->kind = KIND_HTTP1;
		st->phase = PHASE_KEPT;
		count_for(st->pid, C_KEPT_HTTP1);
		return 0;
	}
	if (st->existing && (flags & TARGET_GRPC_CLIENT)) {
		/* Joined mid-stream: followed once a message shows the frame boundaries
		 * (h2.h); until then nothing is inserted. */
		st->kind = KIND_H2;
		st->phase = PHASE_KEPT;
		st->unaligned = 1;
		count_for(st->pid, C_KEPT_H2);
		if (!h2_whole_frames(msg))
			count_for(st->pid, C_H2_UNALIGNED);
		return 0;
	}
	if ((flags & TARGET_KAFKA_PRODUCER) && !preface && kafka_request_start(msg)) {
		/* Requests follow one another, each with its size: a connection from
		 * before attach is joined at its next request just as well. */
		st->kind = KIND_KAFKA;
		st->phase = PHASE_KEPT;
		count_for(st->pid, C_KEPT_KAFKA);
		return 0;
	}
	if (msg->size >= 3 && bpf_msg_pull_data(msg, 0, 3, 0) == 0) {
		u8 *d = msg->data, *end = msg->data_end;
		if (d + 3 <= end && d[0] == 0x16 && d[1] == 0x03)
			count_for(st->pid, C_TLS);
	}
	/* Not ours to touch: leave the map at the next ACK (RTT callback). An existing
	 * connection whose callbacks could not be enabled stays, passed through
	 * untouched. */
	st->phase = (st->existing && !st->release_cb) ? PHASE_KEPT : PHASE_RELEASING;
	st->kind = 0;
	return 0;
}

__attribute__((noinline)) int h2_frames(struct sk_msg_md *msg, struct sock_state *st, u32 tgid, u64 g)
{
	if (st)
		h2_message(msg, st, g, tgid);
	return 0;
}

/* The request's own traceparent lines in the header block after `pos`: 1 when
 * one valid line is there (kept, nothing to insert); else malformed ones are
 * taken out and 0 is returned (insert ours). */
__attribute__((noinline)) int judge_own(struct sk_msg_md *msg, u32 pos, u32 pid)
{
	struct scan s = {};
	struct tp_lines t = {};
	if (find_traceparent_lines(msg, pos, &s, &t))
		return 0;
	if (t.n == 1 && t.valid && !t.more) {
		count_for(pid, C_KEPT_VALID);
		return 1;
	}
	if (t.n > 0 && !t.more) {
		if (t.n == 2 && t.len[1] <= SCAN_MAX)
			bpf_msg_pop_data(msg, t.start[1], t.len[1], 0);
		if (t.len[0] <= SCAN_MAX)
			bpf_msg_pop_data(msg, t.start[0], t.len[0], 0);
		count_for(pid, C_REPLACED);
	}
	return 0;
}

__attribute__((noinline)) int http1_message(struct sk_msg_md *msg, struct sock_state *st, u32 tgid, u64 g)
{
	if (!st || !g)
		return 0;
	struct proc_key key = { .tgid = tgid, .ptr = g };
	struct pending_header *p = bpf_map_lookup_elem(&pending_headers, &key);
	if (!p)
		return 0;
	u32 pid = st->pid;
	if (bpf_ktime_get_ns() - p->created_ns > pending_ttl_ns) {
		count_for(pid, C_STALE);
		bpf_map_delete_elem(&pending_headers, &key);
		return 0;
	}
	if (!p->awaiting_crlf && !starts_with_request_line(msg)) {
		/* Not a plaintext request: never guess. */
		count_for(pid, C_NOT_REQUEST);
		bpf_map_delete_elem(&pending_headers, &key);
		return 0;
	}
	u32 pos = end_of_first_line(msg);
	if (!pos) {
		if (msg->size <= SCAN_MAX) {
			/* The whole message is request line: it continues in the next one. */
			p->awaiting_crlf = 1;
			return 0;
		}
		count_for(pid, C_INSERT_FAILED);
		bpf_map_delete_elem(&pending_headers, &key);
		return 0;
	}
	if (p->judge && !p->awaiting_crlf && judge_own(msg, pos, pid)) {
		bpf_map_delete_elem(&pending_headers, &key);
		return 0;
	}
	/* judge_own may have changed the message: look the pending line up again. */
	p = bpf_map_lookup_elem(&pending_headers, &key);
	if (!p)
		return 0;
	if (insert_at(msg, pos, p) == 0)
		count_for(pid, C_INSERTED);
	else
		count_for(pid, C_INSERT_FAILED);
	bpf_map_delete_elem(&pending_headers, &key);
	return 0;
}

SEC("sk_msg")
int insert_traceparent(struct sk_msg_md *msg)
{
	struct bpf_sock *sk = msg->sk;
	if (!sk)
		return SK_PASS;
	struct sock_state *st = bpf_sk_storage_get(&sock_state, sk, 0, 0);
	if (!st || !st->pid)
		return SK_PASS;
	u32 tgid = bpf_get_current_pid_tgid() >> 32;
	u64 g = current_goroutine();
	if (st->phase == PHASE_ENROLLED)
		first_message(msg, st, tgid, g);
	if (st->phase != PHASE_KEPT)
		return SK_PASS;
	if (st->kind == KIND_H2)
		h2_frames(msg, st, tgid, g);
	else if (st->kind == KIND_HTTP1)
		http1_message(msg, st, tgid, g);
	else if (st->kind == KIND_KAFKA)
		kafka_frames(msg, st, tgid);
	return SK_PASS;
}
