/* gosight — W3C trace context (`traceparent`) parsing and formatting in BPF.
 *
 *   00-<32 hex trace id>-<16 hex span id>-<2 hex flags>   (55 characters)
 *
 * Parsing follows the W3C Trace Context rules for a 55-byte header: lowercase hex
 * only, dashes at 2, 35 and 52, version "ff" invalid (any other version is accepted
 * for forward compatibility, still 55 bytes long), trace id and span id not all
 * zero. Formatting always writes version 00. No lookup tables: a `static const`
 * table would need a .rodata that clang 14 + libbpf have trouble with.
 */
#pragma once

#include "go_types.h"

#define TRACEPARENT_LEN 55

/* Rust mirror: gosight_uprobes::RawSpanContext. */
struct span_ctx {
	u8 trace_id[16];
	u8 span_id[8];
	u8 flags;
	u8 _pad[7];
};

/* Value of a lowercase hex digit, or 0x10 (bit 4 set) when c is not one. */
static __always_inline u8 tp_unhex(u8 c)
{
	u8 d = c - '0';
	u8 l = c - 'a';
	if (d < 10)
		return d;
	if (l < 6)
		return l + 10;
	return 0x10;
}

/* Byte from the two hex digits at p; bit 8 of the result flags an invalid digit. */
static __always_inline u16 tp_byte(const u8 *p)
{
	u8 hi = tp_unhex(p[0]), lo = tp_unhex(p[1]);
	return ((u16)((hi | lo) & 0x10) << 4) | (u8)((hi << 4) | (lo & 0xf));
}

/* Parses the 55 bytes at tp. Returns 1 and fills *out only when the header is fully
 * valid; returns 0 and leaves *out untouched otherwise. (Real loops, not unrolled:
 * unrolled, clang 14 hoists the loads and spills past the 512-byte stack.) */
static __always_inline int traceparent_parse(const char *tp, struct span_ctx *out)
{
	struct span_ctx c = {};
	u16 bad = 0;
	u8 any_trace = 0, any_span = 0;
	const u8 *p = (const u8 *)tp;

	if (p[2] != '-' || p[35] != '-' || p[52] != '-')
		return 0;
	u16 v = tp_byte(p);
	if (v == 0xff || (v & 0x100))
		return 0; /* version ff is invalid */
#pragma clang loop unroll(disable)
	for (int i = 0; i < 16; i++) {
		u16 b = tp_byte(p + 3 + 2 * i);
		bad |= b;
		c.trace_id[i] = (u8)b;
		any_trace |= (u8)b;
	}
#pragma clang loop unroll(disable)
	for (int i = 0; i < 8; i++) {
		u16 b = tp_byte(p + 36 + 2 * i);
		bad |= b;
		c.span_id[i] = (u8)b;
		any_span |= (u8)b;
	}
	v = tp_byte(p + 53);
	bad |= v;
	c.flags = (u8)v;
	if ((bad & 0x100) || !any_trace || !any_span)
		return 0;
	*out = c;
	return 1;
}

/* Lowercase hex digit of a nibble, without branches. */
static __always_inline char tp_hex(u8 n)
{
	n &= 0xf;
	return (char)(n + '0' + ((u8)(((__s32)9 - (__s32)n) >> 31) & 39));
}

/* Writes `00-<trace>-<span>-<flags>` (55 bytes, no terminator) to out. */
static __always_inline void traceparent_format(const struct span_ctx *c, char *out)
{
	out[0] = '0';
	out[1] = '0';
	out[2] = '-';
#pragma clang loop unroll(disable)
	for (int i = 0; i < 16; i++) {
		out[3 + 2 * i] = tp_hex(c->trace_id[i] >> 4);
		out[4 + 2 * i] = tp_hex(c->trace_id[i]);
	}
	out[35] = '-';
#pragma clang loop unroll(disable)
	for (int i = 0; i < 8; i++) {
		out[36 + 2 * i] = tp_hex(c->span_id[i] >> 4);
		out[37 + 2 * i] = tp_hex(c->span_id[i]);
	}
	out[52] = '-';
	out[53] = tp_hex(c->flags >> 4);
	out[54] = tp_hex(c->flags);
}
