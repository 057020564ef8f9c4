/* gosight — Kafka consumer probe: one CONSUMER span (`process <topic>`) per
 * message a sarama ConsumerGroup claim or a kafka-go Reader hands to the
 * application, published as the span the receiving goroutine serves (like a
 * server span) so that the work it does for the message — an HTTP call, a query —
 * is its child. Its parent is the message's `traceparent` record header.
 *
 * Both libraries hand messages over a channel, from their fetching goroutine to
 * the application's (tests/go-apps/kafkaapp/PROBING.md), and no library function
 * runs per message on the receiving goroutine. So the hand-over is watched on the
 * channel itself, for the channels the libraries name:
 *  - sarama `(*partitionConsumer).Messages` (entry, once per claim: the
 *    ConsumeClaim goroutine asks for the channel; the group name comes from
 *    `(*consumerGroupSession).consume`'s entry on that goroutine, also once per
 *    claim) and `(*partitionConsumer).parseResponse` (entry, per fetch response
 *    of the partition, on the feeder goroutine, before it hands the messages
 *    over: a claim that began before gosight attached) and kafka-go
 *    `(*Reader).FetchMessage` (entry, per message) register the message channel.
 *  - The receiving goroutine asks for the next message: `runtime.chanrecv`
 *    (sarama's `range claim.Messages()`) or FetchMessage's entry (kafka-go's
 *    select). That ends the goroutine's previous message's span; when the
 *    channel's buffer holds a message, that one's span starts now.
 *  - Otherwise the goroutine blocks, and the fetching goroutine hands the next
 *    message straight to it: `runtime.send` (sender, sudog of the receiver,
 *    element), where the span starts for the receiver.
 * A span thus lasts from the hand-over to the goroutine's next receive on that
 * channel. runtime.chanrecv and runtime.send fire for every channel of the
 * process; unregistered channels cost one map lookup (the probe lands on the
 * stack-check jump: ~0.5 µs a hit). Attached only to binaries that have one of
 * the library functions.
 */
#include "go_abi.h"
#include "go_types.h"
#include "probe_stats.h"
#include "span_start.h"
#include "../kafka_sarama/sarama.h"
#include "../kafka_go/kafka_go.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

volatile const u64 off_hchan_qcount = OFF_ABSENT;   /* runtime.hchan.qcount */
volatile const u64 off_hchan_buf = OFF_ABSENT;      /* runtime.hchan.buf */
volatile const u64 off_hchan_elemsize = OFF_ABSENT; /* runtime.hchan.elemsize (uint16) */
volatile const u64 off_hchan_recvx = OFF_ABSENT;    /* runtime.hchan.recvx */
volatile const u64 off_sudog_g = OFF_ABSENT;        /* runtime.sudog.g */
/* sarama */
volatile const u64 off_pc_messages = OFF_ABSENT;    /* partitionConsumer.messages */
volatile const u64 off_pc_broker = OFF_ABSENT;      /* partitionConsumer.broker (*brokerConsumer) */
volatile const u64 off_bc_broker = OFF_ABSENT;      /* brokerConsumer.broker (*Broker) */
volatile const u64 off_broker_addr = OFF_ABSENT;    /* Broker.addr */
volatile const u64 off_cgs_parent = OFF_ABSENT;     /* consumerGroupSession.parent (*consumerGroup) */
volatile const u64 off_cg_group = OFF_ABSENT;       /* consumerGroup.groupID */
/* kafka-go */
volatile const u64 off_reader_msgs = OFF_ABSENT;    /* Reader.msgs (chan readerMessage) */
volatile const u64 off_reader_config = OFF_ABSENT;  /* Reader.config (ReaderConfig) */
volatile const u64 off_rconf_brokers = OFF_ABSENT;  /* ReaderConfig.Brokers */
volatile const u64 off_rconf_group = OFF_ABSENT;    /* ReaderConfig.GroupID */
volatile const u64 off_rmsg_message = OFF_ABSENT;   /* readerMessage.message */

/* A library's message channel and what is known of its consumer. */
struct channel {
	u8 library; /* enum kafka_library */
	u8 _pad;
	u16 group_len;
	u16 server_len;
	u16 _pad2;
	char group[KAFKA_GROUP_CAP];
	char server[KAFKA_SERVER_CAP];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1024);
	__type(key, u64); /* *hchan */
	__type(value, struct channel);
} channels SEC(".maps");

