/* gosight — reading Go values out of a target's memory from BPF.
 *
 * Field offsets are never compiled in: every probe declares them as
 * `volatile const` globals that the loader fills per target from DWARF or the
 * offsets database. OFF_ABSENT marks a field that does not exist in the target's
 * version of the library.
 */
#pragma once

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

typedef __u8 u8;
typedef __u16 u16;
typedef __u32 u32;
typedef __u64 u64;
typedef __s16 s16;
typedef __s32 s32;
typedef __s64 s64;

#define OFF_ABSENT 0xffffffffffffffffULL

/* A Go string header: pointer and length. */
struct go_string {
	u64 ptr;
	s64 len;
};

/* A Go interface value: type word (itab or type) and data pointer. */
struct go_iface {
	u64 tab;
	u64 data;
};

static __always_inline u64 read_u64(u64 addr)
{
	u64 v = 0;
	bpf_probe_read_user(&v, sizeof(v), (void *)addr);
	return v;
}

/* Copies the Go string (ptr, len) into dst (capacity cap, a power of two), returns
 * the string's real length (which may exceed cap: the copy is then truncated;
 * 0xffff at most) or 0 when it is empty or unreadable. */
static __always_inline u32 copy_go_string(char *dst, u32 cap, u64 ptr, s64 len)
{
	if (len <= 0 || !ptr)
		return 0;
	u64 n = len;
	if (n > cap)
		n = cap;
	/* 1..cap as the verifier sees it (the barrier keeps clang from folding the
	 * bound away). */
	n -= 1;
	asm volatile("%[n] &= %[m]" : [n] "+r"(n) : [m] "r"((u64)cap - 1));
	n += 1;
	if (bpf_probe_read_user(dst, n, (void *)ptr))
		return 0;
	return len > 0xffff ? 0xffff : (u32)len;
}

/* Reads the Go string at base+off into dst (capacity cap, a power of two): see
 * copy_go_string; 0 also when the field is absent. */
static __always_inline u32 read_go_string(char *dst, u32 cap, u64 base, u64 off)
{
	struct go_string s = {};
	if (!base || off == OFF_ABSENT)
		return 0;
	if (bpf_probe_read_user(&s, sizeof(s), (void *)(base + off)))
		return 0;
	return copy_go_string(dst, cap, s.ptr, s.len);
}

/* A random, never-zero 64-bit id. */
static __always_inline u64 random_id64(void)
{
	u64 id = ((u64)bpf_get_prandom_u32() << 32) | bpf_get_prandom_u32();
	return id ? id : 1;
}
