/* gosight — handing a record to the sidecar through a BPF ring buffer without
 * paying for a wake-up per record.
 *
 * bpf_ringbuf_submit(rec, 0) wakes the reader whenever it had caught up, which with
 * a fast reader is almost every record: the wake-up is an irq_work raised with a
 * self-IPI, and on this project's VM that costs the traced thread ~8 µs per record
 * (measured with kernel.bpf_stats_enabled: the net/http server's RET program ran
 * 8.8 µs per request with it, 0.6 µs without). So records are submitted without a
 * wake-up; the sidecar polls each ring on a short interval (RING_POLL_INTERVAL in
 * uprobes/ring.rs) and is woken when the ring is filling up: by the record that
 * takes the waiting data past an eighth of the ring (one wake-up, not one per
 * record while the reader gets going), and by every record past half of it (a
 * crossing missed between CPUs cannot leave the ring to fill until the next poll).
 */
#pragma once

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

/* Submits `rec`, a record of `size` bytes reserved on `ring`. */
static __always_inline void ring_submit(void *ring, void *rec, __u64 size)
{
	__u64 waiting = bpf_ringbuf_query(ring, BPF_RB_AVAIL_DATA); /* ours included */
	__u64 ring_size = bpf_ringbuf_query(ring, BPF_RB_RING_SIZE);
	__u64 mark = ring_size / 8, before = waiting > size + 8 ? waiting - size - 8 : 0;
	int wake = (before < mark && waiting >= mark) || waiting >= ring_size / 2;
	bpf_ringbuf_submit(rec, wake ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP);
}
