/* gosight — the SQL client probe's ring-buffer record: one per statement a
 * client runs through database/sql or pgx's own API (client.bpf.c). The Rust side (`gosight_uprobes::records`) is generated from
 * this file by build.rs.
 */
#pragma once

#include "span_head.h"
#include "go_net.h"

#define SQL_QUERY_CAP 256
#define SQL_NAMESPACE_CAP 64
#define SQL_CODE_CAP 8

/* Which probed function the span comes from. */
enum sql_call_kind {
	SQL_QUERY = 0,     /* (*DB).queryDC: Query, QueryRow of DB, Conn and Tx */
	SQL_EXEC = 1,      /* (*DB).execDC: Exec of DB, Conn and Tx */
	SQL_STMT_QUERY = 2,/* (*Stmt).QueryContext: a prepared statement's Query */
	SQL_STMT_EXEC = 3, /* (*Stmt).ExecContext */
	SQL_BEGIN = 4,     /* (*DB).beginDC */
	SQL_COMMIT = 5,    /* (*Tx).Commit */
	SQL_ROLLBACK = 6,  /* (*Tx).rollback */
	SQL_PGX_QUERY = 7, /* pgx v5's own API: (*pgx.Conn).Query (QueryRow, pgxpool's) */
	SQL_PGX_EXEC = 8,  /* (*pgx.Conn).Exec (also BEGIN, COMMIT, ROLLBACK of a pgx.Tx) */
};

/* The driver, by the itab of the connection (driverConn.ci). */
enum sql_system {
	SQL_SYSTEM_UNKNOWN = 0,
	SQL_SYSTEM_PGX = 1,   /* *github.com/jackc/pgx/v5/stdlib.Conn */
	SQL_SYSTEM_PQ = 2,    /* *github.com/lib/pq.conn */
	SQL_SYSTEM_MYSQL = 3, /* *github.com/go-sql-driver/mysql.mysqlConn */
};

/* The server a statement went to and the database (db.namespace). */
struct sql_target {
	struct ip_port peer;
	u16 namespace_len;
	u16 _pad[3];
	char namespace[SQL_NAMESPACE_CAP];
};

/* The server's code in a failed statement's error. */
struct sql_error {
	u16 number;  /* MySQL's error number; 0 = none */
	u16 code_len;
	u32 _pad;
	char code[SQL_CODE_CAP]; /* PostgreSQL's SQLSTATE */
};

/* What the entry of a statement saw. */
struct sql_statement {
	s64 args;      /* number of query arguments; -1 = unknown */
	u8 kind;       /* enum sql_call_kind */
	u8 system;     /* enum sql_system */
	u16 query_len; /* the Go string's full length (above the buffer: cut) */
	u32 _pad;
	struct sql_target target;
	char query[SQL_QUERY_CAP];
};

struct sql_record {
	struct span_head head;
	u64 error_tab; /* itab of the returned error; 0 = nil */
	struct sql_error error;
	struct sql_statement stmt;
};
