/* gosight — kafka-go producer probe: one PRODUCER span (`send <topic>`) per
 * `(*Writer).WriteMessages` call, which writes its messages and (unless the
 * Writer is Async) waits for the broker's acknowledgements on the caller's
 * goroutine (tests/go-apps/kafkaapp/PROBING.md). Entry: the span starts (parent:
 * the span the goroutine serves, else the one the context derives from), the
 * first message's topic (else the Writer's) and key, the number of messages
 * (messaging.batch.message_count), and each message's context is offered to the
 * kernel's record-header insertion. RET: the error. 2 hits per call, whatever
 * the number of messages.
 */
#include "go_abi.h"
#include "go_types.h"
#include "probe_stats.h"
#include "span_start.h"
#include "kafka_context.h"
#include "kafka_go.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

volatile const u64 off_writer_topic = OFF_ABSENT; /* Writer.Topic */

/* At most this many messages of one call get their context offered. */
#define MAX_BATCH 64

/* A call in progress: its record, and the messages slice it was made with (the
 * entry's second run after stack growth sees the same). */
struct call {
	u64 msgs;
	struct kafka_record rec;
};

CALLS_BY(u64, struct call); /* goroutine g */

SPAN_EVENTS(512 * 1024);

PER_CPU_SCRATCH(struct call);

SEC("uprobe")
int write_messages_entry(struct go_regs *regs) /* (w, ctx, msgs...) */
{
	count_hit(HIT_ENTRY);
	u64 g = GO_G(regs);
	u64 msgs = GO_ARG4(regs);
	s64 n = (s64)GO_ARG5(regs);
	struct call *prev = bpf_map_lookup_elem(&calls, &g);
	if (prev && prev->msgs == msgs)
		return 0; /* the entry again after stack growth */
	u32 zero = 0;
	struct call *c = bpf_map_lookup_elem(&scratch, &zero);
	if (!c || n <= 0 || !msgs || size_msg == OFF_ABSENT)
		return 0;
	c->msgs = msgs;
	struct kafka_record *r = &c->rec;
	__builtin_memset(r, 0, sizeof(*r));
	struct active_span *as = find_parent_span(bpf_get_current_pid_tgid() >> 32, g, GO_ARG3(regs));
	span_head_start(&r->head, g, bpf_ktime_get_ns(), as ? &as->sc : 0);
	r->operation = KAFKA_SEND;
	r->library = KAFKA_KAFKA_GO;
	r->batch = n > 0xffffffff ? 0xffffffff : (u32)n;
	kafka_go_message(msgs, &r->msg, 0);
	if (!r->msg.topic_len && off_writer_topic != OFF_ABSENT) {
		struct go_string t = {};
		bpf_probe_read_user(&t, sizeof(t), (void *)(GO_ARG1(regs) + off_writer_topic));
		kafka_set_topic(&r->msg, t.ptr, t.len);
	}
	r->msg.partition = -1; /* the Writer picks it and does not say */
	r->msg.offset = -1;
#pragma clang loop unroll(disable)
	for (int i = 0; i < MAX_BATCH; i++) {
		if (i >= n)
			break;
		u64 m = msgs + (u64)i * size_msg;
		struct go_string key = {}, value = {};
		if (off_msg_key != OFF_ABSENT)
			bpf_probe_read_user(&key, sizeof(key), (void *)(m + off_msg_key));
		if (off_msg_value != OFF_ABSENT)
			bpf_probe_read_user(&value, sizeof(value), (void *)(m + off_msg_value));
		if (!key.ptr)
			key.len = -1;
		kafka_offer_context((const void *)key.ptr, key.len, (const void *)value.ptr, value.len, &r->head.sc);
	}
	bpf_map_update_elem(&calls, &g, c, BPF_ANY);
	return 0;
}

SEC("uprobe")
int write_messages_return(struct go_regs *regs) /* error */
{
	count_hit(HIT_RETURN);
	u64 g = GO_G(regs);
	struct call *call = bpf_map_lookup_elem(&calls, &g);
	if (!call)
		return 0;
	struct kafka_record *c = &call->rec;
	struct kafka_record *e = span_record_reserve(&events, sizeof(*e), &c->head);
	if (e) {
		__builtin_memcpy((u8 *)e + sizeof(e->head), (u8 *)c + sizeof(c->head), sizeof(*e) - sizeof(e->head));
		e->error_tab = GO_ARG1(regs);
		span_record_submit(e);
	}
	bpf_map_delete_elem(&calls, &g);
	return 0;
}
