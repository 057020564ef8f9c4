/* gosight — TCP connections of the pod, from kernel tracepoints (no uprobes).
 *
 * One record per connection end, scoped to one network namespace (the pod's):
 * process, addresses, role, bytes, open/close times, smoothed RTT. Every hook is a
 * BTF-typed raw tracepoint (tp_btf): tracepoints are the kernel's stable hooks,
 * and tp_btf needs no tracefs. (fentry/fexit were the first plan; they need BPF
 * trampolines, which some kernels refuse — the development machine answers EPERM
 * to any fentry load — and they bind to internal function signatures.)
 *
 *   sock:inet_sock_set_state
 *     CLOSE -> SYN_SENT        a client connect(), in its process context: pid,
 *                              comm and open time are taken here (the local port
 *                              is not chosen yet).
 *     SYN_SENT -> ESTABLISHED  the client's tuple is complete: OPEN record.
 *     SYN_RECV -> ESTABLISHED  a server-side connection (softirq: the process is
 *                              not known yet, see below).
 *     SYN_SENT -> CLOSE        a failed connect: CLOSE record, flagged.
 *     any -> CLOSE             stamps the close time.
 *   sock:sock_send_length / sock:sock_recv_length  (socket layer, process context
 *     of send/write/sendmsg/sendfile and recv/read/recvmsg, io_uring included)
 *                              bytes the app wrote / read (return value > 0;
 *                              MSG_PEEK and MSG_ERRQUEUE reads are not counted).
 *                              The first one on a server-side connection names its
 *                              process (pid, comm) and emits its OPEN record.
 *   tcp:tcp_destroy_sock       the socket is released: CLOSE record, entry deleted.
 *                              Ending here rather than at TCP_CLOSE counts bytes an
 *                              app still reads after the state reached CLOSE (a
 *                              half-closed client reading the rest of a response)
 *                              and no entry can leak.
 *
 * Connections are keyed by the sock pointer in `conns` (a plain hash: nothing is
 * ever evicted silently; a full map is counted as untracked). Records go through
 * `events`, a ring buffer; a full ring buffer is counted (OPEN and CLOSE apart), so
 * records received + counted loss is exact.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_tracing.h>
#include "ring_batch.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

typedef __u8 u8;
typedef __u16 u16;
typedef __u32 u32;
typedef __u64 u64;
typedef __s32 s32;

#include "records.h"

/* Inode of the network namespace whose connections are recorded (the pod's: the
 * inode of /proc/self/ns/net of the sidecar), set at load time. */
volatile const u32 netns_ino = 0;

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6
#define TCP_ESTABLISHED 1
#define TCP_SYN_SENT 2
#define TCP_SYN_RECV 3
#define TCP_CLOSE 7
#define MSG_PEEK 0x2
#define MSG_ERRQUEUE 0x2000

/* Partial kernel structs, relocated by CO-RE against the running kernel's BTF. */
struct ns_common {
	unsigned int inum;
} __attribute__((preserve_access_index));

struct net {
	struct ns_common ns;
} __attribute__((preserve_access_index));

typedef struct {
	struct net *net;
} __attribute__((preserve_access_index)) possible_net_t;

struct in6_bytes {
	u8 b[16];
};

struct sock_common {
	__be32 skc_daddr;
	__be32 skc_rcv_saddr;
	__be16 skc_dport;
	u16 skc_num;
	unsigned short skc_family;
	possible_net_t skc_net;
	struct in6_bytes skc_v6_daddr;
	struct in6_bytes skc_v6_rcv_saddr;
} __attribute__((preserve_access_index));

struct sock {
	struct sock_common __sk_common;
	u16 sk_protocol;
} __attribute__((preserve_access_index));

struct tcp_sock {
	u32 srtt_us; /* smoothed RTT << 3, in microseconds */
} __attribute__((preserve_access_index));


struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, u64); /* struct sock * */
	__type(value, struct conn_record);
} conns SEC(".maps");

RING_WITH_BATCHED_WAKEUP(events, 1 << 20); /* size: SocketLimits sets it */


struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, C_COUNT);
	__type(key, u32);
	__type(value, u64);
} counters SEC(".maps");

/* Next connection id (shared by all CPUs: one atomic add per connection). */
u64 next_id = 0;

static __always_inline void count(u32 idx)
{
	u64 *n = bpf_map_lookup_elem(&counters, &idx);
	if (n)
		*n += 1; /* per-CPU slot: no other writer */
}

static __always_inline int in_scope(struct sock *sk)
{
	u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
	if (family != AF_INET && family != AF_INET6)
		return 0;
	if (BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum) != netns_ino) {
		count(C_OTHER_NETNS);
		return 0;
	}
	return 1;
}

static __always_inline void read_tuple(struct sock *sk, struct conn_record *c)
{
	u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
	c->family = family;
	c->local_port = BPF_CORE_READ(sk, __sk_common.skc_num);
	c->remote_port = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	if (family == AF_INET) {
		__be32 l = BPF_CORE_READ(sk, __sk_common.skc_rcv_saddr);
		__be32 r = BPF_CORE_READ(sk, __sk_common.skc_daddr);
		__builtin_memcpy(c->local_ip, &l, 4);
		__builtin_memcpy(c->remote_ip, &r, 4);
	} else {
		BPF_CORE_READ_INTO((struct in6_bytes *)c->local_ip, sk, __sk_common.skc_v6_rcv_saddr);
		BPF_CORE_READ_INTO((struct in6_bytes *)c->remote_ip, sk, __sk_common.skc_v6_daddr);
	}
	c->have_tuple = 1;
}

