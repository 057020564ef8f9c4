/* gosight — maps shared by several BPF objects (the per-target net/http server and
 * client probes, and the in-kernel HTTP/1 header insertion). The loader pins each
 * of them by name in gosight's own bpffs directory (see SHARED_MAPS in lib.rs), so
 * every object that declares them gets the same map; without a bpffs each object
 * keeps a private copy and only cross-probe context is lost. Keys carry the process
 * (tgid) because goroutine and context pointers are only unique within one process.
 */
#pragma once

#include "go_types.h"
#include "traceparent.h"

struct proc_key {
	u32 tgid;
	u32 _pad;
	u64 ptr; /* a goroutine (g) or a context.Context data pointer */
};

/* The span a server handler is running under: its context, for children. */
struct active_span {
	struct span_ctx sc;
};

/* Server span currently being served, by goroutine (set at handler entry, removed
 * at its return): parents client calls made on the handler's own goroutine. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct proc_key);
	__type(value, struct active_span);
} spans_by_goroutine SEC(".maps");

/* The same server spans by the request's context (data pointer of req.ctx):
 * parents client calls made from goroutines that were handed that context. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct proc_key);
	__type(value, struct active_span);
} spans_by_context SEC(".maps");

#define TRACEPARENT_LEN 55
/* "traceparent: " + value + CRLF */
#define TP_HEADER_LEN (13 + TRACEPARENT_LEN + 2)

/* A header waiting to be inserted into the next HTTP/1 request the goroutine
 * (the transport's per-connection write loop) sends. */
struct pending_header {
	u64 created_ns;
	u8 awaiting_crlf; /* the request line spans messages: insert after its CRLF */
	u8 judge;         /* the request carries its own traceparent (or its header map
			   * could not be read): keep a valid one, replace a malformed one */
	u8 _pad[6];
	char line[TP_HEADER_LEN];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct proc_key);
	__type(value, struct pending_header);
} pending_headers SEC(".maps");

/* ---- HTTP/2 (gRPC) ---- */

/* A literal header field without indexing, new name (RFC 7541 6.2.2):
 * 0x00, len 11, "traceparent", len 55, value. Never indexed, so both peers'
 * HPACK dynamic tables stay in step. */
#define H2_TP_FIELD_LEN (1 + 1 + 11 + 1 + TRACEPARENT_LEN)

struct h2_field {
	char bytes[H2_TP_FIELD_LEN];
};

/* A field waiting for the HEADERS frame of one stream, which the connection's
 * writer goroutine (grpc's loopy writer) is about to send. */
struct h2_key {
	u32 tgid;
	u32 stream_id;
	u64 g;
};

struct h2_pending {
	u64 created_ns;
	struct h2_field field;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct h2_key);
	__type(value, struct h2_pending);
} pending_h2 SEC(".maps");

/* ---- Kafka (record headers) ---- */

/* Bytes of a record's key and of its value that its fingerprint hashes. */
#define KAFKA_FP_BYTES 16

/* A produced record, as both its producer probe (from the message's key and value
 * in the app's memory) and the sk_msg program (from the record on the wire) can
 * compute it: the process, the key's and the value's lengths (-1: null) and a hash
 * of those lengths and of the first KAFKA_FP_BYTES bytes of each (kafka_context.h). */
struct kafka_fp {
	u32 tgid;
	s32 key_len;
	s32 value_len;
	u32 _pad;
	u64 hash;
};

/* The producer span's context, waiting for its record to be sent. `shared`: how
 * many earlier offers of the same fingerprint, still waiting, this one replaced
 * (identical messages in flight at once; counted when the record goes out). */
struct kafka_pending {
	u64 created_ns;
	struct span_ctx sc;
	u32 shared;
	u32 _pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct kafka_fp);
	__type(value, struct kafka_pending);
} pending_kafka SEC(".maps");
