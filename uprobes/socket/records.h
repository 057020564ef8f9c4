/* gosight — the socket probe's kernel↔user records: the connection record (the
 * ring-buffer record and the `conns` map value alike) and the indices of the
 * per-CPU `counters`. The Rust side (`gosight_uprobes::records`) is generated from
 * this file by build.rs.
 */
#pragma once

#include <linux/types.h>

enum conn_kind { KIND_OPEN = 1, KIND_CLOSE = 2 };
enum conn_role { ROLE_CLIENT = 1, ROLE_SERVER = 2 };

/* One connection end. */
struct conn_record {
	__u64 id;             /* unique per probe instance, pairs OPEN and CLOSE */
	__u64 open_ns;        /* client: connect(); server: handshake completed */
	__u64 close_ns;       /* the transition to TCP_CLOSE (or the release); 0 in OPEN */
	__u64 bytes_sent;
	__u64 bytes_received;
	__u8 local_ip[16];    /* IPv4: first 4 bytes */
	__u8 remote_ip[16];
	__u32 pid;            /* tgid; 0 = not known (a server connection never used) */
	__u32 srtt_us;        /* smoothed RTT in microseconds (tcp_info's tcpi_rtt); 0 in OPEN */
	__u16 local_port;     /* host order */
	__u16 remote_port;    /* host order */
	__u16 family;         /* AF_INET / AF_INET6 */
	__u8 kind;            /* KIND_OPEN / KIND_CLOSE */
	__u8 role;            /* ROLE_CLIENT / ROLE_SERVER */
	__u8 failed;          /* connect failed (SYN_SENT -> CLOSE) */
	__u8 have_tuple;      /* addresses read (map value only) */
	__u8 _pad[2];
	char comm[16];
	__u32 _pad2;
};

/* Per-CPU counters (the `counters` map), by index. */
enum socket_counter {
	C_TRACKED = 0, /* connection ends tracked (entry inserted) */
	C_LOST_OPEN = 1, /* OPEN records the full ring buffer refused */
	C_LOST_CLOSE = 2, /* CLOSE records the full ring buffer refused */
	C_UNTRACKED = 3, /* connection ends not tracked: `conns` full */
	C_FAILED_CONNECT = 4, /* connects that failed (their CLOSE record says so) */
	C_CLOSED = 5, /* CLOSE records submitted */
	C_OTHER_NETNS = 6, /* connection ends of other network namespaces, ignored */
	C_COUNT = 7,
};
