/* gosight — database/sql client probe: one CLIENT span per statement.
 *
 * Every database/sql call runs exactly one of these functions, on the caller's
 * goroutine (tests/go-apps/sqlapp/PROBING.md):
 *  - (*DB).queryDC   Query/QueryRow of DB, Conn and Tx   ctx ARG2:3, dc ARG6, query ARG8:9
 *  - (*DB).execDC    Exec of DB, Conn and Tx              ctx ARG2:3, dc ARG4, query ARG6:7
 *  - (*Stmt).QueryContext / ExecContext (prepared)        s ARG1, ctx ARG2:3, args ARG4:5
 *  - (*DB).beginDC   BEGIN                                ctx ARG2:3, dc ARG4
 *  - (*Tx).Commit    COMMIT                               tx ARG1
 *  - (*Tx).rollback  ROLLBACK                             tx ARG1
 * Each gets an entry probe and a probe on every RET (never a uretprobe): 2 uprobe
 * hits per statement. Calls are keyed by goroutine; the entry is idempotent (the
 * stack-growth prologue re-runs it: same goroutine, same function, same
 * statement → ignored).
 *
 * Entry: starts the span (parent: the server span the goroutine serves, else the
 * one the context derives from), copies the statement's text (bounded) and the
 * number of arguments, names the driver by the itab of the connection
 * (driverConn.ci) and reads its server and database (drivers.h). RET: the
 * error's itab and the server's code in it, the record.
 */
#include "go_abi.h"
#include "go_types.h"
#include "probe_stats.h"
#include "span_start.h"
#include "drivers.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

volatile const u64 off_dc_ci = OFF_ABSENT;        /* database/sql.driverConn.ci (driver.Conn) */
volatile const u64 off_stmt_query = OFF_ABSENT;   /* database/sql.Stmt.query */
volatile const u64 off_stmt_css = OFF_ABSENT;     /* database/sql.Stmt.css ([]connStmt) */
volatile const u64 off_connstmt_dc = OFF_ABSENT;  /* database/sql.connStmt.dc */
volatile const u64 off_tx_dc = OFF_ABSENT;        /* database/sql.Tx.dc */
volatile const u64 off_tx_ctx = OFF_ABSENT;       /* database/sql.Tx.ctx */
volatile const u64 off_tx_done = OFF_ABSENT;      /* database/sql.Tx.done (atomic.Bool) */
struct call {
	struct span_head head;
	u64 ident; /* what the entry saw: the query text, *Stmt, *driverConn or *Tx */
	struct sql_statement stmt;
};

CALLS_BY(u64, struct call); /* goroutine g */

SPAN_EVENTS(512 * 1024);

/* Per-CPU scratch: a struct call does not fit on the BPF stack. */
PER_CPU_SCRATCH(struct call);

/* The number of arguments of queryDC / execDC: on amd64 the args slice no longer
 * fits in registers and goes whole on the stack (8(SP) at entry: ptr, len, cap);
 * on arm64 it is in registers. */
#if defined(__TARGET_ARCH_x86)
#define QUERY_DC_ARGS(r) ((s64)read_u64((r)->sp + 16))
#define EXEC_DC_ARGS(r) ((s64)read_u64((r)->sp + 16))
#else
#define QUERY_DC_ARGS(r) ((s64)(r)->regs[10])
#define EXEC_DC_ARGS(r) ((s64)(r)->regs[8])
#endif

/* The driver of a *driverConn (by its connection's itab, driverConn.ci), and the
 * server and database it is connected to. */
static __always_inline void read_driver_conn(u64 dc, struct sql_statement *st)
{
	struct go_iface ci = {};
	if (!dc || off_dc_ci == OFF_ABSENT || bpf_probe_read_user(&ci, sizeof(ci), (void *)(dc + off_dc_ci)))
		return;
	st->system = sql_system_of(ci.tab);
	read_sql_target(st->system, ci.data, &st->target);
}

/* Starts a call of `kind` on the current goroutine, unless it is the entry again
 * after stack growth. Returns the scratch call to fill (then `commit`), or NULL. */
