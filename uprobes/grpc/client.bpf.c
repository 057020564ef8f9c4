/* gosight — gRPC client probe (google.golang.org/grpc), unary and streaming.
 *
 *  - (*clientStream).newAttemptLocked entry (caller's goroutine, before the
 *    headers are built): the CLIENT span starts; its parent is the server span the
 *    goroutine serves, or the one whose context the RPC's context derives from.
 *  - (*csAttempt).finish entry: the RPC ends; its error gives the status code.
 * Both unary (Invoke) and streaming (NewStream) RPCs go through clientStream, so
 * these two entry probes cover both: 2 uprobe hits per RPC. Calls are keyed by the
 * *clientStream (finish may run on another goroutine); a retry's second attempt
 * keeps the first start.
 *
 * Outgoing context (when propagation is on), handed to the in-kernel inserter
 * (context_propagation) without touching the app's memory:
 *  - newAttemptLocked prepares the HPACK `traceparent` field for the calling
 *    goroutine;
 *  - (*http2Client).createHeaderFields RET (same goroutine) ties it to the header
 *    list it returns;
 *  - the connection's writer goroutine (grpc's loopy writer) starting the stream —
 *    (*loopyWriter).originateStream (grpc <= 1.82.0) or clientHeaderHandler
 *    (>= 1.82.1), both client-only, so servers pay nothing — sees that list with
 *    its stream id, skips it when the app already sends a traceparent, and leaves
 *    the field in `pending_h2` for that (goroutine, stream).
 * Cost with propagation: 4 uprobe hits per RPC.
 */
#include "go_abi.h"
#include "go_types.h"
#include "probe_stats.h"
#include "go_net.h"
#include "status.h"
#include "traceparent.h"
#include "span_start.h"
#include "records.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

volatile const u64 off_cs_callhdr = OFF_ABSENT;     /* grpc.clientStream.callHdr */
volatile const u64 off_cs_ctx = OFF_ABSENT;         /* grpc.clientStream.ctx */
volatile const u64 off_callhdr_method = OFF_ABSENT; /* transport.CallHdr.Method */
volatile const u64 off_attempt_cs = OFF_ABSENT;     /* grpc.csAttempt.cs */
volatile const u64 off_attempt_transport = OFF_ABSENT; /* grpc.csAttempt.t / transport (ClientTransport) */
volatile const u64 off_http2client_remote = OFF_ABSENT; /* transport.http2Client.remoteAddr */
volatile const u64 off_outstream_id = OFF_ABSENT;        /* transport.outStream.id */
volatile const u64 off_headerframe_hf = OFF_ABSENT;      /* transport.headerFrame.hf */
volatile const u64 off_clientheaders_id = OFF_ABSENT;    /* transport.clientHeaders.streamID */
volatile const u64 off_clientheaders_hf = OFF_ABSENT;    /* transport.clientHeaders.hf */
/* Whether outgoing RPCs get a traceparent (the loader's setting). */
volatile const u64 propagate = 1;

struct call {
	struct span_head head;
};

CALLS_BY(u64, struct call); /* by *clientStream */

SPAN_EVENTS(256 * 1024);

/* The field for the RPC a goroutine is starting, until its header list exists. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, u64); /* goroutine */
	__type(value, struct h2_field);
} field_by_goroutine SEC(".maps");

/* The field by header list (the []hpack.HeaderField array), until it is written. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, u64); /* header list array */
	__type(value, struct h2_field);
} field_by_headers SEC(".maps");

#define HF_SIZE 40    /* hpack.HeaderField: Name string, Value string, Sensitive bool */
#define HF_SCAN 24    /* header fields checked for an existing traceparent */

SEC("uprobe")
int new_attempt_entry(struct go_regs *regs)
{
	count_hit(HIT_ENTRY);
	u64 cs = GO_ARG1(regs);
	if (bpf_map_lookup_elem(&calls, &cs))
		return 0; /* a retry, or the entry again after stack growth */
	struct call c = {};
	u64 start_ns = bpf_ktime_get_ns();
	u64 ctx = off_cs_ctx == OFF_ABSENT ? 0 : read_u64(cs + off_cs_ctx + 8);
	struct active_span *as = find_parent_span(bpf_get_current_pid_tgid() >> 32, GO_G(regs), ctx);
	span_head_start(&c.head, GO_G(regs), start_ns, as ? &as->sc : 0);
	bpf_map_update_elem(&calls, &cs, &c, BPF_ANY);

	if (propagate) {
		struct h2_field f = {};
		f.bytes[0] = 0x00; /* literal without indexing, new name */
		f.bytes[1] = 11;
		__builtin_memcpy(f.bytes + 2, "traceparent", 11);
		f.bytes[13] = TRACEPARENT_LEN;
		traceparent_format(&c.head.sc, f.bytes + 14);
		u64 g = GO_G(regs);
		bpf_map_update_elem(&field_by_goroutine, &g, &f, BPF_ANY);
	}
	return 0;
}

