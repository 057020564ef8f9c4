/* gosight — test program for include/go_header.h and include/traceparent.h
 * (uprobes/tests/header_walk.rs).
 *
 * header_walk: at the entry of the test app's main.Probe(h http.Header), walks h
 *   for Traceparent, parses and re-formats it, and reports everything through the
 *   ring buffer.
 * header_bench: at the entry of main.Bench(h http.Header), does what a real probe
 *   does (find + parse) and reports nothing: its run time per call (bpf stats) is
 *   the cost of the walk.
 */
#include "go_abi.h"
#include "go_types.h"
#include "go_header.h"
#include "traceparent.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct walk_event {
	u64 map;
	__s32 status;    /* GO_HDR_* */
	__s32 parsed;    /* traceparent_parse() */
	char value[56];
	struct span_ctx sc;
	char formatted[56];
};

_Static_assert(sizeof(struct walk_event) == 160, "update WalkEvent in header_walk.rs");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} events SEC(".maps");

/* [0] calls, [1] found, [2] parsed */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 3);
	__type(key, u32);
	__type(value, u64);
} bench_counts SEC(".maps");

SEC("uprobe")
int header_walk(struct go_regs *regs)
{
	struct walk_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e)
		return 0;
	__builtin_memset(e, 0, sizeof(*e));
	e->map = GO_ARG1(regs);
	e->status = go_header_find_traceparent(e->map, e->value);
	if (e->status == GO_HDR_FOUND) {
		e->parsed = traceparent_parse(e->value, &e->sc);
		if (e->parsed)
			traceparent_format(&e->sc, e->formatted);
	}
	bpf_ringbuf_submit(e, 0);
	return 0;
}

static __always_inline void bench_count(u32 idx)
{
	u64 *n = bpf_map_lookup_elem(&bench_counts, &idx);
	if (n)
		*n += 1;
}

SEC("uprobe")
int header_bench(struct go_regs *regs)
{
	char tp[TRACEPARENT_LEN];
	struct span_ctx sc = {};
	bench_count(0);
	if (go_header_traceparent(GO_ARG1(regs), tp)) {
		bench_count(1);
		if (traceparent_parse(tp, &sc))
			bench_count(2);
	}
	return 0;
}
