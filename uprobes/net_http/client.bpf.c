/* gosight — net/http client probe.
 *
 *  - net/http.(*Transport).roundTrip(t, req) entry: the CLIENT span starts. Its
 *    parent is, in order: a valid `traceparent` the request already carries (an app
 *    with its own SDK keeps its context: the inserter keeps it on the wire and adds
 *    nothing; a malformed one is replaced there by ours), the server span the
 *    calling goroutine is serving, or the server span whose request context the
 *    request's context derives from (walking the context chain a few levels). The
 *    `traceparent` to send is prepared here.
 *  - net/http.(*Request).write(r, w, ...) entry, on the connection's write loop
 *    goroutine: hands that line to the in-kernel inserter (`pending_headers`, keyed
 *    by the writing goroutine), which adds it as the request leaves the socket.
 *  - every RET of roundTrip: status code or transport error; one event per sampled
 *    span.
 * Cost: 3 uprobe hits per request.
 */
#include "go_abi.h"
#include "go_types.h"
#include "probe_stats.h"
#include "go_header.h"
#include "traceparent.h"
#include "span_start.h"
#include "records.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

volatile const u64 off_request_method = OFF_ABSENT;  /* net/http.Request.Method */
volatile const u64 off_request_url = OFF_ABSENT;     /* net/http.Request.URL */
volatile const u64 off_request_header = OFF_ABSENT;  /* net/http.Request.Header */
volatile const u64 off_request_ctx = OFF_ABSENT;     /* net/http.Request.ctx */
volatile const u64 off_url_scheme = OFF_ABSENT;      /* net/url.URL.Scheme */
volatile const u64 off_url_host = OFF_ABSENT;        /* net/url.URL.Host */
volatile const u64 off_url_path = OFF_ABSENT;        /* net/url.URL.Path */
volatile const u64 off_url_raw_query = OFF_ABSENT;   /* net/url.URL.RawQuery */
volatile const u64 off_response_status = OFF_ABSENT; /* net/http.Response.StatusCode */
/* Whether outgoing requests get a traceparent (the loader's setting). */
volatile const u64 propagate = 1;

struct call {
	struct span_head head;
	u64 request;
};

CALLS_BY(u64, struct call); /* goroutine g */

/* Identifies a request across the shallow copies the transport makes of it (a
 * request with a body is copied by setupRewindBody before it is written): the
 * copies share the URL and the header map. */
struct request_key {
	u64 url;
	u64 header;
};

/* The header line prepared for a request, until its write loop picks it up. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, struct request_key);
	__type(value, struct pending_header);
} outgoing SEC(".maps");

static __always_inline struct request_key request_key_of(u64 req)
{
	struct request_key k = {
		.url = off_request_url == OFF_ABSENT ? 0 : read_u64(req + off_request_url),
		.header = off_request_header == OFF_ABSENT ? 0 : read_u64(req + off_request_header),
	};
	return k;
}

SPAN_EVENTS(512 * 1024);

PER_CPU_SCRATCH(struct pending_header);

SEC("uprobe")
int round_trip_entry(struct go_regs *regs)
{
	count_hit(HIT_ENTRY);
	u64 g = GO_G(regs);
	u64 req = GO_ARG2(regs);
	struct call *prev = bpf_map_lookup_elem(&calls, &g);
	if (prev && prev->request == req)
		return 0; /* the entry ran again after stack growth */

	u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct call c = { .request = req };
	u64 start_ns = bpf_ktime_get_ns();
	int has_parent = 0;
	struct span_ctx parent = {};
	int inject = propagate;

	char tp[TRACEPARENT_LEN];
	u64 header = off_request_header == OFF_ABSENT ? 0 : read_u64(req + off_request_header);
	/* The request's own traceparent is judged like an incoming one: a valid one
	 * parents the span and is kept on the wire; a malformed one (or one we could
	 * not read) is left for the inserter to judge on the wire, which replaces it. */
	u8 judge = 0;
	int found = header ? go_header_find_traceparent(header, tp) : GO_HDR_ABSENT;
	if (found == GO_HDR_FOUND && traceparent_parse(tp, &parent))
		has_parent = 1;
	if (found != GO_HDR_ABSENT)
		judge = 1;
	if (!has_parent) {
		u64 ctx = off_request_ctx == OFF_ABSENT ? 0 : read_u64(req + off_request_ctx + 8);
		struct active_span *as = find_parent_span(tgid, g, ctx);
		if (as) {
			parent = as->sc;
			has_parent = 1;
		}
	}
	span_head_start(&c.head, g, start_ns, has_parent ? &parent : 0);
	bpf_map_update_elem(&calls, &g, &c, BPF_ANY);

	if (inject) {
		u32 zero = 0;
		struct pending_header *p = bpf_map_lookup_elem(&scratch, &zero);
		if (!p)
			return 0;
		p->created_ns = 0;
		p->awaiting_crlf = 0;
		p->judge = judge;
		__builtin_memcpy(p->line, "traceparent: ", 13);
		traceparent_format(&c.head.sc, p->line + 13);
		p->line[TP_HEADER_LEN - 2] = '\r';
		p->line[TP_HEADER_LEN - 1] = '\n';
		struct request_key rk = request_key_of(req);
		bpf_map_update_elem(&outgoing, &rk, p, BPF_ANY);
	}
	return 0;
}

SEC("uprobe")
int request_write_entry(struct go_regs *regs)
{
	count_hit(HIT_ENTRY);
	struct request_key rk = request_key_of(GO_ARG1(regs));
	struct pending_header *p = bpf_map_lookup_elem(&outgoing, &rk);
	if (!p)
		return 0;
	p->created_ns = bpf_ktime_get_ns();
	struct proc_key key = { .tgid = bpf_get_current_pid_tgid() >> 32, .ptr = GO_G(regs) };
	bpf_map_update_elem(&pending_headers, &key, p, BPF_ANY);
	return 0;
}

SEC("uprobe")
int round_trip_return(struct go_regs *regs)
{
	count_hit(HIT_RETURN);
	u64 g = GO_G(regs);
	struct call *c = bpf_map_lookup_elem(&calls, &g);
	if (!c)
		return 0;
	u64 req = c->request;
	struct request_key rk = request_key_of(req);
	bpf_map_delete_elem(&outgoing, &rk);
	struct http_client_record *e = span_record_reserve(&events, sizeof(*e), &c->head);
	if (!e) {
		bpf_map_delete_elem(&calls, &g);
		return 0;
	}
	u64 resp = GO_ARG1(regs);
	e->error_tab = GO_ARG2(regs);
	e->status = resp && off_response_status != OFF_ABSENT ? (s64)read_u64(resp + off_response_status) : -1;

	e->method_len = read_go_string(e->method, HTTP_METHOD_CAP, req, off_request_method);
	u64 url = off_request_url == OFF_ABSENT ? 0 : read_u64(req + off_request_url);
	e->scheme_len = read_go_string(e->scheme, HTTP_SCHEME_CAP, url, off_url_scheme);
	e->host_len = read_go_string(e->host, HTTP_HOST_CAP, url, off_url_host);
	e->path_len = read_go_string(e->path, HTTP_PATH_CAP, url, off_url_path);
	e->query_len = read_go_string(e->query, HTTP_QUERY_CAP, url, off_url_raw_query);

	span_record_submit(e);
	bpf_map_delete_elem(&calls, &g);
	return 0;
}
