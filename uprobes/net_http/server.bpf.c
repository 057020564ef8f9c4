/* gosight — net/http server probe.
 *
 * Attached to net/http.serverHandler.ServeHTTP(sh, rw ResponseWriter, req *Request):
 * one uprobe at the entry and one on every RET instruction (never a uretprobe: Go
 * moves goroutine stacks). Cost: 2 uprobe hits per request (entry + the RET taken).
 *
 * Entry, per goroutine (g) and idempotent (the stack-growth prologue can run the
 * entry twice): takes the trace context from an incoming `traceparent` header (read
 * from req.Header right here — no probe per header line), or starts a trace; makes
 * the span id; decides sampling; and publishes the span by goroutine and by the
 * request's context so client calls made while serving become its children.
 * RET: for sampled spans, reads the request and response (method, path, route
 * pattern, host, remote address, protocol, TLS, status) into one ring-buffer event.
 * Reading at return keeps the per-call map value small and sees the pattern the
 * mux set.
 */
#include "go_abi.h"
#include "go_types.h"
#include "probe_stats.h"
#include "go_header.h"
#include "traceparent.h"
#include "span_start.h"
#include "records.h"

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
/* Virtual address of the itab (*net/http.response, net/http.ResponseWriter), plus the
 * load bias of a PIE target; 0 = unknown (then every writer is taken as *response). */
volatile const u64 response_itab = 0;

struct call {
	struct span_head head;
	u64 request;
	u64 writer_tab;
	u64 writer;
	u64 context;
};

CALLS_BY(u64, struct call); /* goroutine g */

SPAN_EVENTS(512 * 1024);

/* Per-CPU scratch: a struct call is too big to build comfortably on the stack
 * next to the traceparent buffer. */
PER_CPU_SCRATCH(struct call);

SEC("uprobe")
int serve_http_entry(struct go_regs *regs)
{
	count_hit(HIT_ENTRY);
	u64 g = GO_G(regs);
	u64 req = GO_ARG4(regs);
	struct call *prev = bpf_map_lookup_elem(&calls, &g);
	if (prev && prev->request == req)
		return 0; /* the entry ran again after stack growth */

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
	if (!c)
		return 0;

	span_unpublish(g, c->context);
	struct http_server_record *e = span_record_reserve(&events, sizeof(*e), &c->head);
	if (!e) {
		bpf_map_delete_elem(&calls, &g);
		return 0;
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
	return 0;
}
