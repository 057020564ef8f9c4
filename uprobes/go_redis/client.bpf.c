/* gosight — go-redis v9 client probe: one CLIENT span per command, and one per
 * pipeline or MULTI/EXEC transaction (tests/go-apps/redisapp/PROBING.md).
 *
 * Every command a *redis.Client runs ends up, after the hooks, in one of these
 * functions of its baseClient, on the caller's goroutine, retries inside:
 *  - (*baseClient).processStartingAt (v9.23; `process` is inlined into its
 *    `-fm` wrapper there) or (*baseClient).process (older): one command
 *      c ARG1, ctx ARG2:3, cmd (Cmder itab, data) ARG4:5
 *  - (*baseClient).processPipeline, processTxPipeline (MULTI first, EXEC last)
 *      c ARG1, ctx ARG2:3, cmds []Cmder ARG4 (ptr) ARG5 (len)
 * Each gets an entry probe and a probe on every RET (never a uretprobe): 2 uprobe
 * hits per command or pipeline, the entry on the stack check's jump (cheap).
 *
 * Calls nest on one goroutine: the first command on a new connection runs the
 * connection's set-up (HELLO, CLIENT SETINFO, AUTH, SELECT: commands and a
 * pipeline of their own) inside it. So a call is kept by (goroutine, its place
 * on the goroutine's stack): `stack.hi - SP`, which the entry and the RET see
 * alike (SP points at the return address in both) even when the stack was
 * copied to grow in between. Beside them, per goroutine, the places (and return
 * addresses) of its calls in progress, innermost last: a nested call is a child
 * of the innermost one that still encloses it (a smaller place whose return
 * address is still in the stack), an outer one of the server span the goroutine
 * serves, else of the one its context derives from. A call that never returned
 * (a panic, recovered further up) is dropped by the next entry that finds it no
 * longer enclosing; the entry again after stack growth (same place, same
 * command) is ignored.
 *
 * Entry: starts the span, reads the client's Options.Addr and Options.DB and each
 * command's name, first argument and argument count (baseCmd.args: args[0] and
 * args[1] when they are strings). RET: the error (the returned one; for a
 * pipeline the first command error that is not redis.Nil) with the string at its
 * data pointer, which is the message of go-redis's own errors (proto.RedisError
 * is a string; v9.23's typed *proto.XxxError start with `msg string`): the
 * decoder uses it only for those types.
 */
#include "go_abi.h"
#include "go_types.h"
#include "probe_stats.h"
#include "span_start.h"
#include "records.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

volatile const u64 off_client_opt = OFF_ABSENT;   /* go-redis/v9.baseClient.opt (*Options) */
volatile const u64 off_options_addr = OFF_ABSENT; /* go-redis/v9.Options.Addr */
volatile const u64 off_options_db = OFF_ABSENT;   /* go-redis/v9.Options.DB */
volatile const u64 off_cmd_args = OFF_ABSENT;     /* go-redis/v9.baseCmd.args ([]interface{}) */
volatile const u64 off_cmd_err = OFF_ABSENT;      /* go-redis/v9.baseCmd.err */

/* internal/abi.Type.Kind_ (offset 23 since Go 1.x's register ABI; the low 5 bits
 * are the kind in every release) and the kind of a string. */
#define GO_TYPE_KIND_OFFSET 23
#define GO_KIND_MASK 0x1f
#define GO_KIND_STRING 24

/* runtime.g starts with `stack stack` ({lo, hi uintptr}), then stackguard0 at
 * 16, which every function's stack check reads (`CMPQ SP, 0x10(R14)`): an ABI
 * fact of every Go release, not a layout the offsets database tracks. */
#define G_STACK_HI 8

/* Where a call lives: its goroutine and its place on the goroutine's stack. */
struct call_key {
	u64 g;
	u64 place; /* stack.hi - SP at the entry (and the RET) */
};

#define MAX_NESTED 4

struct frame {
	u64 place;
	u64 ret; /* the return address at SP (amd64; 0 elsewhere: not checked) */
};

/* A goroutine's calls in progress, innermost last. */
struct frames {
	u64 n;
	struct frame f[MAX_NESTED];
};

struct call {
	u64 ident;    /* the command (Cmder data) or the commands' array */
	u64 cmds;     /* pipelines: the []Cmder array and its length, for the RET */
	s64 ncmds;
	struct redis_record rec;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, struct call_key);
	__type(value, struct call);
} calls SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, u64);
	__type(value, struct frames);
} in_progress SEC(".maps");

SPAN_EVENTS(1024 * 1024);

/* Per-CPU scratch: a struct call does not fit on the BPF stack. */
PER_CPU_SCRATCH(struct call);

