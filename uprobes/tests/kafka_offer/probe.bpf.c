/* gosight — test program for the in-kernel Kafka record-header insertion
 * (context_propagation/kafka*.h), used by tests/e2e/tests/kafka_context.rs.
 *
 * offer: at the entry of the test app's main.Offer(key, value []byte, ctx *[25]byte)
 *   (tests/go-apps/kafkaoffer), hands the message's span context (trace id, span
 *   id, flags) to kafka_offer_context, as a Kafka producer probe does, with the
 *   slices as they are (a nil key is NULL, 0).
 */
#include "go_abi.h"
#include "go_types.h"
#include "shared_maps.h"
#include "kafka_context.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

SEC("uprobe")
int offer(struct go_regs *regs)
{
	struct span_ctx sc = {};
	if (bpf_probe_read_user(&sc, 25, (const void *)GO_ARG7(regs)))
		return 0;
	kafka_offer_context((const void *)GO_ARG1(regs), (s64)GO_ARG2(regs), (const void *)GO_ARG4(regs),
			    (s64)GO_ARG5(regs), &sc);
	return 0;
}
