/* gosight — finding the `Traceparent` header in a Go net/http.Header from BPF.
 *
 * A net/http.Header is a map[string][]string; the map value is a pointer to the
 * runtime's map header. Two implementations exist and both are walked:
 *
 *   classic hash map (Go <= 1.23; Go 1.24/1.25 built with GOEXPERIMENT=noswissmap)
 *     runtime.hmap{count, flags, B, buckets, oldbuckets, ...}; 2^B buckets of
 *     { tophash[8]; keys[8]; elems[8]; overflow *bucket }. While the map grows,
 *     oldbuckets holds the previous array (2^(B-1) buckets, or 2^B for a same-size
 *     grow) and its not-yet-evacuated buckets still hold entries: they are walked
 *     too. A tophash below minTopHash (5) is an empty or evacuated cell; an
 *     emptyRest (0) cell means nothing follows in this bucket or its overflow chain.
 *   Swiss tables (Go >= 1.24)
 *     internal/runtime/maps.Map{used, dirPtr, dirLen, ...}. dirLen == 0: a small
 *     map, dirPtr points at one group. Otherwise dirPtr is *[dirLen]*table (several
 *     consecutive entries may name the same table); a table's `groups` is a
 *     groupsReference{data, lengthMask} over lengthMask+1 groups. A group is an
 *     8-byte control word (byte i for slot i: 0x80 empty, 0xFE deleted, high bit
 *     clear = full) followed by 8 slots of key (string) + elem ([]string), or, with
 *     GOEXPERIMENT=mapsplitgroup (Go >= 1.27), 8 keys then 8 elems.
 *
 * Which one a target uses is decided by which offsets the loader resolved from its
 * DWARF (runtime.hmap vs internal/runtime/maps.Map), never by the Go version. Sizes
 * fixed by the type map[string][]string (key 16 bytes, elem 24, bucket 336, group
 * 328) are constants here; struct field offsets are globals the loader fills (Rust:
 * `gosight_uprobes::go_header::FIELDS`, to list among a probe's field groups).
 *
 * Go canonicalises header keys, so the key is exactly "Traceparent" (11 bytes).
 * A step reads one bucket/group's control bytes and key headers (one or two
 * bpf_probe_read_user calls) and marks, with branch-free arithmetic, the full slots
 * whose key is 11 bytes long; each such candidate then costs one step that reads its
 * key header and bytes; only "Traceparent" has its []string read, and its first
 * value is taken when exactly 55 bytes long. The walk stops at the key, or once the
 * map's `count`/`used` entries have been seen.
 *
 * Verifier shape (kernel 6.18, clang 14): every step is one bpf_loop callback
 * iteration with no inner loops and few branches (~8-11k instructions processed to
 * verify a program that includes this, ~5 ms). One walker subprogram per layout,
 * each with its own bpf_loop call site (see GO_HDR_WALKER). Buffers live on the BPF
 * stack, not in per-CPU scratch (a preemptible uprobe program could find it
 * clobbered): the walker (80 bytes as the verifier counts it) + callback (<= 176)
 * frames sit on top of the including program's frame, which must therefore stay
 * within 256 bytes (512 in all; the verifier says "combined stack size" if not).
 *
 * Cost (measured, BPF run time only, on this VM): ~0.2-0.7 us for 5-20 real-world
 * headers, ~3-5 us for 120 entries without the key; against ~16 us for the uprobe
 * hit itself. Bounds (beyond them GO_HDR_E_LIMIT, i.e. not found): classic B <= 6
 * (64 buckets), Swiss directory <= 8 entries and <= 64 groups per table, at most
 * GO_HDR_MAX_STEPS steps (units + candidates + tables). That is about 400 entries;
 * a 128-entry header needs 32 buckets or 32 groups.
 */
#pragma once

#include "go_types.h"

/* ---- Offsets, filled per target by the loader (OFF_ABSENT when the struct is not
 * in the binary: that is how the layout is chosen). ---- */