static __always_inline void emit_open(struct conn_record *c)
{
	struct conn_record *r = bpf_ringbuf_reserve(&events, sizeof(*r), 0);
	if (!r) {
		count(C_LOST_OPEN);
		return;
	}
	__builtin_memcpy(r, c, sizeof(*c));
	r->kind = KIND_OPEN;
	r->bytes_sent = 0;
	r->bytes_received = 0;
	ring_submit(&events, r);
}

/* Emits the CLOSE record of a tracked connection and forgets it. */
static __always_inline void finish(struct sock *sk, u64 key, struct conn_record *c, u8 failed)
{
	if (!c->have_tuple)
		read_tuple(sk, c); /* a failed connect: the local port may be gone (0) */
	struct conn_record *r = bpf_ringbuf_reserve(&events, sizeof(*r), 0);
	if (r) {
		__builtin_memcpy(r, c, sizeof(*c));
		r->kind = KIND_CLOSE;
		r->failed = failed;
		if (!r->close_ns)
			r->close_ns = bpf_ktime_get_ns();
		r->srtt_us = BPF_CORE_READ((struct tcp_sock *)sk, srtt_us) >> 3;
		ring_submit(&events, r);
		count(C_CLOSED);
	} else {
		count(C_LOST_CLOSE);
	}
	if (failed)
		count(C_FAILED_CONNECT);
	bpf_map_delete_elem(&conns, &key);
}

/* Inserts a new entry; 0 when the map refused it (counted). */
static __always_inline int insert(u64 key, struct conn_record *c)
{
	c->id = __sync_fetch_and_add(&next_id, 1) + 1;
	c->open_ns = bpf_ktime_get_ns();
	if (bpf_map_update_elem(&conns, &key, c, BPF_NOEXIST)) {
		count(C_UNTRACKED);
		return 0;
	}
	count(C_TRACKED);
	return 1;
}

/* CLOSE -> SYN_SENT, in connect()'s process context. */
static __always_inline void client_connects(struct sock *sk)
{
	u64 key = (u64)sk;
	/* The same socket connecting again (after connect(AF_UNSPEC) disconnected
	 * it): finish the previous connection first. */
	struct conn_record *old = bpf_map_lookup_elem(&conns, &key);
	if (old)
		finish(sk, key, old, 0);
	if (!in_scope(sk))
		return;
	struct conn_record c = {};
	c.role = ROLE_CLIENT;
	c.pid = bpf_get_current_pid_tgid() >> 32;
	bpf_get_current_comm(c.comm, sizeof(c.comm));
	insert(key, &c);
}

/* SYN_RECV -> ESTABLISHED, in softirq: the process is named at the first I/O. */
static __always_inline void server_established(struct sock *sk)
{
	if (!in_scope(sk))
		return;
	struct conn_record c = {};
	c.role = ROLE_SERVER;
	read_tuple(sk, &c);
	insert((u64)sk, &c);
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(on_state, struct sock *sk, int oldstate, int newstate)
{
	if (newstate == TCP_SYN_SENT) {
		if (oldstate == TCP_CLOSE)
			client_connects(sk);
		return 0;
	}
	if (newstate == TCP_ESTABLISHED) {
		if (oldstate == TCP_SYN_RECV) {
			server_established(sk);
		} else if (oldstate == TCP_SYN_SENT) {
			u64 key = (u64)sk;
			struct conn_record *c = bpf_map_lookup_elem(&conns, &key);
			if (c) {
				read_tuple(sk, c);
				emit_open(c);
			}
		}
		return 0;
	}
	if (newstate != TCP_CLOSE)
		return 0;
	u64 key = (u64)sk;
	struct conn_record *c = bpf_map_lookup_elem(&conns, &key);
	if (!c)
		return 0;
	c->close_ns = bpf_ktime_get_ns();
	if (oldstate == TCP_SYN_SENT)
		finish(sk, key, c, 1);
	return 0;
}

/* A send or receive call on a socket, in the calling process's context: `bytes`
 * (its result, when counted) is added, and a server-side connection's process is
 * the first one that calls (even a read that returns EAGAIN or EOF names it). */
static __always_inline void socket_call(struct sock *sk, int bytes, int sent)
{
	if (sk->sk_protocol != IPPROTO_TCP)
		return;
	u64 key = (u64)sk;
	struct conn_record *c = bpf_map_lookup_elem(&conns, &key);
	if (!c)
		return;
	if (bytes > 0) {
		if (sent)
			__sync_fetch_and_add(&c->bytes_sent, (u64)bytes);
		else
			__sync_fetch_and_add(&c->bytes_received, (u64)bytes);
	}
	if (c->pid == 0) {
		u32 pid = bpf_get_current_pid_tgid() >> 32;
		if (pid && __sync_val_compare_and_swap(&c->pid, 0, pid) == 0) {
			bpf_get_current_comm(c->comm, sizeof(c->comm));
			emit_open(c);
		}
	}
}

SEC("tp_btf/sock_send_length")
int BPF_PROG(on_send, struct sock *sk, int ret, int flags)
{
	socket_call(sk, ret, 1);
	return 0;
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(on_recv, struct sock *sk, int ret, int flags)
{
	/* A peek consumes nothing; an error-queue read returns no stream data. */
	socket_call(sk, (flags & (MSG_PEEK | MSG_ERRQUEUE)) ? 0 : ret, 0);
	return 0;
}

SEC("tp_btf/tcp_destroy_sock")
int BPF_PROG(on_destroy, struct sock *sk)
{
	u64 key = (u64)sk;
	struct conn_record *c = bpf_map_lookup_elem(&conns, &key);
	if (c)
		finish(sk, key, c, 0);
	return 0;
}
