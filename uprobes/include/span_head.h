/* gosight — the head every span record starts with: when the span ran, on which
 * goroutine, its ids and its parent. A probe keeps one for each span in flight
 * (span_start.h: span_head_start) and copies it into the record that ends the span
 * (span_record_reserve). The Rust side (`gosight_uprobes::records::span_head`) is
 * generated from this file by build.rs; nothing mirrors it by hand.
 */
#pragma once

#include "traceparent.h"

struct span_head {
	u64 start_ns; /* CLOCK_MONOTONIC (bpf_ktime_get_ns) */
	u64 end_ns;
	u64 goroutine; /* g of the goroutine that started the span */
	struct span_ctx sc;
	u8 parent_span_id[8];
	u8 has_parent;
	u8 _pad[7];
};