volatile const u64 off_hmap_count = OFF_ABSENT;       /* runtime.hmap.count */
volatile const u64 off_hmap_flags = OFF_ABSENT;       /* runtime.hmap.flags */
volatile const u64 off_hmap_b = OFF_ABSENT;           /* runtime.hmap.B */
volatile const u64 off_hmap_buckets = OFF_ABSENT;     /* runtime.hmap.buckets */
volatile const u64 off_hmap_oldbuckets = OFF_ABSENT;  /* runtime.hmap.oldbuckets */
volatile const u64 off_swiss_used = OFF_ABSENT;       /* internal/runtime/maps.Map.used */
volatile const u64 off_swiss_dir_ptr = OFF_ABSENT;    /* internal/runtime/maps.Map.dirPtr */
volatile const u64 off_swiss_dir_len = OFF_ABSENT;    /* internal/runtime/maps.Map.dirLen */
volatile const u64 off_swiss_table_groups = OFF_ABSENT; /* internal/runtime/maps.table.groups */
volatile const u64 off_swiss_groups_data = OFF_ABSENT;  /* internal/runtime/maps.groupsReference.data */
volatile const u64 off_swiss_groups_mask = OFF_ABSENT;  /* internal/runtime/maps.groupsReference.lengthMask */
/* noalg.map.group[string][]string: `slots` (interleaved layout, the default) or
 * `keys` + `elems` (GOEXPERIMENT=mapsplitgroup). Optional: absent = interleaved. */
volatile const u64 off_swiss_group_slots = OFF_ABSENT;
volatile const u64 off_swiss_group_keys = OFF_ABSENT;
volatile const u64 off_swiss_group_elems = OFF_ABSENT;

/* ---- Results of go_header_find_traceparent ---- */
#define GO_HDR_FOUND 1       /* 55 bytes copied */
#define GO_HDR_ABSENT 0      /* no Traceparent key (or a nil/empty map) */
#define GO_HDR_E_VALUE (-1)  /* the key is there but its first value is not 55 bytes */
#define GO_HDR_E_LIMIT (-2)  /* the map is larger than the walk's bounds */
#define GO_HDR_E_READ (-3)   /* a read of the target's memory failed */
#define GO_HDR_E_LAYOUT (-4) /* the map layout's offsets are not (all) known */
#define GO_HDR_WALKING (-100) /* internal: walk in progress */

/* ---- Sizes fixed by map[string][]string ---- */
#define GO_HDR_SLOTS 8
#define GO_HDR_KEY_SIZE 16   /* string: ptr, len */
#define GO_HDR_ELEM_SIZE 24  /* []string: ptr, len, cap */
/* classic bucket: tophash[8] | keys[8] | elems[8] | overflow */
#define GO_HDR_BUCKET_KEYS 8
#define GO_HDR_BUCKET_ELEMS (GO_HDR_BUCKET_KEYS + GO_HDR_SLOTS * GO_HDR_KEY_SIZE)         /* 136 */
#define GO_HDR_BUCKET_OVERFLOW (GO_HDR_BUCKET_ELEMS + GO_HDR_SLOTS * GO_HDR_ELEM_SIZE)    /* 328 */
#define GO_HDR_BUCKET_SIZE (GO_HDR_BUCKET_OVERFLOW + 8)                                   /* 336 */
#define GO_HDR_MIN_TOPHASH 5
#define GO_HDR_EMPTY_REST 0
#define GO_HDR_EVACUATED_X 2
#define GO_HDR_EVACUATED_EMPTY 4
#define GO_HDR_SAME_SIZE_GROW 8  /* hmap.flags */
/* Swiss group: ctrl | slots[8]{key, elem}  (or ctrl | keys[8] | elems[8]) */
#define GO_HDR_GROUP_SLOTS 8
#define GO_HDR_SLOT_SIZE (GO_HDR_KEY_SIZE + GO_HDR_ELEM_SIZE)                             /* 40 */
#define GO_HDR_GROUP_SIZE (GO_HDR_GROUP_SLOTS + GO_HDR_SLOTS * GO_HDR_SLOT_SIZE)          /* 328 */
#define GO_HDR_SPLIT_KEYS 8
#define GO_HDR_SPLIT_ELEMS (GO_HDR_SPLIT_KEYS + GO_HDR_SLOTS * GO_HDR_KEY_SIZE)           /* 136 */
#define GO_HDR_CTRL_FREE 0x80 /* high bit set: empty or deleted */