static __always_inline struct call *begin(struct go_regs *regs, u8 kind, u64 ident, u64 ctx)
{
	u64 g = GO_G(regs);
	struct call *prev = bpf_map_lookup_elem(&calls, &g);
	if (prev && prev->stmt.kind == kind && prev->ident == ident)
		return 0;
	u32 zero = 0;
	struct call *c = bpf_map_lookup_elem(&scratch, &zero);
	if (!c)
		return 0;
	u64 start_ns = bpf_ktime_get_ns();
	c->ident = ident;
	__builtin_memset(&c->stmt, 0, sizeof(c->stmt));
	c->stmt.kind = kind;
	c->stmt.args = -1;
	struct active_span *as = find_parent_span(bpf_get_current_pid_tgid() >> 32, g, ctx);
	span_head_start(&c->head, g, start_ns, as ? &as->sc : 0);
	return c;
}

static __always_inline void commit(struct go_regs *regs, struct call *c)
{
	u64 g = GO_G(regs);
	bpf_map_update_elem(&calls, &g, c, BPF_ANY);
}

/* Copies the statement text (ptr, len) into the call. */
static __always_inline void copy_query(struct sql_statement *st, u64 ptr, s64 len)
{
	st->query_len = copy_go_string(st->query, SQL_QUERY_CAP, ptr, len);
}

static __always_inline int is_pgx(u8 kind)
{
	return kind == SQL_PGX_QUERY || kind == SQL_PGX_EXEC;
}

/* Sends the record of call `c` of goroutine `g`, which returned error (tab,
 * data), and forgets the call. */
static __always_inline int emit(u64 g, struct call *c, u64 err_tab, u64 err_data)
{
	struct sql_record *e = span_record_reserve(&events, sizeof(*e), &c->head);
	if (e) {
		e->error_tab = err_tab;
		__builtin_memset(&e->error, 0, sizeof(e->error));
		read_sql_error(err_tab, err_data, &e->error);
		__builtin_memcpy(&e->stmt, &c->stmt, sizeof(e->stmt));
		span_record_submit(e);
	}
	bpf_map_delete_elem(&calls, &g);
	return 0;
}

/* Ends the goroutine's call, if it is one of pgx's own API (`pgx`) or of
 * database/sql, with the returned error (tab, data). */
static __always_inline int end_call(struct go_regs *regs, int pgx, u64 err_tab, u64 err_data)
{
	count_hit(HIT_RETURN);
	u64 g = GO_G(regs);
	struct call *c = bpf_map_lookup_elem(&calls, &g);
	if (!c || is_pgx(c->stmt.kind) != pgx)
		return 0;
	return emit(g, c, err_tab, err_data);
}

SEC("uprobe")
int query_dc_entry(struct go_regs *regs)
{
	count_hit(HIT_ENTRY);
	u64 qptr = GO_ARG8(regs);
	struct call *c = begin(regs, SQL_QUERY, qptr, GO_ARG3(regs));
	if (!c)
		return 0;
	read_driver_conn(GO_ARG6(regs), &c->stmt);
	c->stmt.args = QUERY_DC_ARGS(regs);
	copy_query(&c->stmt, qptr, (s64)GO_ARG9(regs));
	commit(regs, c);
	return 0;
}

SEC("uprobe")
int query_dc_return(struct go_regs *regs)
{
	return end_call(regs, 0, GO_ARG2(regs), GO_ARG3(regs)); /* (*Rows, error) */
}

SEC("uprobe")
int exec_dc_entry(struct go_regs *regs)
{
	count_hit(HIT_ENTRY);
	u64 qptr = GO_ARG6(regs);
	struct call *c = begin(regs, SQL_EXEC, qptr, GO_ARG3(regs));
	if (!c)
		return 0;
	read_driver_conn(GO_ARG4(regs), &c->stmt);
	c->stmt.args = EXEC_DC_ARGS(regs);
	copy_query(&c->stmt, qptr, (s64)GO_ARG7(regs));
	commit(regs, c);
	return 0;
}

SEC("uprobe")
int exec_dc_return(struct go_regs *regs)
{
	return end_call(regs, 0, GO_ARG3(regs), GO_ARG4(regs)); /* (Result, error) */
}

/* A prepared statement: its text in Stmt.query, its driver by the connection it
 * was first prepared on (Stmt.css[0].dc; none for a Tx's or Conn's statement). */
