/* gosight — sarama producer probe: one PRODUCER span (`send <topic>`) per message
 * a SyncProducer or an AsyncProducer delivers (or fails to).
 *
 * A message crosses goroutines (tests/go-apps/kafkaapp/PROBING.md): the caller
 * hands it to the AsyncProducer's input channel (SyncProducer.SendMessage does so
 * and waits), a pipeline of goroutines routes it, the broker producer's
 * goroutine adds it to a batch (`(*produceSet).add`), and once the broker
 * answered `returnSuccesses` / `returnErrors` report the batch. Entry probes only:
 *  - SendMessage / SendMessageContext / SendMessages(Context), caller's goroutine:
 *    the message's parent (the span the goroutine serves) and start time, by
 *    message pointer.
 *  - (*asyncProducer).Input, caller's goroutine: the AsyncProducer's parent, by
 *    producer (the channel hides which message follows: the caller's last span
 *    serves the messages added within PARENT_TTL_NS).
 *  - (*produceSet).add: the span starts (ids, topic, key) and the message's
 *    context is offered to the kernel's record-header insertion, before the batch
 *    is written to the broker.
 *  - returnSuccesses / returnErrors / returnError: partition, offset or error;
 *    the record.
 * Hits per message: 3 (1 caller, 1 add, 1 per batch at the end).
 */
#include "go_abi.h"
#include "go_types.h"
#include "probe_stats.h"
#include "span_start.h"
#include "kafka_context.h"
#include "sarama.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

volatile const u64 off_ps_parent = OFF_ABSENT; /* produceSet.parent (*asyncProducer) */

/* The AsyncProducer's parent is taken for messages added this soon after Input(). */
#define PARENT_TTL_NS 1000000000ULL
/* At most this many messages of one reported batch get their span ended. */
#define MAX_BATCH 64

struct parent {
	u64 start_ns;
	struct span_ctx sc;
	u8 has;
	u8 _pad[7];
};

/* Parents by *ProducerMessage (SyncProducer) and by *asyncProducer (Input()). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, u64);
	__type(value, struct parent);
} parents SEC(".maps");

CALLS_BY(u64, struct kafka_record); /* *ProducerMessage */

SPAN_EVENTS(512 * 1024);

PER_CPU_SCRATCH(struct kafka_record);

/* Remembers the span goroutine g serves (if any) as the parent of what `key`
 * names (a message or a producer), and when. */
static __always_inline void note_parent(struct go_regs *regs, u64 key, u64 ctx)
{
	u64 g = GO_G(regs);
	struct parent p = { .start_ns = bpf_ktime_get_ns() };
	struct active_span *as = find_parent_span(bpf_get_current_pid_tgid() >> 32, g, ctx);
	if (as) {
		p.sc = as->sc;
		p.has = 1;
	}
	bpf_map_update_elem(&parents, &key, &p, BPF_ANY);
}

static __always_inline void note_parents(struct go_regs *regs, u64 msgs, s64 n, u64 ctx)
{
#pragma clang loop unroll(disable)
	for (int i = 0; i < MAX_BATCH; i++) {
		if (i >= n)
			break;
		note_parent(regs, read_u64(msgs + 8 * (u64)i), ctx);
	}
}

SEC("uprobe")
int send_message_entry(struct go_regs *regs) /* (sp, msg) */
{
	count_hit(HIT_ENTRY);
	note_parent(regs, GO_ARG2(regs), 0);
	return 0;
}

SEC("uprobe")
int send_message_ctx_entry(struct go_regs *regs) /* (sp, ctx, msg) */
{
	count_hit(HIT_ENTRY);
	note_parent(regs, GO_ARG4(regs), GO_ARG3(regs));
	return 0;
}

SEC("uprobe")
int send_messages_entry(struct go_regs *regs) /* (sp, msgs) */
{
	count_hit(HIT_ENTRY);
	note_parents(regs, GO_ARG2(regs), (s64)GO_ARG3(regs), 0);
	return 0;
}

SEC("uprobe")
int send_messages_ctx_entry(struct go_regs *regs) /* (sp, ctx, msgs) */
{
	count_hit(HIT_ENTRY);
	note_parents(regs, GO_ARG4(regs), (s64)GO_ARG5(regs), GO_ARG3(regs));
	return 0;
}

