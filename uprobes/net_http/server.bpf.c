/* gosight — net/http server probe.
 *
 * Attached to net/http.serverHandler.ServeHTTP(sh, rw ResponseWriter, req *Request)
 * at its entry. The span ends in one of two ways, chosen per target by the sidecar
 * (`one_hit`, see server.rs for the rule):
 *  - one hit per request (one_hit = 1): tracepoints end it. After ServeHTTP
 *    returns, conn.serve runs w.finishRequest() on the same goroutine; its first
 *    statement sets response.handlerDone, then it flushes the buffered response to
 *    the socket. So the first socket event of that goroutine (sock_send_length:
 *    the flush; sock_recv_length: the keep-alive read of the next request when
 *    the handler had already flushed everything; inet_sock_set_state: the close
 *    of a non-keep-alive connection) seen while handlerDone is set ends the span.
 *    The goroutine is read from the thread's TLS (go_tls.h) and checked by goid,
 *    so an entry left by a goroutine that died without finishing its response (a
 *    panic) is recognised as stale when its g is reused, and counted;
 *  - two hits per request (the fallback): one uprobe on every RET instruction
 *    (never a uretprobe: Go moves goroutine stacks).
 *
 * Entry, per goroutine (g) and idempotent (the stack-growth prologue can run the
 * entry twice): takes the trace context from an incoming `traceparent` header (read
 * from req.Header right here — no probe per header line), or starts a trace; makes
 * the span id; decides sampling; and publishes the span by goroutine and by the
 * request's context so client calls made while serving become its children.
 * End: for sampled spans, reads the request and response (method, path, route
 * pattern, host, remote address, protocol, TLS, status) into one ring-buffer event.
 * Reading at the end keeps the per-call map value small and sees the pattern the
 * mux set; at the one-hit end both are still valid (finishRequest is running).
 */
#include "go_abi.h"
#include "go_types.h"
#include "probe_stats.h"
#include "go_header.h"
#include "traceparent.h"
#include "span_start.h"
#include "records.h"
#include "go_tls.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Field offsets, filled per target by the loader. */
volatile const u64 off_request_method = OFF_ABSENT;     /* net/http.Request.Method */
volatile const u64 off_request_url = OFF_ABSENT;        /* net/http.Request.URL */
volatile const u64 off_request_proto = OFF_ABSENT;      /* net/http.Request.Proto */
volatile const u64 off_request_header = OFF_ABSENT;     /* net/http.Request.Header */
volatile const u64 off_request_host = OFF_ABSENT;       /* net/http.Request.Host */
volatile const u64 off_request_remote_addr = OFF_ABSENT;/* net/http.Request.RemoteAddr */
volatile const u64 off_request_tls = OFF_ABSENT;        /* net/http.Request.TLS */
volatile const u64 off_request_pattern = OFF_ABSENT;    /* net/http.Request.Pattern (Go >= 1.23) */
volatile const u64 off_request_ctx = OFF_ABSENT;        /* net/http.Request.ctx */
volatile const u64 off_url_path = OFF_ABSENT;           /* net/url.URL.Path */
volatile const u64 off_response_status = OFF_ABSENT;    /* net/http.response.status */
volatile const u64 off_response_handler_done = OFF_ABSENT; /* net/http.response.handlerDone */
volatile const u64 off_g_goid = OFF_ABSENT;             /* runtime.g.goid */
/* 1: spans end at the goroutine's first socket event after finishRequest began
 * (tracepoints), the RET programs are not attached. Set only with the two offsets
 * above and response_itab known. */
volatile const u64 one_hit = 0;
/* Virtual address of the itab (*net/http.response, net/http.ResponseWriter), plus the
 * load bias of a PIE target; 0 = unknown (then every writer is taken as *response). */
volatile const u64 response_itab = 0;

struct call {
	struct span_head head;
	u64 request;
	u64 writer_tab;
	u64 writer;
	u64 context;
	u64 goid; /* one_hit: the goroutine's id, to tell a reused g */
};