static __always_inline int stmt_entry(struct go_regs *regs, u8 kind)
{
	count_hit(HIT_ENTRY);
	u64 s = GO_ARG1(regs);
	struct call *c = begin(regs, kind, s, GO_ARG3(regs));
	if (!c)
		return 0;
	c->stmt.args = (s64)GO_ARG5(regs);
	c->stmt.query_len = read_go_string(c->stmt.query, SQL_QUERY_CAP, s, off_stmt_query);
	if (off_stmt_css != OFF_ABSENT && off_connstmt_dc != OFF_ABSENT) {
		u64 css = read_u64(s + off_stmt_css);
		s64 n = (s64)read_u64(s + off_stmt_css + 8);
		if (css && n > 0)
			read_driver_conn(read_u64(css + off_connstmt_dc), &c->stmt);
	}
	commit(regs, c);
	return 0;
}

SEC("uprobe")
int stmt_query_entry(struct go_regs *regs)
{
	return stmt_entry(regs, SQL_STMT_QUERY);
}

SEC("uprobe")
int stmt_query_return(struct go_regs *regs)
{
	return end_call(regs, 0, GO_ARG2(regs), GO_ARG3(regs)); /* (*Rows, error) */
}

SEC("uprobe")
int stmt_exec_entry(struct go_regs *regs)
{
	return stmt_entry(regs, SQL_STMT_EXEC);
}

SEC("uprobe")
int stmt_exec_return(struct go_regs *regs)
{
	return end_call(regs, 0, GO_ARG3(regs), GO_ARG4(regs)); /* (Result, error) */
}

SEC("uprobe")
int begin_dc_entry(struct go_regs *regs)
{
	count_hit(HIT_ENTRY);
	u64 dc = GO_ARG4(regs);
	struct call *c = begin(regs, SQL_BEGIN, dc, GO_ARG3(regs));
	if (!c)
		return 0;
	read_driver_conn(dc, &c->stmt);
	commit(regs, c);
	return 0;
}

SEC("uprobe")
int begin_dc_return(struct go_regs *regs)
{
	return end_call(regs, 0, GO_ARG2(regs), GO_ARG3(regs)); /* (*Tx, error) */
}

/* The end of a transaction: parent through the transaction's context (Commit
 * runs on the caller's goroutine; a rollback on cancellation on tx.awaitDone's). */
static __always_inline int tx_entry(struct go_regs *regs, u8 kind)
{
	count_hit(HIT_ENTRY);
	u64 tx = GO_ARG1(regs);
	if (kind == SQL_ROLLBACK && off_tx_done != OFF_ABSENT) {
		/* awaitDone's rollback after Commit/Rollback: returns ErrTxDone, no statement. */
		u32 done = 0;
		bpf_probe_read_user(&done, sizeof(done), (void *)(tx + off_tx_done));
		if (done)
			return 0;
	}
	u64 ctx = off_tx_ctx == OFF_ABSENT ? 0 : read_u64(tx + off_tx_ctx + 8);
	struct call *c = begin(regs, kind, tx, ctx);
	if (!c)
		return 0;
	if (off_tx_dc != OFF_ABSENT)
		read_driver_conn(read_u64(tx + off_tx_dc), &c->stmt);
	commit(regs, c);
	return 0;
}

SEC("uprobe")
int commit_entry(struct go_regs *regs)
{
	return tx_entry(regs, SQL_COMMIT);
}

SEC("uprobe")
int rollback_entry(struct go_regs *regs)
{
	return tx_entry(regs, SQL_ROLLBACK);
}

SEC("uprobe")
int tx_end_return(struct go_regs *regs)
{
	return end_call(regs, 0, GO_ARG1(regs), GO_ARG2(regs)); /* error */
}

/* pgx v5's own API (pgx.Conn, pgxpool), without database/sql: Query (QueryRow and
 * pgxpool's go through it; it ends when its rows close, below) and Exec (a
 * pgx.Tx's BEGIN, COMMIT and ROLLBACK too): c ARG1, ctx ARG2:3, sql ARG4:5,
 * args ARG6:7:8. pgx's database/sql driver calls
 * them too, inside database/sql's call on the same goroutine: that statement's
 * span is database/sql's, so these stand back. */

/* Statements prepared under a name (Conn.Prepare), by the name's string, so that
 * a Query by name shows the statement's text. */
struct prepared_name {
	u64 ptr;
	s64 len;
};

struct prepared_text {
	u16 len;
	u16 _pad[3];
	char text[SQL_QUERY_CAP];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1024);
	__type(key, struct prepared_name);
	__type(value, struct prepared_text);
} pgx_prepared SEC(".maps");