/* ---- Bounds ---- */
#define GO_HDR_MAX_B 6         /* classic: 64 buckets (~416 entries) */
#define GO_HDR_MAX_DIR 8       /* Swiss: directory entries */
#define GO_HDR_MAX_GROUPS 64   /* Swiss: groups per table (512 slots, ~448 entries) */
#define GO_HDR_MAX_STEPS 384   /* bpf_loop steps: units + candidate keys + tables */

#define GO_HDR_KEY_LEN 11
#define GO_HDR_VALUE_LEN 55
/* "Traceparent" as two little-endian words: "Tracepar", "ent". */
#define GO_HDR_C8(c, i) ((u64)(u8)(c) << (8 * (i)))
#define GO_HDR_TP_LO (GO_HDR_C8('T', 0) | GO_HDR_C8('r', 1) | GO_HDR_C8('a', 2) | GO_HDR_C8('c', 3) | \
		      GO_HDR_C8('e', 4) | GO_HDR_C8('p', 5) | GO_HDR_C8('a', 6) | GO_HDR_C8('r', 7))
#define GO_HDR_TP_HI (GO_HDR_C8('e', 0) | GO_HDR_C8('n', 1) | GO_HDR_C8('t', 2))

/* Walk state, on the walker's stack, shared with its bpf_loop callback. */
struct go_hdr_walk {
	u64 remaining;   /* live entries not counted yet (count / used) */
	u64 base;        /* classic: buckets; Swiss: current table's groups */
	u64 old;         /* classic: oldbuckets; Swiss: directory */
	union {
		u64 cur;         /* classic: next bucket of an overflow chain (0: next index) */
		u64 prev_table;  /* Swiss: last table visited */
	};
	union {
		u64 unit;        /* bucket/group whose candidate slots are pending */
		u64 value;       /* once found: address of the 55 value bytes */
	};
	u16 idx;         /* classic: next bucket index (old ones first); Swiss: next directory index */
	u16 n_old;       /* classic: old buckets to visit; Swiss: directory length */
	u16 n_new;       /* classic: buckets; Swiss: groups of the current table */
	u16 gidx;        /* Swiss: next group of the current table */
	u8 cand;         /* slots of `unit` holding an 11-byte key, not checked yet */
	u8 kind;         /* GO_HDR_KIND_* */
	u8 _pad[2];
	__s32 status;
};
/* Small on purpose: it sits in the walker's frame, which bpf_loop inlining grows by
 * 24 bytes and the verifier rounds up to 16. */
_Static_assert(sizeof(struct go_hdr_walk) == 56, "go_hdr_walk grew");

#define GO_HDR_KIND_CLASSIC 0
#define GO_HDR_KIND_SWISS 1       /* interleaved slots */
#define GO_HDR_KIND_SWISS_SPLIT 2 /* keys[8] then elems[8] */

#define GO_HDR_ONES 0x0101010101010101ULL
#define GO_HDR_HIGHS 0x8080808080808080ULL

/* 1 when v == want, 0 otherwise, without a branch. The per-slot work below is all
 * arithmetic: every branch is a verifier path, and inside a bpf_loop callback the
 * paths multiply. */
#define GO_HDR_EQ(v, want) (((((u64)(v) ^ (u64)(want)) | -((u64)(v) ^ (u64)(want))) >> 63) ^ 1)

