/* gosight — gRPC server probe (google.golang.org/grpc).
 *
 *  - (*grpc.Server).handleStream(t ServerTransport, stream) entry: the SERVER span
 *    starts; method, peer and local address are read; an incoming `traceparent`
 *    in the request metadata (the map in the stream context's first valueCtx) makes
 *    it a child; the span is published by goroutine and by stream context so calls
 *    the handler makes become its children.
 *  - (*http2Server).WriteStatus (grpc < 1.69) / writeStatus (>= 1.69) entry: the
 *    status goes out: the span ends with its code.
 * Cost: 2 uprobe hits per RPC. Calls are keyed by the stream pointer, which both
 * functions receive (writeStatus may run on another goroutine).
 */
#include "go_abi.h"
#include "go_types.h"
#include "probe_stats.h"
#include "go_header.h"
#include "go_net.h"
#include "status.h"
#include "traceparent.h"
#include "span_start.h"
#include "records.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

volatile const u64 off_stream_method = OFF_ABSENT;   /* transport.Stream.method */
volatile const u64 off_stream_ctx = OFF_ABSENT;      /* transport.Stream.ctx */
volatile const u64 off_http2server_peer = OFF_ABSENT;/* transport.http2Server.peer (peer.Peer by value) */
volatile const u64 off_peer_addr = OFF_ABSENT;       /* peer.Peer.Addr */
volatile const u64 off_peer_local_addr = OFF_ABSENT; /* peer.Peer.LocalAddr */
volatile const u64 off_valuectx_val = OFF_ABSENT;    /* context.valueCtx.val */
volatile const u64 value_ctx_itab = 0;               /* go:itab.*context.valueCtx,context.Context */
/* grpc 1.69–1.76: ServerStream embeds *Stream (a pointer) instead of Stream. The
 * loader derives it from off_serverstream_st (the next field at 8 = a pointer). */
volatile const u64 stream_embed_ptr = 0;
volatile const u64 off_serverstream_st = OFF_ABSENT; /* transport.ServerStream.st */

struct call {
	struct span_head head;
	u64 context;
	struct ip_port peer;
	struct ip_port local;
	u16 method_len;
	u16 _pad2[3];
	char method[GRPC_METHOD_CAP];
};

CALLS_BY(u64, struct call); /* the stream pointer */

SPAN_EVENTS(256 * 1024);

PER_CPU_SCRATCH(struct call);

SEC("uprobe")
int handle_stream_entry(struct go_regs *regs)
{
	count_hit(HIT_ENTRY);
	u64 stream = GO_ARG4(regs);
	if (bpf_map_lookup_elem(&calls, &stream))
		return 0; /* the entry ran again after stack growth */
	u32 zero = 0;
	struct call *c = bpf_map_lookup_elem(&scratch, &zero);
	if (!c)
		return 0;
	__builtin_memset(c, 0, sizeof(*c));
	u64 start_ns = bpf_ktime_get_ns();
	int has_parent = 0;

	u64 base = stream_embed_ptr ? read_u64(stream) : stream;
	c->method_len = read_go_string(c->method, GRPC_METHOD_CAP, base, off_stream_method);
	u64 t = GO_ARG3(regs); /* *http2Server */
	if (t && off_http2server_peer != OFF_ABSENT) {
		if (off_peer_addr != OFF_ABSENT)
			read_tcp_addr(t + off_http2server_peer + off_peer_addr, &c->peer);
		if (off_peer_local_addr != OFF_ABSENT)
			read_tcp_addr(t + off_http2server_peer + off_peer_local_addr, &c->local);
	}

	/* Incoming metadata: operateHeaders makes the stream context a valueCtx whose
	 * value is the metadata.MD map (a map[string][]string like http.Header). */
	struct span_ctx parent = {};
	if (off_stream_ctx != OFF_ABSENT) {
		struct go_iface ctx = {};
		bpf_probe_read_user(&ctx, sizeof(ctx), (void *)(base + off_stream_ctx));
		c->context = ctx.data;
		if (value_ctx_itab && ctx.tab == value_ctx_itab && off_valuectx_val != OFF_ABSENT) {
			u64 md = read_u64(ctx.data + off_valuectx_val + 8);
			char tp[TRACEPARENT_LEN];
			if (md && go_header_traceparent(md, tp) && traceparent_parse(tp, &parent))
				has_parent = 1;
		}
	}
	span_head_start(&c->head, GO_G(regs), start_ns, has_parent ? &parent : 0);
	bpf_map_update_elem(&calls, &stream, c, BPF_ANY);
	span_publish(c->head.goroutine, c->context, &c->head.sc);
	return 0;
}

SEC("uprobe")
int write_status_entry(struct go_regs *regs)
{
	count_hit(HIT_RETURN);
	u64 stream = GO_ARG2(regs);
	struct call *c = bpf_map_lookup_elem(&calls, &stream);
	if (!c)
		return 0; /* a second status write for the same stream */
	span_unpublish(c->head.goroutine, c->context);
	struct grpc_server_record *e = span_record_reserve(&events, sizeof(*e), &c->head);
	if (!e) {
		bpf_map_delete_elem(&calls, &stream);
		return 0;
	}
	e->code = grpc_status_code(GO_ARG3(regs));
	e->peer = c->peer;
	e->local = c->local;
	e->method_len = c->method_len;
	__builtin_memcpy(e->method, c->method, GRPC_METHOD_CAP);
	span_record_submit(e);
	bpf_map_delete_elem(&calls, &stream);
	return 0;
}