/* A struct call of zeros, never written: copied over the scratch to clear it
 * (too big for a memset). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, struct call);
} zeros SEC(".maps");

#if defined(__TARGET_ARCH_x86)
#define RETURN_ADDRESS(regs) read_u64((regs)->sp)
#else
#define RETURN_ADDRESS(regs) 0
#endif

/* The call's place on its goroutine's stack; 0 when unreadable. */
static __always_inline u64 place_of(struct go_regs *regs)
{
	u64 hi = read_u64(GO_G(regs) + G_STACK_HI);
	return hi > regs->sp ? hi - regs->sp : 0;
}

/* Copies the interface{} value at `at` into dst when it holds a string; returns
 * the string's length (255 at most), 0 otherwise. */
static __always_inline u8 copy_string_arg(char *dst, u32 cap, u64 at)
{
	struct go_iface v = {};
	if (bpf_probe_read_user(&v, sizeof(v), (void *)at) || !v.tab || !v.data)
		return 0;
	u8 kind = 0;
	bpf_probe_read_user(&kind, 1, (void *)(v.tab + GO_TYPE_KIND_OFFSET));
	if ((kind & GO_KIND_MASK) != GO_KIND_STRING)
		return 0;
	struct go_string s = {};
	if (bpf_probe_read_user(&s, sizeof(s), (void *)v.data))
		return 0;
	u32 n = copy_go_string(dst, cap, s.ptr, s.len);
	return n > 255 ? 255 : n;
}

/* Reads the command whose *baseCmd (any *XxxCmd: baseCmd is its first field) is
 * `cmd` into `out`. */
static __always_inline void read_command(u64 cmd, struct redis_command *out)
{
	struct go_string args = {}; /* ptr, len of the []interface{} */
	if (!cmd || off_cmd_args == OFF_ABSENT ||
	    bpf_probe_read_user(&args, sizeof(args), (void *)(cmd + off_cmd_args)) || args.len <= 0)
		return;
	out->args = args.len > 0xffff ? 0xffff : (u32)args.len;
	out->name_len = copy_string_arg(out->name, REDIS_NAME_CAP, args.ptr);
	if (args.len > 1)
		out->sub_len = copy_string_arg(out->sub, REDIS_SUB_CAP, args.ptr + 16);
}

/* Starts a call of `kind` on the current goroutine, unless it is the entry again
 * after stack growth; fills what every kind reads (the client's address and
 * database). Returns the scratch call to finish (then `commit`), or NULL. */
static __always_inline struct call *begin(struct go_regs *regs, u8 kind, u64 ident)
{
	u64 g = GO_G(regs);
	u64 place = place_of(regs);
	if (!place)
		return 0;
	u64 hi = regs->sp + place;
	struct frame me = { .place = place, .ret = RETURN_ADDRESS(regs) };
	struct frames fr = {};
	struct frames *known = bpf_map_lookup_elem(&in_progress, &g);
	if (known)
		fr = *known;
	/* Drop what no longer encloses this call; find the innermost that does. */
	const struct span_ctx *parent = 0;
	for (int i = 0; i < MAX_NESTED; i++) {
		if (fr.n == 0 || fr.n > MAX_NESTED)
			break;
		struct frame top = fr.f[(fr.n - 1) & (MAX_NESTED - 1)];
		struct call_key k = { .g = g, .place = top.place };
		struct call *outer = bpf_map_lookup_elem(&calls, &k);
		if (top.place == place && outer && outer->ident == ident && outer->rec.kind == kind && top.ret == me.ret)
			return 0; /* the same entry after stack growth */
		if (outer && top.place < place && (!top.ret || read_u64(hi - top.place) == top.ret)) {
			parent = &outer->rec.head.sc;
			break;
		}
		if (outer)
			bpf_map_delete_elem(&calls, &k); /* never returned (a panic) */
		fr.n--;
	}
	if (fr.n < MAX_NESTED) {
		fr.f[fr.n & (MAX_NESTED - 1)] = me;
		fr.n++;
	}
	bpf_map_update_elem(&in_progress, &g, &fr, BPF_ANY);

	u32 zero = 0;
	struct call *c = bpf_map_lookup_elem(&scratch, &zero);
	const struct call *blank = bpf_map_lookup_elem(&zeros, &zero);
	if (!c || !blank)
		return 0;
	u64 start_ns = bpf_ktime_get_ns();
	bpf_probe_read_kernel(c, sizeof(*c), blank);
	c->ident = ident;
	if (!parent) {
		struct active_span *as = find_parent_span(bpf_get_current_pid_tgid() >> 32, g, GO_ARG3(regs));
		parent = as ? &as->sc : 0;
	}
	span_head_start(&c->rec.head, g, start_ns, parent);
	c->rec.kind = kind;
	c->rec.db = -1;
	u64 client = GO_ARG1(regs);
	u64 opt = client && off_client_opt != OFF_ABSENT ? read_u64(client + off_client_opt) : 0;
	if (opt) {
		c->rec.addr_len = read_go_string(c->rec.addr, REDIS_ADDR_CAP, opt, off_options_addr);
		if (off_options_db != OFF_ABSENT)
			c->rec.db = (s64)read_u64(opt + off_options_db);
	}
	return c;
}