/* Full slots of a unit as bit 7 of each byte, from its 8 control/tophash bytes. */
static __always_inline u64 go_hdr_full_classic(u64 tophash)
{
	/* tophash >= minTopHash (5): bytes >= 0x80, or (b & 0x7f) + 0x7b carrying into bit 7 */
	return (((tophash & ~GO_HDR_HIGHS) + GO_HDR_ONES * (0x80 - GO_HDR_MIN_TOPHASH)) | tophash) & GO_HDR_HIGHS;
}

static __always_inline u64 go_hdr_full_swiss(u64 ctrl)
{
	return ~ctrl & GO_HDR_HIGHS; /* high bit clear = full */
}

/* Bit s of the result = bit 7 of byte s of `full` (an x86 movemask). */
static __always_inline u64 go_hdr_movemask(u64 full)
{
	return ((full >> 7) * 0x0102040810204080ULL) >> 56;
}

/* Bit s: the key of slot s is 11 bytes long (a candidate, if the slot is full). */
#define GO_HDR_LEN11(s, len) (GO_HDR_EQ((len), GO_HDR_KEY_LEN) << (s))

/* Counts a unit's entries off (`full` as above) and queues its candidates. */
static __always_inline void go_hdr_unit_done(struct go_hdr_walk *w, u64 unit, u64 full, u64 cand)
{
	u64 n = ((full >> 7) * GO_HDR_ONES) >> 56;
	w->remaining = w->remaining > n ? w->remaining - n : 0;
	w->unit = unit;
	w->cand = (u8)cand;
}

/* Whether a key header (string) names "Traceparent" or "traceparent": length
 * first, then bytes (read into b[0..1]). net/http canonicalises parsed header
 * keys; gRPC metadata (also a map[string][]string) keeps them lower-case; and an
 * app that set a lower-case key on an outgoing http.Header still sends it. */
static __always_inline int go_hdr_key_is_tp(u64 ptr, s64 len, u64 *b)
{
	if (len != GO_HDR_KEY_LEN || !ptr)
		return 0;
	b[0] = 0;
	b[1] = 0;
	if (bpf_probe_read_user(b, GO_HDR_KEY_LEN, (void *)ptr))
		return 0;
	return (b[0] | 0x20) == (GO_HDR_TP_LO | 0x20) && b[1] == GO_HDR_TP_HI;
}

/* One step on the lowest pending candidate slot of w->unit: reads its key and, for
 * "Traceparent", the first value of its []string (taken when 55 bytes long; the
 * walk stops either way: keys are unique). Returns 1 to stop the walk. */
static __always_inline long go_hdr_check_candidate(struct go_hdr_walk *w, u64 *t /* [5] */)
{
	u64 c = w->cand;
	u64 low = c & -c;
	w->cand = (u8)(c & (c - 1));
	/* slot index = popcount(low - 1), for one byte */
	u64 x = low - 1;
	x = x - ((x >> 1) & 0x55);
	x = (x & 0x33) + ((x >> 2) & 0x33);
	u64 s = (x + (x >> 4)) & 0x0f;

	u64 key, elem;
	if (w->kind == GO_HDR_KIND_SWISS) {
		key = w->unit + GO_HDR_GROUP_SLOTS + s * GO_HDR_SLOT_SIZE;
		elem = key + GO_HDR_KEY_SIZE;
	} else { /* classic bucket, split group: same shape */
		key = w->unit + GO_HDR_BUCKET_KEYS + s * GO_HDR_KEY_SIZE;
		elem = w->unit + GO_HDR_BUCKET_ELEMS + s * GO_HDR_ELEM_SIZE;
	}
	if (bpf_probe_read_user(t, 2 * 8, (void *)key)) {
		w->status = GO_HDR_E_READ;
		return 1;
	}
	if (!go_hdr_key_is_tp(t[0], (s64)t[1], t + 3))
		return 0;

	/* []string header: ptr, len, cap */
	w->status = GO_HDR_E_READ;
	if (bpf_probe_read_user(t, 3 * 8, (void *)elem))
		return 1;
	u64 first = t[0];
	w->status = GO_HDR_E_VALUE;
	if ((s64)t[1] < 1 || !first)
		return 1;
	/* its first string: ptr, len */
	if (bpf_probe_read_user(t, 2 * 8, (void *)first)) {
		w->status = GO_HDR_E_READ;
		return 1;
	}
	if ((s64)t[1] != GO_HDR_VALUE_LEN || !t[0])
		return 1;
	w->value = t[0];
	w->status = GO_HDR_FOUND;
	return 1;
}

