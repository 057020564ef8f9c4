/* gosight — what context propagation counts, shared with the Rust side
 * (`gosight_uprobes::records`, generated from this file by build.rs): the
 * counters' indices, kept per target (`target_counts`) and in all (`counters`).
 */
#pragma once

#include <linux/types.h>

enum propagation_counter {
	C_ENROLLED = 0,
	C_EXISTING_ENROLLED = 1,
	C_EXISTING_BUSY = 2,
	C_KEPT_HTTP1 = 3,
	C_KEPT_H2 = 4,
	C_RELEASED = 5,
	C_TLS = 6,
	C_FASTOPEN = 7,
	C_INSERTED = 8,
	C_H2_INSERTED = 9,
	C_REPLACED = 10,
	C_KEPT_VALID = 11,
	C_HELD = 12,
	C_INSERT_FAILED = 13,
	C_H2_UNALIGNED = 14,
	C_H2_LOST = 15,
	C_NOT_REQUEST = 16,
	C_STALE = 17,
	C_H2_SKIPPED = 18,
	C_ADD_FAILED = 19,
	N_COUNTERS = 20,
};

/* Slots in a target's counter record: a power of two, indices are masked for the
 * verifier. */
#define N_SLOTS 32

struct target_counts {
	__u64 c[N_SLOTS];
};
