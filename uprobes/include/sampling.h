/* gosight — the sampler, applied in the kernel where a span starts, so that the
 * flags propagated downstream and the decision to export agree. Same rules as the
 * OpenTelemetry SDK: always_on / always_off / traceidratio (on the trace id's last
 * 8 bytes, big-endian, shifted right by one, below a bound), optionally parent-based.
 */
#pragma once

#include "go_types.h"
#include "traceparent.h"

#define SAMPLED 0x01

volatile const u64 sampler_kind = 0;         /* 0 always_on, 1 always_off, 2 ratio */
volatile const u64 sampler_parent_based = 1;
volatile const u64 sampler_ratio_bound = ~0ULL;

static __always_inline u8 sample_root(const struct span_ctx *c)
{
	if (sampler_kind == 0)
		return SAMPLED;
	if (sampler_kind == 1)
		return 0;
	u64 x = 0;
	for (int i = 8; i < 16; i++)
		x = (x << 8) | c->trace_id[i];
	return (x >> 1) < sampler_ratio_bound ? SAMPLED : 0;
}

/* Flags of a new span: from the parent's when parent-based and there is one. */
static __always_inline u8 sample(const struct span_ctx *c, int has_parent, u8 parent_flags)
{
	if (has_parent && sampler_parent_based)
		return parent_flags & SAMPLED;
	return sample_root(c);
}