/* Common head of every step: pending candidates first; then, once every live
 * entry has been counted, the walk is over. Returns -1 to go on to the next unit. */
static __always_inline long go_hdr_step_head(struct go_hdr_walk *w, u64 *scratch)
{
	if (w->cand)
		return go_hdr_check_candidate(w, scratch);
	if (w->remaining == 0) {
		w->status = GO_HDR_ABSENT;
		return 1;
	}
	return -1;
}

/* Classic maps: one bucket per step (old buckets first, each bucket followed by its
 * overflow chain), or one candidate key. */
static long go_hdr_classic_step(u64 index, void *arg)
{
	struct go_hdr_walk *w = arg;
	u64 buf[18]; /* the unit's head, or a candidate's key and value headers */
	long r = go_hdr_step_head(w, buf);
	if (r >= 0)
		return r;
	u64 b = w->cur;
	int old = 0;
	if (!b) {
		u32 k = w->idx;
		if (k >= w->n_old + w->n_new) {
			w->status = GO_HDR_ABSENT;
			return 1;
		}
		w->idx = k + 1;
		old = k < w->n_old;
		if (old)
			b = w->old + (u64)k * GO_HDR_BUCKET_SIZE;
		else
			b = w->base + (u64)(k - w->n_old) * GO_HDR_BUCKET_SIZE;
	}
	u64 *head = buf; /* tophash[8] + 8 key headers */
	if (bpf_probe_read_user(head, GO_HDR_BUCKET_ELEMS, (void *)b)) {
		w->status = GO_HDR_E_READ;
		return 1;
	}
	u64 tophash = head[0];
	u8 th0 = (u8)tophash;
	if (old && th0 >= GO_HDR_EVACUATED_X && th0 <= GO_HDR_EVACUATED_EMPTY) {
		w->cur = 0; /* evacuated (with its overflow chain): entries are in the new buckets */
		return 0;
	}
	u64 lens = 0;
#pragma unroll
	for (int s = 0; s < GO_HDR_SLOTS; s++)
		lens |= GO_HDR_LEN11(s, head[2 + 2 * s]);
	u64 full = go_hdr_full_classic(tophash);
	go_hdr_unit_done(w, b, full, lens & go_hdr_movemask(full));
	/* An emptyRest (0) cell: nothing after it, here or in the overflow buckets
	 * (old buckets: also true until evacuated). */
	u64 next = 0;
	if (!((tophash - GO_HDR_ONES) & ~tophash & GO_HDR_HIGHS) &&
	    bpf_probe_read_user(&next, sizeof(next), (void *)(b + GO_HDR_BUCKET_OVERFLOW))) {
		w->status = GO_HDR_E_READ;
		return 1;
	}
	w->cur = next;
	return 0;
}

/* The next Swiss group to visit (moving to the next table of the directory when
 * the current one is done); 0 when there is none this step, with *stop set. */