CALLS_BY(u64, struct call); /* goroutine g */

SPAN_EVENTS(512 * 1024);

/* Per-CPU scratch: a struct call is too big to build comfortably on the stack
 * next to the traceparent buffer. */
PER_CPU_SCRATCH(struct call);

/* The target's process id as the kernel's tracepoints see it (bpf_get_current_pid_tgid),
 * stored by the first entry: the tracepoint programs see every process. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, u32);
} target_tgid SEC(".maps");

/* One-hit counters, per CPU (read by server.rs):
 *   ended       spans ended by a tracepoint
 *   stale       entries of a goroutine that died before its response finished
 *               (a handler that panicked), found when their g was reused
 *   not_http1   requests whose writer is not *response (cannot end: no span) */
#define END_ENDED 0
#define END_STALE 1
#define END_NOT_HTTP1 2
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 3);
	__type(key, u32);
	__type(value, u64);
} one_hit_counts SEC(".maps");

/* Ends the span of call `c` (goroutine g) now: for sampled spans, reads the
 * request and response into its record; forgets the call. */
static __always_inline void end_span(struct call *c, u64 g)
{
	span_unpublish(g, c->context);
	struct http_server_record *e = span_record_reserve(&events, sizeof(*e), &c->head);
	if (!e) {
		bpf_map_delete_elem(&calls, &g);
		return;
	}

	u64 req = c->request;

	if (response_itab == 0 || c->writer_tab == response_itab)
		e->status = off_response_status == OFF_ABSENT ? -1 : (s64)read_u64(c->writer + off_response_status);
	else
		e->status = -1;
	e->tls = off_request_tls != OFF_ABSENT && read_u64(req + off_request_tls) != 0;

	e->method_len = read_go_string(e->method, HTTP_METHOD_CAP, req, off_request_method);
	u64 url = off_request_url == OFF_ABSENT ? 0 : read_u64(req + off_request_url);
	e->path_len = read_go_string(e->path, HTTP_PATH_CAP, url, off_url_path);
	e->pattern_len = read_go_string(e->pattern, HTTP_PATTERN_CAP, req, off_request_pattern);
	e->host_len = read_go_string(e->host, HTTP_HOST_CAP, req, off_request_host);
	e->remote_len = read_go_string(e->remote, HTTP_REMOTE_CAP, req, off_request_remote_addr);
	e->proto_len = read_go_string(e->proto, HTTP_PROTO_CAP, req, off_request_proto);

	span_record_submit(e);
	bpf_map_delete_elem(&calls, &g);
}

static __always_inline int same_span(const struct span_ctx *a, const struct span_ctx *b)
{
	u64 x, y;
	__builtin_memcpy(&x, a->span_id, 8);
	__builtin_memcpy(&y, b->span_id, 8);
	return x == y;
}

/* One hit: ends the span of call `c` (the entry of goroutine g) if its response
 * is finishing (finishRequest set handlerDone); forgets it if g now runs another
 * goroutine (the one that served died first: a panic); else it is the handler's
 * own I/O, and the call stays. */
static __always_inline void end_if_finished(struct call *c, u64 g)
{
	if (read_u64(g + off_g_goid) != c->goid) {
		count_in(&one_hit_counts, END_STALE);
		/* The g (or the context's address) may serve another span by now (the
		 * gRPC server probe's): take back only what is still ours. */
		struct proc_key key = { .tgid = bpf_get_current_pid_tgid() >> 32, .ptr = g };
		struct active_span *as = bpf_map_lookup_elem(&spans_by_goroutine, &key);
		if (as && same_span(&as->sc, &c->head.sc))
			bpf_map_delete_elem(&spans_by_goroutine, &key);
		key.ptr = c->context;
		as = c->context ? bpf_map_lookup_elem(&spans_by_context, &key) : 0;
		if (as && same_span(&as->sc, &c->head.sc))
			bpf_map_delete_elem(&spans_by_context, &key);
		bpf_map_delete_elem(&calls, &g);
		return;
	}
	u8 done = 0;
	bpf_probe_read_user(&done, sizeof(done), (void *)(c->writer + off_response_handler_done));
	if (!done)
		return;
	count_in(&one_hit_counts, END_ENDED);
	end_span(c, g);
}

