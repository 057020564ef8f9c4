/* gosight — the bare uprobe: a program that does nothing, so that attaching it
 * measures what one uprobe hit costs by itself (trap, lookup, program run,
 * single-step or emulation). Used by examples/hitcost.rs and bench/hit_cost.py;
 * never attached by the sidecar.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

SEC("uprobe")
int bare(void *ctx)
{
	return 0;
}