static __always_inline int pgx_entry(struct go_regs *regs, u8 kind)
{
	count_hit(HIT_ENTRY);
	u64 g = GO_G(regs);
	struct call *prev = bpf_map_lookup_elem(&calls, &g);
	if (prev && !is_pgx(prev->stmt.kind))
		return 0; /* inside database/sql (pgx's stdlib driver) */
	struct prepared_name name = { .ptr = GO_ARG4(regs), .len = (s64)GO_ARG5(regs) };
	struct call *c = begin(regs, kind, name.ptr, GO_ARG3(regs));
	if (!c)
		return 0;
	c->stmt.system = SQL_SYSTEM_PGX;
	c->stmt.args = (s64)GO_ARG7(regs);
	read_pgx_conn(GO_ARG1(regs), &c->stmt.target);
	struct prepared_text *p = bpf_map_lookup_elem(&pgx_prepared, &name);
	if (p) {
		__builtin_memcpy(c->stmt.query, p->text, SQL_QUERY_CAP);
		c->stmt.query_len = p->len;
	} else {
		copy_query(&c->stmt, name.ptr, name.len);
	}
	commit(regs, c);
	return 0;
}

SEC("uprobe")
int pgx_query_entry(struct go_regs *regs)
{
	return pgx_entry(regs, SQL_PGX_QUERY);
}

SEC("uprobe")
int pgx_exec_entry(struct go_regs *regs)
{
	return pgx_entry(regs, SQL_PGX_EXEC);
}

SEC("uprobe")
int pgx_exec_return(struct go_regs *regs)
{
	return end_call(regs, 1, GO_ARG3(regs), GO_ARG4(regs)); /* (CommandTag, error) */
}

/* A Query's rows carry its outcome: the server's error (or the cancellation) of
 * a query arrives while they are read, after Query returned. So a pgx Query ends
 * when its rows close — (*baseRows).Close, which QueryRow's Scan and a Rows loop
 * run on the querying goroutine — with the rows' error (baseRows.err), else the
 * one their result reader recorded (ResultReader.err: what reading the rows
 * failed on, which Close is about to return). Close runs again on closed rows (a
 * deferred Close): ignored (baseRows.closed). */
SEC("uprobe")
int pgx_rows_close_entry(struct go_regs *regs)
{
	count_hit(HIT_RETURN);
	u64 rows = GO_ARG1(regs);
	if (!rows)
		return 0;
	if (off_pgx_rows_closed != OFF_ABSENT) {
		u8 closed = 0;
		bpf_probe_read_user(&closed, sizeof(closed), (void *)(rows + off_pgx_rows_closed));
		if (closed)
			return 0;
	}
	u64 g = GO_G(regs);
	struct call *c = bpf_map_lookup_elem(&calls, &g);
	if (!c || c->stmt.kind != SQL_PGX_QUERY)
		return 0;
	struct go_iface err = {};
	if (off_pgx_rows_err != OFF_ABSENT)
		bpf_probe_read_user(&err, sizeof(err), (void *)(rows + off_pgx_rows_err));
	if (!err.tab && off_pgx_rows_reader != OFF_ABSENT && off_pgx_reader_err != OFF_ABSENT) {
		u64 rr = read_u64(rows + off_pgx_rows_reader);
		if (rr)
			bpf_probe_read_user(&err, sizeof(err), (void *)(rr + off_pgx_reader_err));
	}
	return emit(g, c, err.tab, err.data);
}

/* (*pgx.Conn).Prepare(ctx, name, sql): c ARG1, ctx ARG2:3, name ARG4:5, sql ARG6:7.
 * One hit, no span (the statement's span is its Query or Exec). */
SEC("uprobe")
int pgx_prepare_entry(struct go_regs *regs)
{
	count_hit(HIT_ENTRY);
	struct prepared_name name = { .ptr = GO_ARG4(regs), .len = (s64)GO_ARG5(regs) };
	if (!name.ptr || name.len <= 0)
		return 0;
	struct prepared_text p = {};
	p.len = copy_go_string(p.text, SQL_QUERY_CAP, GO_ARG6(regs), (s64)GO_ARG7(regs));
	if (p.len)
		bpf_map_update_elem(&pgx_prepared, &name, &p, BPF_ANY);
	return 0;
}