SEC("uprobe")
int create_header_fields_return(struct go_regs *regs)
{
	count_hit(HIT_RETURN);
	u64 g = GO_G(regs);
	struct h2_field *f = bpf_map_lookup_elem(&field_by_goroutine, &g);
	if (!f)
		return 0;
	u64 hf = GO_ARG1(regs); /* the returned slice's array */
	if (hf)
		bpf_map_update_elem(&field_by_headers, &hf, f, BPF_ANY);
	bpf_map_delete_elem(&field_by_goroutine, &g);
	return 0;
}

/* The writer goroutine is about to write stream `stream_id`'s header list `hf`. */
static __always_inline int hand_over(struct go_regs *regs, u64 hf, s64 n, u32 stream_id)
{
	struct h2_field *f = bpf_map_lookup_elem(&field_by_headers, &hf);
	if (!f)
		return 0;
	/* Never over the app's own traceparent (an SDK interceptor's metadata). */
	for (int i = 0; i < HF_SCAN; i++) {
		if (i >= n)
			break;
		struct go_string name = {};
		bpf_probe_read_user(&name, sizeof(name), (void *)(hf + i * HF_SIZE));
		if (name.len != 11)
			continue;
		u64 b[2] = {};
		bpf_probe_read_user(b, 11, (void *)name.ptr);
		/* "traceparent" as little-endian words: "tracepar", "ent" */
		if (b[0] == 0x7261706563617274ULL && b[1] == 0x746e65ULL) {
			bpf_map_delete_elem(&field_by_headers, &hf);
			return 0;
		}
	}
	struct h2_key key = {
		.tgid = bpf_get_current_pid_tgid() >> 32,
		.stream_id = stream_id,
		.g = GO_G(regs),
	};
	struct h2_pending p = { .created_ns = bpf_ktime_get_ns(), .field = *f };
	bpf_map_update_elem(&pending_h2, &key, &p, BPF_ANY);
	bpf_map_delete_elem(&field_by_headers, &hf);
	return 0;
}

/* grpc <= 1.82.0: originateStream(str *outStream, hdr *headerFrame). */
SEC("uprobe")
int originate_stream_entry(struct go_regs *regs)
{
	count_hit(HIT_ENTRY);
	if (off_outstream_id == OFF_ABSENT || off_headerframe_hf == OFF_ABSENT)
		return 0;
	u64 str = GO_ARG2(regs), hdr = GO_ARG3(regs);
	u32 id = 0;
	bpf_probe_read_user(&id, sizeof(id), (void *)(str + off_outstream_id));
	u64 hf = read_u64(hdr + off_headerframe_hf);
	s64 n = (s64)read_u64(hdr + off_headerframe_hf + 8);
	return hand_over(regs, hf, n, id);
}

/* grpc >= 1.82.1: clientHeaderHandler(hdr *clientHeaders). */
SEC("uprobe")
int client_header_handler_entry(struct go_regs *regs)
{
	count_hit(HIT_ENTRY);
	if (off_clientheaders_id == OFF_ABSENT || off_clientheaders_hf == OFF_ABSENT)
		return 0;
	u64 hdr = GO_ARG2(regs);
	u32 id = 0;
	bpf_probe_read_user(&id, sizeof(id), (void *)(hdr + off_clientheaders_id));
	u64 hf = read_u64(hdr + off_clientheaders_hf);
	s64 n = (s64)read_u64(hdr + off_clientheaders_hf + 8);
	return hand_over(regs, hf, n, id);
}
SEC("uprobe")
int attempt_finish_entry(struct go_regs *regs)
{
	count_hit(HIT_RETURN);
	u64 a = GO_ARG1(regs);
	if (off_attempt_cs == OFF_ABSENT)
		return 0;
	u64 cs = read_u64(a + off_attempt_cs);
	struct call *c = bpf_map_lookup_elem(&calls, &cs);
	if (!c)
		return 0;
	struct grpc_client_record *e = span_record_reserve(&events, sizeof(*e), &c->head);
	if (!e) {
		bpf_map_delete_elem(&calls, &cs);
		return 0;
	}
	e->code = grpc_error_code(GO_ARG2(regs), GO_ARG3(regs));
	__builtin_memset(&e->peer, 0, sizeof(e->peer));
	if (off_attempt_transport != OFF_ABSENT && off_http2client_remote != OFF_ABSENT) {
		u64 t = read_u64(a + off_attempt_transport + 8); /* ClientTransport data: *http2Client */
		if (t)
			read_tcp_addr(t + off_http2client_remote, &e->peer);
	}
	u64 hdr = off_cs_callhdr == OFF_ABSENT ? 0 : read_u64(cs + off_cs_callhdr);
	e->method_len = read_go_string(e->method, GRPC_METHOD_CAP, hdr, off_callhdr_method);
	span_record_submit(e);
	bpf_map_delete_elem(&calls, &cs);
	return 0;
}
