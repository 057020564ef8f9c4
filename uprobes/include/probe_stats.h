/* gosight — per-probe counters every probe program keeps, read by the loader:
 *   hits[0]  uprobe hits at function entries
 *   hits[1]  uprobe hits at RET sites
 *   lost[0]  events dropped because the ring buffer was full
 * Per-CPU arrays, so counting costs no atomic contention.
 */
#pragma once

#include "go_types.h"

#define HIT_ENTRY 0
#define HIT_RETURN 1

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, u32);
	__type(value, u64);
} hits SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, u64);
} lost SEC(".maps");

static __always_inline void count_in(void *map, u32 idx)
{
	u64 *n = bpf_map_lookup_elem(map, &idx);
	if (n)
		*n += 1; /* per-CPU slot: no other writer */
}

#define count_hit(idx) count_in(&hits, (idx))
#define count_lost() count_in(&lost, 0)
