/* gosight — a wake-up for discovery when a process of gosight's pid namespace
 * calls execve(2), so a new target is attached without waiting for the next
 * /proc scan.
 *
 * A raw tracepoint (no BTF, no tracefs) on sched:sched_process_exec. Only the
 * pid goes up (the sidecar rescans /proc, which stays the one source of truth);
 * a full ring only means the scan that is due anyway comes later.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* gosight's pid namespace: execs elsewhere are not gosight's business. */
volatile const __u64 pidns_dev = 0;
volatile const __u64 pidns_ino = 0;

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} execs SEC(".maps");

SEC("raw_tracepoint/sched_process_exec")
int on_exec(void *ctx)
{
	struct bpf_pidns_info ns = {};

	if (bpf_get_ns_current_pid_tgid(pidns_dev, pidns_ino, &ns, sizeof(ns)))
		return 0;
	bpf_ringbuf_output(&execs, &ns.tgid, sizeof(ns.tgid), 0);
	return 0;
}