/* Keeps call `c` of the current goroutine at its place. */
static __always_inline void commit(struct go_regs *regs, struct call *c)
{
	struct call_key key = { .g = GO_G(regs), .place = place_of(regs) };
	bpf_map_update_elem(&calls, &key, c, BPF_ANY);
}

SEC("uprobe")
int process_entry(struct go_regs *regs)
{
	count_hit(HIT_ENTRY);
	u64 cmd = GO_ARG5(regs);
	struct call *c = begin(regs, REDIS_COMMAND, cmd);
	if (!c)
		return 0;
	c->rec.count = 1;
	read_command(cmd, &c->rec.cmds[0]);
	commit(regs, c);
	return 0;
}

static __always_inline int pipeline_entry(struct go_regs *regs, u8 kind)
{
	count_hit(HIT_ENTRY);
	u64 cmds = GO_ARG4(regs);
	s64 n = (s64)GO_ARG5(regs);
	struct call *c = begin(regs, kind, cmds);
	if (!c)
		return 0;
	c->cmds = cmds;
	c->ncmds = n;
	c->rec.count = n < 0 ? 0 : n > 0xffff ? 0xffff : (u16)n;
	for (u32 i = 0; i < REDIS_BATCH_CAP; i++) {
		if (i >= n)
			break;
		read_command(read_u64(cmds + i * 16 + 8), &c->rec.cmds[i]);
	}
	commit(regs, c);
	return 0;
}

SEC("uprobe")
int pipeline_entry_plain(struct go_regs *regs)
{
	return pipeline_entry(regs, REDIS_PIPELINE);
}

SEC("uprobe")
int pipeline_entry_tx(struct go_regs *regs)
{
	return pipeline_entry(regs, REDIS_TX);
}

/* Whether the error (tab, data) is redis.Nil: proto.RedisError("redis: nil"). */
static __always_inline int is_redis_nil(u64 data)
{
	struct go_string s = {};
	if (!data || bpf_probe_read_user(&s, sizeof(s), (void *)data) || s.len != 10)
		return 0;
	char m[10] = {};
	if (bpf_probe_read_user(m, sizeof(m), (void *)s.ptr))
		return 0;
	return m[0] == 'r' && m[1] == 'e' && m[2] == 'd' && m[3] == 'i' && m[4] == 's' && m[5] == ':' &&
	       m[6] == ' ' && m[7] == 'n' && m[8] == 'i' && m[9] == 'l';
}

/* A pipeline's error: the first of its commands' errors that is not redis.Nil
 * (processPipeline returns the first error, redis.Nil included). */
static __always_inline void pipeline_error(const struct call *c, struct go_iface *err)
{
	if (off_cmd_err == OFF_ABSENT)
		return;
	for (u32 i = 0; i < REDIS_BATCH_CAP; i++) {
		if (i >= c->ncmds)
			break;
		u64 cmd = read_u64(c->cmds + i * 16 + 8);
		struct go_iface e = {};
		if (!cmd || bpf_probe_read_user(&e, sizeof(e), (void *)(cmd + off_cmd_err)) || !e.tab)
			continue;
		if (is_redis_nil(e.data))
			continue;
		*err = e;
		return;
	}
}

SEC("uprobe")
int process_return(struct go_regs *regs)
{
	count_hit(HIT_RETURN);
	u64 g = GO_G(regs);
	struct call_key key = { .g = g, .place = place_of(regs) };
	struct call *c = bpf_map_lookup_elem(&calls, &key);
	if (!c)
		return 0;
	struct frames *fr = bpf_map_lookup_elem(&in_progress, &g);
	if (fr && fr->n > 0 && fr->n <= MAX_NESTED && fr->f[(fr->n - 1) & (MAX_NESTED - 1)].place == key.place) {
		if (fr->n == 1)
			bpf_map_delete_elem(&in_progress, &g);
		else
			fr->n--;
	}
	struct go_iface err = { .tab = GO_ARG1(regs), .data = GO_ARG2(regs) }; /* error */
	if (c->rec.kind != REDIS_COMMAND) {
		struct go_iface first = {};
		pipeline_error(c, &first);
		if (first.tab)
			err = first;
	}
	struct redis_record *e = span_record_reserve(&events, sizeof(*e), &c->rec.head);
	if (e) {
		u64 head = sizeof(struct span_head);
		bpf_probe_read_kernel((void *)e + head, sizeof(*e) - head, (void *)&c->rec + head);
		e->error_tab = err.tab;
		e->error_len = 0;
		if (err.tab && err.data) {
			struct go_string s = {};
			if (!bpf_probe_read_user(&s, sizeof(s), (void *)err.data))
				e->error_len = copy_go_string(e->error, REDIS_ERROR_CAP, s.ptr, s.len);
		}
		span_record_submit(e);
	}
	bpf_map_delete_elem(&calls, &key);
	return 0;
}