static __always_inline u64 go_hdr_swiss_next(struct go_hdr_walk *w, long *stop)
{
	*stop = 1;
	if (w->gidx >= w->n_new) {
		if (w->idx >= w->n_old) {
			w->status = GO_HDR_ABSENT;
			return 0;
		}
		u64 t = 0;
		if (bpf_probe_read_user(&t, sizeof(t), (void *)(w->old + (u64)w->idx * 8))) {
			w->status = GO_HDR_E_READ;
			return 0;
		}
		w->idx++;
		if (t == w->prev_table) {
			*stop = 0; /* several directory entries name this table: a step for nothing */
			return 0;
		}
		w->prev_table = t;
		u64 ref[2] = {};
		if (!t || bpf_probe_read_user(ref, sizeof(ref), (void *)(t + off_swiss_table_groups))) {
			w->status = GO_HDR_E_READ;
			return 0;
		}
		u64 mask = ref[(off_swiss_groups_mask >> 3) & 1];
		if (mask >= GO_HDR_MAX_GROUPS) {
			w->status = GO_HDR_E_LIMIT;
			return 0;
		}
		w->base = ref[(off_swiss_groups_data >> 3) & 1];
		w->n_new = (u16)(mask + 1);
		w->gidx = 0;
	}
	u64 g = w->base + (u64)w->gidx * GO_HDR_GROUP_SIZE;
	w->gidx++;
	*stop = 0;
	return g;
}

/* Swiss tables, interleaved slots: one group per step, or one candidate key. Reads
 * ctrl and the key headers of slots 0-3 ([0, 144)), then those of slots 4-7
 * ([168, 304)) if one of them is full: key header of slot s at buf[1 + 5s], then
 * at buf[5(s - 4)]. */
static long go_hdr_swiss_step(u64 index, void *arg)
{
	struct go_hdr_walk *w = arg;
	u64 buf[18]; /* the unit's head, or a candidate's key and value headers */
	long r = go_hdr_step_head(w, buf);
	if (r >= 0)
		return r;
	u64 g = go_hdr_swiss_next(w, &r);
	if (!g)
		return r;
	if (bpf_probe_read_user(buf, 8 + 3 * GO_HDR_SLOT_SIZE + GO_HDR_KEY_SIZE, (void *)g)) {
		w->status = GO_HDR_E_READ;
		return 1;
	}
	u64 full = go_hdr_full_swiss(buf[0]);
	u64 lens = 0;
#pragma unroll
	for (int s = 0; s < 4; s++)
		lens |= GO_HDR_LEN11(s, buf[2 + 5 * s]);
	if (full >> 32) {
		if (bpf_probe_read_user(buf, 3 * GO_HDR_SLOT_SIZE + GO_HDR_KEY_SIZE,
					(void *)(g + GO_HDR_GROUP_SLOTS + 4 * GO_HDR_SLOT_SIZE))) {
			w->status = GO_HDR_E_READ;
			return 1;
		}
#pragma unroll
		for (int s = 4; s < 8; s++)
			lens |= GO_HDR_LEN11(s, buf[1 + 5 * (s - 4)]);
	}
	go_hdr_unit_done(w, g, full, lens & go_hdr_movemask(full));
	return 0;
}

/* Swiss tables, split layout (GOEXPERIMENT=mapsplitgroup): ctrl and the 8 key
 * headers are contiguous, as in a classic bucket. */
static long go_hdr_swiss_split_step(u64 index, void *arg)
{
	struct go_hdr_walk *w = arg;
	u64 buf[18]; /* the unit's head, or a candidate's key and value headers */
	long r = go_hdr_step_head(w, buf);
	if (r >= 0)
		return r;
	u64 g = go_hdr_swiss_next(w, &r);
	if (!g)
		return r;
	u64 *head = buf; /* ctrl + 8 key headers */
	if (bpf_probe_read_user(head, GO_HDR_SPLIT_ELEMS, (void *)g)) {
		w->status = GO_HDR_E_READ;
		return 1;
	}
	u64 lens = 0;
#pragma unroll
	for (int s = 0; s < GO_HDR_SLOTS; s++)
		lens |= GO_HDR_LEN11(s, head[2 + 2 * s]);
	u64 full = go_hdr_full_swiss(head[0]);
	go_hdr_unit_done(w, g, full, lens & go_hdr_movemask(full));
	return 0;
}

