/* gosight — starting a span in the kernel, shared by every probe: its trace id
 * (the parent's, or a new one), a new span id, the sampling decision; and finding
 * the server span a client call belongs to.
 */
#pragma once

#include "go_types.h"
#include "traceparent.h"
#include "sampling.h"
#include "shared_maps.h"
#include "span_head.h"
#include "probe_stats.h"
#include "ring_batch.h"

/* Fills `sc` and `parent_span_id` for a new span whose parent is `parent` (NULL
 * for a root span). */
static __always_inline void span_start(struct span_ctx *sc, u8 *parent_span_id, const struct span_ctx *parent)
{
	if (parent) {
		__builtin_memcpy(sc->trace_id, parent->trace_id, 16);
		__builtin_memcpy(parent_span_id, parent->span_id, 8);
	} else {
		u64 hi = random_id64(), lo = random_id64();
		__builtin_memcpy(sc->trace_id, &hi, 8);
		__builtin_memcpy(sc->trace_id + 8, &lo, 8);
	}
	u64 sid = random_id64();
	__builtin_memcpy(sc->span_id, &sid, 8);
	sc->flags = sample(sc, parent != 0, parent ? parent->flags : 0);
}

/* Starts the span `h` of goroutine `g`, begun at `start_ns`, as a child of
 * `parent` (NULL: a root span). */
static __always_inline void span_head_start(struct span_head *h, u64 g, u64 start_ns, const struct span_ctx *parent)
{
	h->start_ns = start_ns;
	h->goroutine = g;
	h->has_parent = parent != 0;
	span_start(&h->sc, h->parent_span_id, parent);
}

/* The maps every span probe declares the same way. */

/* `events`: the ring buffer its records go out on (the loader reads it), its
 * reader woken once per batch (ring_batch.h): submit with span_record_submit. */
#define SPAN_EVENTS(bytes) RING_WITH_BATCHED_WAKEUP(events, bytes)

/* `calls`: the calls in progress (value_t), by key_t (a goroutine, a stream),
 * from their entry until their end sends the record. */
#define CALLS_BY(key_t, value_t)                          \
	struct {                                          \
		__uint(type, BPF_MAP_TYPE_LRU_HASH);      \
		__uint(max_entries, 8192);                \
		__type(key, key_t);                       \
		__type(value, value_t);                   \
	} calls SEC(".maps")

/* `scratch`: one value_t per CPU, for a value too big for the BPF stack. */
#define PER_CPU_SCRATCH(value_t)                          \
	struct {                                          \
		__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);  \
		__uint(max_entries, 1);                   \
		__type(key, u32);                         \
		__type(value, value_t);                   \
	} scratch SEC(".maps")

/* 1: the sidecar derives metrics from every call, so unsampled spans are sent
 * too (their flags say unsampled: counted in the metrics, never exported). Set
 * by the loader only when metrics are on; 0 keeps unsampled calls in the kernel.
 * The sampling decision and what is propagated do not depend on it. */
volatile const u64 send_unsampled = 0;

/* Ends the span `h` now: reserves its record of `size` bytes (a struct that begins
 * with a span_head) on `ring` and fills the head. NULL when the span is not sampled
 * and unsampled spans are not sent (nothing to export or count), or the ring
 * buffer is full (counted as lost); the caller then forgets the call. Otherwise
 * the caller fills the rest and submits. */
static __always_inline void *span_record_reserve(void *ring, u64 size, const struct span_head *h)
{
	if (!(h->sc.flags & SAMPLED) && !send_unsampled)
		return 0;
	struct span_head *e = bpf_ringbuf_reserve(ring, size, 0);
	if (!e) {
		count_lost();
		return 0;
	}
	*e = *h;
	e->end_ns = bpf_ktime_get_ns();
	return e;
}

/* Sends a record span_record_reserve gave out. */
#define span_record_submit(record) ring_submit(&events, record)

/* Publishes a server span for client calls made while serving: by the goroutine
 * that serves it and, when known, by the request's context (data pointer). */
static __always_inline void span_publish(u64 g, u64 ctx, const struct span_ctx *sc)
{
	struct active_span as = { .sc = *sc };
	struct proc_key key = { .tgid = bpf_get_current_pid_tgid() >> 32, .ptr = g };
	bpf_map_update_elem(&spans_by_goroutine, &key, &as, BPF_ANY);
	if (ctx) {
		key.ptr = ctx;
		bpf_map_update_elem(&spans_by_context, &key, &as, BPF_ANY);
	}
}

/* Takes back what span_publish published (the span ended). */
static __always_inline void span_unpublish(u64 g, u64 ctx)
{
	struct proc_key key = { .tgid = bpf_get_current_pid_tgid() >> 32, .ptr = g };
	bpf_map_delete_elem(&spans_by_goroutine, &key);
	if (ctx) {
		key.ptr = ctx;
		bpf_map_delete_elem(&spans_by_context, &key);
	}
}

#define CONTEXT_DEPTH 8

/* The server span a client call belongs to: the one the calling goroutine serves,
 * else the one whose context `ctx` (a context.Context data pointer) derives from.
 * The standard library's context types (valueCtx, cancelCtx, timerCtx,
 * withoutCancelCtx, ...) keep their parent Context as their first field, so the
 * walk follows the data words, up to CONTEXT_DEPTH parents. */
static __always_inline struct active_span *find_parent_span(u32 tgid, u64 g, u64 ctx)
{
	struct proc_key key = { .tgid = tgid, .ptr = g };
	struct active_span *as = bpf_map_lookup_elem(&spans_by_goroutine, &key);
	if (as)
		return as;
	for (int i = 0; i < CONTEXT_DEPTH && ctx; i++) {
		key.ptr = ctx;
		as = bpf_map_lookup_elem(&spans_by_context, &key);
		if (as)
			return as;
		ctx = read_u64(ctx + 8);
	}
	return 0;
}
