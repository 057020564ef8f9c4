//! SQL client probe: one CLIENT span per statement run through database/sql —
//! `(*DB).queryDC`, `(*DB).execDC`, `(*Stmt).QueryContext`/`ExecContext`, and the
//! transaction's `(*DB).beginDC`, `(*Tx).Commit`, `(*Tx).rollback` — or through
//! pgx v5's own API (`pgx.Conn`, `pgxpool`): `(*pgx.Conn).Query` and `.Exec`, with
//! `.Prepare` remembered so that a statement run by name shows its text. When
//! pgx's database/sql driver calls pgx's API, the span is database/sql's alone.
//! C program: `client.bpf.c` beside this file; its record: `records.h`.
//!
//! Cost: 2 uprobe hits per statement (the entry and the RET taken); a
//! database/sql transaction also pays 2 for the rollback database/sql runs (as a
//! no-op) once it is done; pgx's driver 2 more per statement (pgx's own Query or
//! Exec under database/sql's) — unless it is the binary's only database/sql
//! driver: database/sql's functions are then left out and pgx's make the spans —
//! and pgx 1 per Prepare (which its statement cache also calls, once per new
//! statement and connection).
//!
//! The driver (`db.system.name`) is known by the itab of the connection the
//! statement ran on (`driverConn.ci`): pgx's stdlib and lib/pq are PostgreSQL,
//! go-sql-driver/mysql is MySQL (it cannot tell MariaDB apart). What the probe
//! reads of a driver — the server's address, the database, the server's error
//! code — is in [`super::drivers`]; with another driver the span has the rest.

use super::drivers;
use crate::records::sql_record;
use crate::shared_fields::GO_NET;
use crate::span::{read_record, ProbeSpan, TargetInfo};
use crate::{std_field, FieldSpec, FunctionSpec, Need, ProbeSpec};

pub const QUERY_DC: &str = "database/sql.(*DB).queryDC";
pub const EXEC_DC: &str = "database/sql.(*DB).execDC";
pub const STMT_QUERY: &str = "database/sql.(*Stmt).QueryContext";
pub const STMT_EXEC: &str = "database/sql.(*Stmt).ExecContext";
pub const BEGIN_DC: &str = "database/sql.(*DB).beginDC";
pub const TX_COMMIT: &str = "database/sql.(*Tx).Commit";
pub const TX_ROLLBACK: &str = "database/sql.(*Tx).rollback";
pub const PGX_QUERY: &str = "github.com/jackc/pgx/v5.(*Conn).Query";
pub const PGX_EXEC: &str = "github.com/jackc/pgx/v5.(*Conn).Exec";
pub const PGX_PREPARE: &str = "github.com/jackc/pgx/v5.(*Conn).Prepare";
pub const PGX_ROWS_CLOSE: &str = "github.com/jackc/pgx/v5.(*baseRows).Close";

const fn function(symbol: &'static str, entry: &'static str, ret: &'static str, need: Need) -> FunctionSpec {
    FunctionSpec { symbol, entry_program: Some(entry), return_program: Some(ret), need }
}

const fn entry_only(symbol: &'static str, entry: &'static str) -> FunctionSpec {
    FunctionSpec { symbol, entry_program: Some(entry), return_program: None, need: Need::IfPresent }
}

/// database/sql's functions: left out when pgx's driver is the binary's only one.
const DATABASE_SQL: Need = Need::UnlessOnly(&drivers::PGX_STDLIB_ONLY);

pub static SPEC: ProbeSpec = ProbeSpec {
    name: "database_sql_client",
    modules: drivers::MODULES,
    // The linker drops what a program never calls (an app without Exec has no
    // execDC, one without database/sql no queryDC): each is attached if present,
    // and a binary with none of them is not a SQL client.
    functions: &[
        function(QUERY_DC, "query_dc_entry", "query_dc_return", DATABASE_SQL),
        function(EXEC_DC, "exec_dc_entry", "exec_dc_return", DATABASE_SQL),
        function(STMT_QUERY, "stmt_query_entry", "stmt_query_return", DATABASE_SQL),
        function(STMT_EXEC, "stmt_exec_entry", "stmt_exec_return", DATABASE_SQL),
        function(BEGIN_DC, "begin_dc_entry", "begin_dc_return", DATABASE_SQL),
        function(TX_COMMIT, "commit_entry", "tx_end_return", DATABASE_SQL),
        function(TX_ROLLBACK, "rollback_entry", "tx_end_return", DATABASE_SQL),
        entry_only(PGX_QUERY, "pgx_query_entry"),
        entry_only(PGX_ROWS_CLOSE, "pgx_rows_close_entry"),
        function(PGX_EXEC, "pgx_exec_entry", "pgx_exec_return", Need::IfPresent),
        entry_only(PGX_PREPARE, "pgx_prepare_entry"),
    ],
    fields: &[FIELDS, drivers::FIELDS, GO_NET],
    addresses: drivers::ADDRESSES,
    object: crate::bpf_object!("database_sql_client"),
    decode,
    kernel_end: None,
    derive: crate::derive_nothing,
};

const FIELDS: &[FieldSpec] = &[
    std_field("off_dc_ci", "database/sql.driverConn", "ci", false),
    std_field("off_stmt_query", "database/sql.Stmt", "query", false),
    std_field("off_stmt_css", "database/sql.Stmt", "css", false),
    std_field("off_connstmt_dc", "database/sql.connStmt", "dc", false),
    std_field("off_tx_dc", "database/sql.Tx", "dc", false),
    std_field("off_tx_ctx", "database/sql.Tx", "ctx", false),
    std_field("off_tx_done", "database/sql.Tx", "done", false),
];

/// The CLIENT span of one statement.
fn decode(bytes: &[u8], target: &dyn TargetInfo) -> Option<ProbeSpan> {
    let r: sql_record = read_record(bytes)?;
    super::statement::span(&r, target)
}