/* Word / byte of the map header copy at a field offset (checked by the caller). */
#define GO_HDR_WORD(hdr, off) ((hdr)[((off) >> 3) & 7])
#define GO_HDR_BYTE(hdr, off) (((const u8 *)(hdr))[(off) & 63])
#define GO_HDR_END(end, off, size) do { if ((off) + (size) > (end)) (end) = (off) + (size); } while (0)

/* Reads the map header and sets up the walk, returning GO_HDR_WALKING, or returns
 * a final status. A subprogram of its own (not inlined): its 64-byte copy of the map
 * header lives in a frame that is gone before the walk's callback frame is pushed,
 * so it does not add to the including program's stack. */
static __attribute__((noinline)) int go_hdr_prepare(u64 header_map, struct go_hdr_walk *w)
{
	u64 hdr[8] = {};
	u64 end = 0;
	int classic = off_hmap_buckets != OFF_ABSENT;

	if (!header_map)
		return GO_HDR_ABSENT;
	if (classic) {
		if (off_hmap_count > 56 || off_hmap_buckets > 56 || off_hmap_oldbuckets > 56 ||
		    ((off_hmap_count | off_hmap_buckets | off_hmap_oldbuckets) & 7) ||
		    off_hmap_flags > 63 || off_hmap_b > 63)
			return GO_HDR_E_LAYOUT;
		w->kind = GO_HDR_KIND_CLASSIC;
		GO_HDR_END(end, off_hmap_count, 8);
		GO_HDR_END(end, off_hmap_buckets, 8);
		GO_HDR_END(end, off_hmap_oldbuckets, 8);
		GO_HDR_END(end, off_hmap_flags, 1);
		GO_HDR_END(end, off_hmap_b, 1);
	} else {
		if (off_swiss_used > 56 || off_swiss_dir_ptr > 56 || off_swiss_dir_len > 56 ||
		    ((off_swiss_used | off_swiss_dir_ptr | off_swiss_dir_len) & 7) ||
		    off_swiss_table_groups == OFF_ABSENT || off_swiss_groups_data > 8 ||
		    off_swiss_groups_mask > 8 || ((off_swiss_groups_data | off_swiss_groups_mask) & 7))
			return GO_HDR_E_LAYOUT;
		/* Sizes are constants: a group layout unlike the one assumed is refused. */
		if (off_swiss_group_keys != OFF_ABSENT || off_swiss_group_elems != OFF_ABSENT) {
			if (off_swiss_group_keys != GO_HDR_SPLIT_KEYS || off_swiss_group_elems != GO_HDR_SPLIT_ELEMS)
				return GO_HDR_E_LAYOUT;
			w->kind = GO_HDR_KIND_SWISS_SPLIT;
		} else if (off_swiss_group_slots != OFF_ABSENT && off_swiss_group_slots != GO_HDR_GROUP_SLOTS) {
			return GO_HDR_E_LAYOUT;
		} else {
			w->kind = GO_HDR_KIND_SWISS;
		}
		GO_HDR_END(end, off_swiss_used, 8);
		GO_HDR_END(end, off_swiss_dir_ptr, 8);
		GO_HDR_END(end, off_swiss_dir_len, 8);
	}
	if (end == 0 || end > sizeof(hdr))
		return GO_HDR_E_LAYOUT;
	if (bpf_probe_read_user(hdr, end, (void *)header_map))
		return GO_HDR_E_READ;

	if (classic) {
		u64 count = GO_HDR_WORD(hdr, off_hmap_count);
		u64 buckets = GO_HDR_WORD(hdr, off_hmap_buckets);
		u64 old = GO_HDR_WORD(hdr, off_hmap_oldbuckets);
		u8 b = GO_HDR_BYTE(hdr, off_hmap_b);
		u8 flags = GO_HDR_BYTE(hdr, off_hmap_flags);
		if ((s64)count <= 0 || !buckets)
			return GO_HDR_ABSENT;
		if (b > GO_HDR_MAX_B)
			return GO_HDR_E_LIMIT;
		w->remaining = count;
		w->base = buckets;
		w->n_new = 1u << b;
		if (old) {
			w->old = old;
			w->n_old = (flags & GO_HDR_SAME_SIZE_GROW) ? w->n_new : w->n_new >> 1;
		}
	} else {
		u64 used = GO_HDR_WORD(hdr, off_swiss_used);
		u64 dir = GO_HDR_WORD(hdr, off_swiss_dir_ptr);
		s64 dir_len = (s64)GO_HDR_WORD(hdr, off_swiss_dir_len);
		if (used == 0 || !dir)
			return GO_HDR_ABSENT;
		if (dir_len < 0 || dir_len > GO_HDR_MAX_DIR)
			return GO_HDR_E_LIMIT;
		w->remaining = used;
		if (dir_len == 0) {
			w->base = dir; /* small map: one group */
			w->n_new = 1;
		} else {
			w->old = dir;
			w->n_old = (u16)dir_len;
		}
	}
	w->status = GO_HDR_WALKING;
	return GO_HDR_WALKING;
}