SEC("uprobe")
int input_entry(struct go_regs *regs) /* (p) */
{
	count_hit(HIT_ENTRY);
	u64 g = GO_G(regs);
	struct proc_key key = { .tgid = bpf_get_current_pid_tgid() >> 32, .ptr = g };
	/* Only a caller serving a span names a parent (sarama's own SyncProducer
	 * inlines Input()). */
	if (bpf_map_lookup_elem(&spans_by_goroutine, &key))
		note_parent(regs, GO_ARG1(regs), 0);
	return 0;
}

SEC("uprobe")
int produce_set_add_entry(struct go_regs *regs) /* (ps, msg) */
{
	count_hit(HIT_ENTRY);
	u64 msg = GO_ARG2(regs);
	if (!msg || bpf_map_lookup_elem(&calls, &msg))
		return 0; /* the entry again after stack growth, or a retried message */
	u32 zero = 0;
	struct kafka_record *r = bpf_map_lookup_elem(&scratch, &zero);
	if (!r)
		return 0;
	u64 now = bpf_ktime_get_ns();
	__builtin_memset(r, 0, sizeof(*r));
	struct parent *p = bpf_map_lookup_elem(&parents, &msg);
	if (!p && off_ps_parent != OFF_ABSENT) {
		u64 producer = read_u64(GO_ARG1(regs) + off_ps_parent);
		p = bpf_map_lookup_elem(&parents, &producer);
	}
	if (p && (p->start_ns > now || now - p->start_ns > PARENT_TTL_NS))
		p = 0; /* stale */
	span_head_start(&r->head, GO_G(regs), p ? p->start_ns : now, p && p->has ? &p->sc : 0);
	bpf_map_delete_elem(&parents, &msg);
	r->operation = KAFKA_SEND;
	r->library = KAFKA_SARAMA;
	r->batch = 1;
	struct go_string key = {}, value = {};
	sarama_producer_message(msg, &r->msg, &key, &value);
	kafka_offer_context((const void *)key.ptr, key.len, (const void *)value.ptr, value.len, &r->head.sc);
	bpf_map_update_elem(&calls, &msg, r, BPF_ANY);
	return 0;
}

/* Ends the span of message `msg` (delivered, or failed with error itab err_tab). */
static __always_inline void end_message(u64 msg, u64 err_tab)
{
	struct kafka_record *c = bpf_map_lookup_elem(&calls, &msg);
	if (!c)
		return;
	struct kafka_record *e = span_record_reserve(&events, sizeof(*e), &c->head);
	if (e) {
		__builtin_memcpy((u8 *)e + sizeof(e->head), (u8 *)c + sizeof(c->head), sizeof(*e) - sizeof(e->head));
		e->error_tab = err_tab;
		if (!err_tab)
			sarama_producer_result(msg, &e->msg);
		span_record_submit(e);
	}
	bpf_map_delete_elem(&calls, &msg);
}

static __always_inline void end_batch(u64 msgs, s64 n, u64 err_tab)
{
#pragma clang loop unroll(disable)
	for (int i = 0; i < MAX_BATCH; i++) {
		if (i >= n)
			break;
		end_message(read_u64(msgs + 8 * (u64)i), err_tab);
	}
}

SEC("uprobe")
int return_successes_entry(struct go_regs *regs) /* (p, batch) */
{
	count_hit(HIT_ENTRY);
	end_batch(GO_ARG2(regs), (s64)GO_ARG3(regs), 0);
	return 0;
}

SEC("uprobe")
int return_errors_entry(struct go_regs *regs) /* (p, batch, err) */
{
	count_hit(HIT_ENTRY);
	end_batch(GO_ARG2(regs), (s64)GO_ARG3(regs), GO_ARG5(regs));
	return 0;
}

SEC("uprobe")
int return_error_entry(struct go_regs *regs) /* (p, msg, err) */
{
	count_hit(HIT_ENTRY);
	end_message(GO_ARG2(regs), GO_ARG3(regs));
	return 0;
}
