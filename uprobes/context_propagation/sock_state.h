/* gosight — which sockets the propagation programs may touch, and what they know
 * about each (state kept in socket-local storage, so it dies with the socket).
 *
 * Ownership: a socket belongs to a target when the target's process connect()ed it.
 * The tp_btf program on sock:inet_sock_set_state sees CLOSE -> SYN_SENT in the
 * connecting process's context and marks the socket with the target's pid (in
 * gosight's pid namespace). sockops, which sees ACTIVE_ESTABLISHED in softirq on
 * whatever task runs then, only enrols marked sockets. Sockets of any other process
 * never get storage here and are never put in the socket map.
 *
 * The counters it keeps are declared in `records.h` (shared with the Rust side).
 */
#pragma once

#include "go_types.h"
#include <bpf/bpf_core_read.h>

#define TCP_ESTABLISHED 1
#define TCP_SYN_SENT 2
#define TCP_CLOSE 7
#define IPPROTO_TCP 6

/* Phases of an owned socket. */
#define PHASE_TAGGED 1    /* connect() by a target: enrol when established */
#define PHASE_ENROLLED 2  /* in the map, first message not seen yet */
#define PHASE_KEPT 3      /* carries net/http or gRPC: stays */
#define PHASE_RELEASING 4 /* something else: leaves the map at the next ACK */
#define PHASE_RELEASED 5
#define PHASE_HELD 6      /* another program's socket map holds it */

#define KIND_HTTP1 1
#define KIND_H2 2
#define KIND_KAFKA 3

struct sock_state {
	u32 pid;          /* owning target, in gosight's pid namespace */
	u8 phase;
	u8 kind;
	u8 existing;      /* enrolled by the iterator: opened before gosight attached */
	u8 lost;          /* h2/Kafka: frame/request boundaries lost, nothing more is inserted */
	u32 skip;         /* h2: bytes of the current frame still to come; Kafka: of the request */
	u8 partial_len;   /* h2/Kafka: bytes of a frame header/request size seen at the end of the last message */
	u8 unaligned;     /* h2 (existing): frame position not learned yet */
	u8 release_cb;    /* existing: the RTT callback is on, so it can be released */
	u8 _pad;
	u8 partial[8];
};

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct sock_state);
} sock_state SEC(".maps");

/* Target flags. */
#define TARGET_HTTP_CLIENT 1 /* net/http client probes attached */
#define TARGET_GRPC_CLIENT 2 /* gRPC client probes attached */
#define TARGET_SELF 4        /* gosight itself, for the start-up self-check */
#define TARGET_KAFKA_PRODUCER 8 /* Kafka producer probes attached */

struct target {
	u32 flags;
	u32 _pad;
};

/* Targets by pid in gosight's pid namespace; written by the sidecar. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, u32);
	__type(value, struct target);
} targets SEC(".maps");

#include "records.h"

/* Per target, created by the sidecar at registration (never in the kernel). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, u32);
	__type(value, struct target_counts);
} target_counts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, N_COUNTERS);
	__type(key, u32);
	__type(value, u64);
} counters SEC(".maps");

static __always_inline void count_n_for(u32 pid, u32 idx, u64 n)
{
	if (idx >= N_COUNTERS)
		return;
	u64 *v = bpf_map_lookup_elem(&counters, &idx);
	if (v)
		*v += n;
	struct target_counts *tc = bpf_map_lookup_elem(&target_counts, &pid);
	if (tc)
		__sync_fetch_and_add(&tc->c[idx & (N_SLOTS - 1)], n);
}

static __always_inline void count_for(u32 pid, u32 idx)
{
	count_n_for(pid, idx, 1);
}

/* Partial kernel structs, relocated by CO-RE. */
struct list_head {
	struct list_head *next;
} __attribute__((preserve_access_index));

struct sk_buff_head {
	u32 qlen;
} __attribute__((preserve_access_index));

struct sk_psock {
	struct list_head ingress_msg;
	struct sk_buff_head ingress_skb;
} __attribute__((preserve_access_index));

struct inode {
	unsigned long i_ino;
} __attribute__((preserve_access_index));

struct file {
	struct inode *f_inode;
} __attribute__((preserve_access_index));

struct socket {
	struct file *file;
} __attribute__((preserve_access_index));

struct sock {
	u16 sk_protocol;
	struct socket *sk_socket;
	void *sk_user_data;
} __attribute__((preserve_access_index));

struct tcp_sock {
	u32 rcv_nxt;
	u32 copied_seq;
	u32 snd_una;
	u32 write_seq;
} __attribute__((preserve_access_index));

struct sock_common;

/* Whether a socket's psock holds no received data not yet read (the verdict
 * program queues arrivals there): only then may it leave the map, which would
 * otherwise drop what is queued. */
static __always_inline int psock_queue_empty(struct sock *sk)
{
	u64 ud = (u64)BPF_CORE_READ(sk, sk_user_data);
	/* The low bits are flags (SK_USER_DATA_NOCOPY, _BPF, _PSOCK). */
	struct sk_psock *psock = (struct sk_psock *)(ud & ~7ULL);
	if (!psock)
		return 1;
	struct list_head *head = &psock->ingress_msg;
	struct list_head *next = BPF_CORE_READ(psock, ingress_msg.next);
	u32 qlen = BPF_CORE_READ(psock, ingress_skb.qlen);
	return next == head && qlen == 0;
}