SEC("uprobe")
int serve_http_entry(struct go_regs *regs)
{
	count_hit(HIT_ENTRY);
	u64 g = GO_G(regs);
	u64 req = GO_ARG4(regs);
	struct call *prev = bpf_map_lookup_elem(&calls, &g);
	if (prev && prev->request == req && (!one_hit || prev->goid == read_u64(g + off_g_goid)))
		return 0; /* the entry ran again after stack growth */
	if (one_hit) {
		if (GO_ARG2(regs) != response_itab) {
			count_in(&one_hit_counts, END_NOT_HTTP1);
			return 0;
		}
		u32 zero = 0;
		u32 *tgid = bpf_map_lookup_elem(&target_tgid, &zero);
		if (tgid && !*tgid)
			*tgid = bpf_get_current_pid_tgid() >> 32;
		/* The previous request of this goroutine sent nothing after its handler
		 * returned, and the connection's next request was already buffered. */
		if (prev)
			end_if_finished(prev, g);
	}

	u32 zero = 0;
	struct call *c = bpf_map_lookup_elem(&scratch, &zero);
	if (!c)
		return 0;
	__builtin_memset(c, 0, sizeof(*c));
	u64 start_ns = bpf_ktime_get_ns();
	c->request = req;
	c->writer_tab = GO_ARG2(regs);
	c->writer = GO_ARG3(regs);

	/* Incoming context: a valid traceparent makes this span its child. */
	struct span_ctx parent = {};
	char tp[TRACEPARENT_LEN];
	u64 header = off_request_header == OFF_ABSENT ? 0 : read_u64(req + off_request_header);
	int has_parent = header && go_header_traceparent(header, tp) && traceparent_parse(tp, &parent);
	span_head_start(&c->head, g, start_ns, has_parent ? &parent : 0);
	if (off_request_ctx != OFF_ABSENT)
		c->context = read_u64(req + off_request_ctx + 8); /* context iface data word */
	if (one_hit)
		c->goid = read_u64(g + off_g_goid);
	bpf_map_update_elem(&calls, &g, c, BPF_ANY);
	span_publish(g, c->context, &c->head.sc);
	return 0;
}

SEC("uprobe")
int serve_http_return(struct go_regs *regs)
{
	count_hit(HIT_RETURN);
	u64 g = GO_G(regs);
	struct call *c = bpf_map_lookup_elem(&calls, &g);
	if (c)
		end_span(c, g);
	return 0;
}

/* ---- one hit: the span ends at the serving goroutine's next socket event ---- */

/* The call of the goroutine running on this thread, when this thread belongs to the
 * target and its goroutine has a request in flight. */
static __always_inline struct call *current_call(u64 *g)
{
	u32 zero = 0;
	u32 *tgid = bpf_map_lookup_elem(&target_tgid, &zero);
	if (!tgid || !*tgid || *tgid != (u32)(bpf_get_current_pid_tgid() >> 32))
		return 0;
	*g = current_goroutine_at(GO_G_TLS_OFFSET_AMD64);
	if (!*g)
		return 0;
	return bpf_map_lookup_elem(&calls, g);
}

static __always_inline int end_current(void)
{
	if (!one_hit)
		return 0;
	u64 g = 0;
	struct call *c = current_call(&g);
	if (c)
		end_if_finished(c, g);
	return 0;
}

SEC("tp_btf/sock_send_length")
int end_on_send(void *ctx)
{
	return end_current();
}

SEC("tp_btf/sock_recv_length")
int end_on_recv(void *ctx)
{
	return end_current();
}

SEC("tp_btf/inet_sock_set_state")
int end_on_state(void *ctx)
{
	return end_current();
}
