/* gosight — waking the user-space reader of a ring buffer once per batch, not once
 * per record.
 *
 * By default the kernel wakes the reader for every record committed while the
 * reader has caught up — under load, one wake-up (epoll return, context switch,
 * task poll) per span, which cost more than the span itself. Here the reader
 * says when it goes to sleep: it sets `reader_waiting[0]` (user space, see
 * `uprobes/ring.rs`), the next record wakes it and clears the flag, and from then
 * on it reads on a short timer until a read finds nothing. A record that fills
 * an eighth of the ring wakes it regardless, so a burst never waits for the timer.
 *
 * A program using it declares its ring with RING_WITH_BATCHED_WAKEUP(name, bytes)
 * and submits with ring_submit(&name, record).
 */
#pragma once

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define RING_WITH_BATCHED_WAKEUP(name, bytes)             \
	struct {                                          \
		__uint(type, BPF_MAP_TYPE_RINGBUF);       \
		__uint(max_entries, bytes);               \
	} name SEC(".maps");                              \
	struct {                                          \
		__uint(type, BPF_MAP_TYPE_ARRAY);         \
		__uint(max_entries, 1);                   \
		__type(key, __u32);                       \
		__type(value, __u32);                     \
	} reader_waiting SEC(".maps")

/* Submits `record` (reserved on `ring`), waking the reader only when it waits or
 * the ring is an eighth full. A macro: `reader_waiting` is declared by the program. */
#define ring_submit(ring, record) ring_submit_batched(ring, &reader_waiting, record)

static __always_inline void ring_submit_batched(void *ring, void *reader_waiting_map, void *record)
{
	__u32 zero = 0;
	__u32 *waiting = bpf_map_lookup_elem(reader_waiting_map, &zero);
	__u64 flags = BPF_RB_NO_WAKEUP;
	if (!waiting || *waiting) {
		if (waiting)
			*waiting = 0;
		flags = BPF_RB_FORCE_WAKEUP;
	} else if (bpf_ringbuf_query(ring, BPF_RB_AVAIL_DATA) >= bpf_ringbuf_query(ring, BPF_RB_RING_SIZE) / 8) {
		flags = BPF_RB_FORCE_WAKEUP;
	}
	bpf_ringbuf_submit(record, flags);
}
