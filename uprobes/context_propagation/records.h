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
	/* Kafka (kafka.h) */
	C_KEPT_KAFKA = 20,        /* connections kept as Kafka */
	C_KAFKA_INSERTED = 21,    /* records given a traceparent header */
	C_KAFKA_KEPT_OWN = 22,    /* records with their own traceparent header: left as they are */
	C_KAFKA_COMPRESSED = 23,  /* batches with a pending context left alone: compressed */
	C_KAFKA_SPLIT = 24,       /* Produce requests split across several sendmsg calls */
	C_KAFKA_UNSUPPORTED = 25, /* Produce requests/batches of a version or shape not handled */
	C_KAFKA_TOO_LONG = 26,    /* batches over the bounded work (bytes, records, insertions) */
	C_KAFKA_BAD_BATCH = 27,   /* batches whose framing or CRC-32C did not check out */
	C_KAFKA_FAILED = 28,      /* a kernel helper failed while inserting */
	C_KAFKA_LOST = 29,        /* connections whose request framing was lost: no more insertion */
	C_KAFKA_STALE = 30,       /* pending contexts found too old and dropped */
	C_KAFKA_SHARED = 31,      /* contexts inserted that had replaced an identical message's (that one gets none) */
	N_COUNTERS = 32,
};

/* Slots in a target's counter record: a power of two, indices are masked for the
 * verifier. */
#define N_SLOTS 64

struct target_counts {
	__u64 c[N_SLOTS];
};