/* sarama: the consumer group a claim's goroutine consumes for, from
 * (*consumerGroupSession).consume's entry until that goroutine's ConsumeClaim asks
 * for the claim's channel. */
struct group {
	u16 len;
	char name[KAFKA_GROUP_CAP];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1024);
	__type(key, u64); /* goroutine g */
	__type(value, struct group);
} claim_groups SEC(".maps");

CALLS_BY(u64, struct kafka_record); /* receiving goroutine g: its current message */

SPAN_EVENTS(512 * 1024);

PER_CPU_SCRATCH(struct kafka_record);

/* Ends goroutine g's current message span, if any. */
static __always_inline void end_current(u64 g)
{
	struct kafka_record *c = bpf_map_lookup_elem(&calls, &g);
	if (!c)
		return;
	struct kafka_record *e = span_record_reserve(&events, sizeof(*e), &c->head);
	if (e) {
		__builtin_memcpy((u8 *)e + sizeof(e->head), (u8 *)c + sizeof(c->head), sizeof(*e) - sizeof(e->head));
		span_record_submit(e);
	}
	span_unpublish(g, 0);
	bpf_map_delete_elem(&calls, &g);
}

/* Starts the span of the message in element `elem` of channel `ch` for receiving
 * goroutine g, and publishes it as the span g serves. */
static __always_inline void start_message(u64 g, u64 elem, struct channel *ch)
{
	u32 zero = 0;
	struct kafka_record *r = bpf_map_lookup_elem(&scratch, &zero);
	if (!r)
		return;
	__builtin_memset(r, 0, sizeof(*r));
	struct span_ctx parent = {};
	if (ch->library == KAFKA_SARAMA) {
		u64 cm = read_u64(elem);
		if (!cm)
			return;
		sarama_consumer_message(cm, &r->msg, &parent);
	} else {
		if (off_rmsg_message == OFF_ABSENT)
			return;
		kafka_go_message(elem + off_rmsg_message, &r->msg, &parent);
	}
	span_head_start(&r->head, g, bpf_ktime_get_ns(), r->msg.has_context ? &parent : 0);
	r->operation = KAFKA_PROCESS;
	r->library = ch->library;
	r->batch = 1;
	r->group_len = ch->group_len;
	r->server_len = ch->server_len;
	__builtin_memcpy(r->group, ch->group, sizeof(r->group));
	__builtin_memcpy(r->server, ch->server, sizeof(r->server));
	bpf_map_update_elem(&calls, &g, r, BPF_ANY);
	span_publish(g, 0, &r->head.sc);
}

/* Goroutine g is about to receive from channel c: its previous message is done;
 * a message waiting in the buffer is the one it gets. */
static __always_inline void receive(u64 g, u64 c, struct channel *ch)
{
	end_current(g);
	if (off_hchan_qcount == OFF_ABSENT || off_hchan_buf == OFF_ABSENT || off_hchan_recvx == OFF_ABSENT ||
	    off_hchan_elemsize == OFF_ABSENT)
		return;
	if (!read_u64(c + off_hchan_qcount))
		return; /* it will block: runtime.send hands the next one over */
	u16 elemsize = 0;
	bpf_probe_read_user(&elemsize, sizeof(elemsize), (void *)(c + off_hchan_elemsize));
	u64 buf = read_u64(c + off_hchan_buf);
	u64 recvx = read_u64(c + off_hchan_recvx);
	if (buf)
		start_message(g, buf + recvx * elemsize, ch);
}

SEC("uprobe")
int sarama_consume_entry(struct go_regs *regs) /* (*consumerGroupSession).consume(s, [ctx,] topic, partition) */
{
	count_hit(HIT_ENTRY);
	if (off_cgs_parent == OFF_ABSENT || off_cg_group == OFF_ABSENT)
		return 0;
	u64 cg = read_u64(GO_ARG1(regs) + off_cgs_parent);
	if (!cg)
		return 0;
	struct group grp = {};
	grp.len = read_go_string(grp.name, KAFKA_GROUP_CAP, cg, off_cg_group);
	u64 g = GO_G(regs);
	bpf_map_update_elem(&claim_groups, &g, &grp, BPF_ANY);
	return 0;
}

/* Registers sarama partition consumer `child`'s message channel (once), with its
 * broker and, when known, its group. */