/* The end of a walk: the status, and the value copied on GO_HDR_FOUND. */
static __always_inline int go_hdr_finish(struct go_hdr_walk *w, char *out)
{
	if (w->status == GO_HDR_WALKING)
		return GO_HDR_E_LIMIT;
	if (w->status != GO_HDR_FOUND)
		return w->status;
	if (bpf_probe_read_user(out, GO_HDR_VALUE_LEN, (void *)w->value))
		return GO_HDR_E_READ;
	return GO_HDR_FOUND;
}

/* One walker per layout, each a subprogram with a single bpf_loop call site. (With
 * the three bpf_loop calls in one function, clang merges them into one call whose
 * callback is picked at run time, and the 6.18 verifier then fails on the callbacks
 * it never entered: "verifier bug: No program to jit at insn N (subprog < 0)".) */
#define GO_HDR_WALKER(name, step)                                                  \
	static __attribute__((noinline)) int name(u64 header_map, char *out)       \
	{                                                                          \
		struct go_hdr_walk w = {};                                         \
		int st = go_hdr_prepare(header_map, &w);                           \
		if (st != GO_HDR_WALKING)                                          \
			return st;                                                 \
		bpf_loop(GO_HDR_MAX_STEPS, step, &w, 0);                           \
		return go_hdr_finish(&w, out);                                     \
	}
GO_HDR_WALKER(go_hdr_walk_classic, go_hdr_classic_step)
GO_HDR_WALKER(go_hdr_walk_swiss, go_hdr_swiss_step)
GO_HDR_WALKER(go_hdr_walk_swiss_split, go_hdr_swiss_split_step)

/* Looks for the Traceparent header in the Go net/http.Header whose map header is at
 * `header_map` (the map value itself, i.e. *hmap or *maps.Map). On GO_HDR_FOUND the
 * first value's 55 bytes are in out (char out[55]); otherwise out is untouched (or
 * zeroed, when that last read failed). Returns one of GO_HDR_*. The layout is picked
 * from the (load-time constant) offsets, exactly as go_hdr_prepare picks it. */
static __always_inline int go_header_find_traceparent(u64 header_map, char *out)
{
	if (off_hmap_buckets != OFF_ABSENT)
		return go_hdr_walk_classic(header_map, out);
	if (off_swiss_group_keys != OFF_ABSENT || off_swiss_group_elems != OFF_ABSENT)
		return go_hdr_walk_swiss_split(header_map, out);
	return go_hdr_walk_swiss(header_map, out);
}

/* 1 when the header has a Traceparent whose first value is 55 bytes, copied to out
 * (char out[55]); 0 otherwise. */
static __always_inline int go_header_traceparent(u64 header_map, char *out)
{
	return go_header_find_traceparent(header_map, out) == GO_HDR_FOUND;
}
