//! database/sql (standard library): the client probe (`client.bpf.c`, a CLIENT
//! span per statement run through `database/sql`, whatever the driver), and what
//! any SQL probe shares: the statement record (`records.h`), what is read of the
//! drivers gosight knows by name ([`drivers`], `drivers.h`), the SQL text's
//! summary and sanitising ([`query_text`]), and the span of a statement
//! ([`statement`]). The probed functions, registers and layouts are studied in
//! `tests/go-apps/sqlapp/PROBING.md`; test app: `tests/go-apps/sqlapp`.

pub mod client;
pub mod drivers;
pub mod query_text;
pub mod statement;