static __always_inline void sarama_channel(u64 child, struct group *grp)
{
	if (off_pc_messages == OFF_ABSENT)
		return;
	u64 c = read_u64(child + off_pc_messages);
	if (!c)
		return;
	struct channel *known = bpf_map_lookup_elem(&channels, &c);
	if (known) {
		if (grp && !known->group_len) {
			__builtin_memcpy(known->group, grp->name, sizeof(known->group));
			known->group_len = grp->len;
		}
		return;
	}
	struct channel ch = { .library = KAFKA_SARAMA };
	if (grp) {
		ch.group_len = grp->len;
		__builtin_memcpy(ch.group, grp->name, sizeof(ch.group));
	}
	if (off_pc_broker != OFF_ABSENT && off_bc_broker != OFF_ABSENT) {
		u64 bc = read_u64(child + off_pc_broker);
		u64 b = bc ? read_u64(bc + off_bc_broker) : 0;
		if (b)
			ch.server_len = read_go_string(ch.server, KAFKA_SERVER_CAP, b, off_broker_addr);
	}
	bpf_map_update_elem(&channels, &c, &ch, BPF_ANY);
}

SEC("uprobe")
int sarama_messages_entry(struct go_regs *regs) /* (*partitionConsumer).Messages(child) */
{
	count_hit(HIT_ENTRY);
	u64 g = GO_G(regs);
	struct group *grp = bpf_map_lookup_elem(&claim_groups, &g);
	sarama_channel(GO_ARG1(regs), grp);
	if (grp)
		bpf_map_delete_elem(&claim_groups, &g);
	return 0;
}

SEC("uprobe")
int sarama_parse_entry(struct go_regs *regs) /* (*partitionConsumer).parseResponse(child, response) */
{
	count_hit(HIT_ENTRY);
	sarama_channel(GO_ARG1(regs), 0);
	return 0;
}

SEC("uprobe")
int kafkago_fetch_entry(struct go_regs *regs) /* (*Reader).FetchMessage(r, ctx) */
{
	count_hit(HIT_ENTRY);
	u64 r = GO_ARG1(regs);
	u64 g = GO_G(regs);
	if (off_reader_msgs == OFF_ABSENT) {
		end_current(g);
		return 0;
	}
	u64 c = read_u64(r + off_reader_msgs);
	if (!c)
		return 0;
	struct channel *ch = bpf_map_lookup_elem(&channels, &c);
	if (!ch) {
		struct channel fresh = { .library = KAFKA_KAFKA_GO };
		if (off_reader_config != OFF_ABSENT) {
			u64 conf = r + off_reader_config;
			fresh.group_len = read_go_string(fresh.group, KAFKA_GROUP_CAP, conf, off_rconf_group);
			if (off_rconf_brokers != OFF_ABSENT) {
				u64 brokers = read_u64(conf + off_rconf_brokers);
				if (brokers)
					fresh.server_len = read_go_string(fresh.server, KAFKA_SERVER_CAP, brokers, 0);
			}
		}
		bpf_map_update_elem(&channels, &c, &fresh, BPF_ANY);
		ch = bpf_map_lookup_elem(&channels, &c);
		if (!ch)
			return 0;
	}
	receive(g, c, ch);
	return 0;
}

SEC("uprobe")
int chanrecv_entry(struct go_regs *regs) /* runtime.chanrecv(c, ep, block) */
{
	count_hit(HIT_ENTRY);
	u64 c = GO_ARG1(regs);
	struct channel *ch = bpf_map_lookup_elem(&channels, &c);
	if (!ch || ch->library != KAFKA_SARAMA)
		return 0;
	receive(GO_G(regs), c, ch);
	return 0;
}

SEC("uprobe")
int send_entry(struct go_regs *regs) /* runtime.send(c, sg, ep, unlockf, skip) */
{
	count_hit(HIT_ENTRY);
	u64 c = GO_ARG1(regs);
	struct channel *ch = bpf_map_lookup_elem(&channels, &c);
	if (!ch || off_sudog_g == OFF_ABSENT)
		return 0;
	u64 g = read_u64(GO_ARG2(regs) + off_sudog_g);
	u64 ep = GO_ARG3(regs);
	if (!g || !ep)
		return 0;
	end_current(g);
	start_message(g, ep, ch);
	return 0;
}
