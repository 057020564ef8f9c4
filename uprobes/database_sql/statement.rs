//! The CLIENT span of one SQL statement, from its record (`records.h`), with the
//! stable database semantic conventions: named `<operation> <table>` (or the
//! operation alone), `db.system.name` by driver, `db.namespace`,
//! `db.operation.name`, `db.collection.name`, `db.query.text` (kept as written
//! when the statement was parameterised, literals replaced by `?` otherwise),
//! `server.address`/`server.port`, and on failure `db.response.status_code` (the
//! server's SQLSTATE or error number) and `error.type` (that code, else the Go
//! type of the error).

use opentelemetry::trace::{SpanKind, Status};
use opentelemetry::KeyValue;

use super::query_text::{cut, sanitize, summary, QUERY_TEXT_MAX};
use crate::records::{
    sql_record, SQL_BEGIN, SQL_COMMIT, SQL_EXEC, SQL_PGX_EXEC, SQL_PGX_QUERY, SQL_QUERY, SQL_ROLLBACK, SQL_STMT_EXEC,
    SQL_STMT_QUERY,
    SQL_SYSTEM_MYSQL, SQL_SYSTEM_PGX, SQL_SYSTEM_PQ,
};
use crate::span::{push_address, text, Connection, ProbeSpan, TargetInfo};

/// The span of the statement `r` describes; None for a record of no known kind.
pub fn span(r: &sql_record, target: &dyn TargetInfo) -> Option<ProbeSpan> {
    let st = &r.stmt;
    let (raw, _cut) = text(&st.query, st.query_len);
    let system = match st.system as u32 {
        SQL_SYSTEM_PGX | SQL_SYSTEM_PQ => Some("postgresql"),
        SQL_SYSTEM_MYSQL => Some("mysql"),
        _ => None,
    };
    let (operation, collection, query) = match st.kind as u32 {
        SQL_QUERY | SQL_EXEC | SQL_STMT_QUERY | SQL_STMT_EXEC | SQL_PGX_QUERY | SQL_PGX_EXEC => {
            let (op, table) = summary(&raw);
            // A parameterised statement carries no values: its text is kept as
            // written. Otherwise (or when the count is unknown) literals go.
            let query = if st.args > 0 && has_placeholder(&raw, system) {
                cut(raw.trim().to_string(), QUERY_TEXT_MAX)
            } else {
                sanitize(&raw, system != Some("postgresql"))
            };
            (op, table, Some(query).filter(|q| !q.is_empty()))
        }
        SQL_BEGIN => (Some("BEGIN".to_string()), None, None),
        SQL_COMMIT => (Some("COMMIT".to_string()), None, None),
        SQL_ROLLBACK => (Some("ROLLBACK".to_string()), None, None),
        _ => return None,
    };
    let name = match (&operation, &collection) {
        (Some(o), Some(c)) => format!("{o} {c}"),
        (Some(o), None) => o.clone(),
        (None, _) => system.unwrap_or("database/sql").to_string(),
    };
    let mut span = ProbeSpan::from_head(&r.head, SpanKind::Client, name);
    let attrs = &mut span.attributes;
    attrs.push(KeyValue::new("db.system.name", system.unwrap_or("other_sql")));
    let (namespace, _) = text(&st.target.namespace, st.target.namespace_len);
    if !namespace.is_empty() {
        attrs.push(KeyValue::new("db.namespace", namespace));
    }
    if let Some(o) = operation {
        attrs.push(KeyValue::new("db.operation.name", o));
    }
    if let Some(c) = collection {
        attrs.push(KeyValue::new("db.collection.name", c));
    }
    if let Some(q) = query {
        attrs.push(KeyValue::new("db.query.text", q));
    }
    let peer = st.target.peer.addr();
    push_address(attrs, "server", peer);
    if let Some(peer) = peer {
        span.connection = Connection::Dialed(peer);
    }
    if r.error_tab != 0 {
        let (code, _) = text(&r.error.code, r.error.code_len);
        let code = if r.error.number != 0 { r.error.number.to_string() } else { code };
        let ty = if code.is_empty() {
            target.error_type(r.error_tab).unwrap_or("_OTHER").to_string()
        } else {
            span.attributes.push(KeyValue::new("db.response.status_code", code.clone()));
            code
        };
        span.attributes.push(KeyValue::new("error.type", ty.clone()));
        span.status = Status::error(ty);
    }
    Some(span)
}

/// Whether `text` has a placeholder of the database's syntax (`$1` for
/// PostgreSQL, `?` for MySQL; any of them for another driver). Arguments without
/// one are not the statement's values — pgx's options (`QueryResultFormats`,
/// `QueryExecMode`) travel as arguments too, and its database/sql driver always
/// passes one — so such a statement is sanitised.
fn has_placeholder(text: &str, system: Option<&str>) -> bool {
    let dollar = || text.as_bytes().windows(2).any(|w| w[0] == b'$' && w[1].is_ascii_digit());
    match system {
        Some("postgresql") => dollar(),
        Some("mysql") => text.contains('?'),
        _ => dollar() || text.contains('?') || text.contains(':') || text.contains('@'),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::span::{record_bytes, set_text, NoTargetInfo};
    use opentelemetry::Value;

    fn record(kind: u32, system: u32, query: &str, args: i64) -> sql_record {
        let mut r = sql_record::default();
        r.stmt.kind = kind as u8;
        r.stmt.system = system as u8;
        r.stmt.args = args;
        r.head.sc.flags = 1;
        set_text(&mut r.stmt.query, &mut r.stmt.query_len, query);
        r
    }

    struct Errors;
    impl TargetInfo for Errors {
        fn error_type(&self, itab: u64) -> Option<&str> {
            (itab == 7).then_some("*github.com/lib/pq.Error")
        }
    }

    fn decode(r: &sql_record, target: &dyn TargetInfo) -> Option<ProbeSpan> {
        let bytes = record_bytes(r);
        span(&crate::span::read_record(&bytes)?, target)
    }

    #[test]
    fn statements_become_client_spans() {
        let mut r = record(SQL_QUERY, SQL_SYSTEM_PGX, "SELECT id, name FROM users WHERE id = $1", 1);
        set_text(&mut r.stmt.target.namespace, &mut r.stmt.target.namespace_len, "shop");
        r.stmt.target.peer.ip[..4].copy_from_slice(&[127, 0, 0, 1]);
        r.stmt.target.peer.ip_len = 4;
        r.stmt.target.peer.port = 5432;
        let s = decode(&r, &NoTargetInfo).unwrap();
        assert_eq!((s.name.as_str(), s.kind.clone()), ("SELECT users", SpanKind::Client));
        assert_eq!(s.attribute("db.system.name"), Some(&Value::from("postgresql")));
        assert_eq!(s.attribute("db.namespace"), Some(&Value::from("shop")));
        assert_eq!(s.attribute("db.operation.name"), Some(&Value::from("SELECT")));
        assert_eq!(s.attribute("db.collection.name"), Some(&Value::from("users")));
        assert_eq!(s.attribute("db.query.text"), Some(&Value::from("SELECT id, name FROM users WHERE id = $1")));
        assert_eq!(s.attribute("server.address"), Some(&Value::from("127.0.0.1")));
        assert_eq!(s.attribute("server.port"), Some(&Value::from(5432i64)));
        assert_eq!(s.status, Status::Unset);
        assert_eq!(s.connection, Connection::Dialed("127.0.0.1:5432".parse().unwrap()));
    }

    #[test]
    fn unparameterised_text_loses_its_values() {
        let r = record(SQL_QUERY, SQL_SYSTEM_MYSQL, "SELECT name FROM users WHERE id = 42 AND name <> \"secret\"", 0);
        let s = decode(&r, &NoTargetInfo).unwrap();
        assert_eq!(s.attribute("db.system.name"), Some(&Value::from("mysql")));
        assert_eq!(
            s.attribute("db.query.text"),
            Some(&Value::from("SELECT name FROM users WHERE id = ? AND name <> ?"))
        );
        assert_eq!(s.attribute("db.namespace"), None);
        assert_eq!(s.connection, Connection::Unknown);
        let r = record(SQL_EXEC, SQL_SYSTEM_PQ, "UPDATE users SET visits = visits + 1 WHERE id = 7", -1);
        let s = decode(&r, &NoTargetInfo).unwrap();
        assert_eq!(s.name, "UPDATE users");
        assert_eq!(
            s.attribute("db.query.text"),
            Some(&Value::from("UPDATE users SET visits = visits + ? WHERE id = ?"))
        );
    }

    #[test]
    fn arguments_without_a_placeholder_are_options_not_values() {
        // pgx's database/sql driver passes its result formats as a first argument.
        let r = record(SQL_PGX_QUERY, SQL_SYSTEM_PGX, "SELECT name FROM users WHERE id = 42", 1);
        let s = decode(&r, &NoTargetInfo).unwrap();
        assert_eq!(s.attribute("db.query.text"), Some(&Value::from("SELECT name FROM users WHERE id = ?")));
        let r = record(SQL_PGX_QUERY, SQL_SYSTEM_PGX, "SELECT name FROM users WHERE id = $1", 2);
        let s = decode(&r, &NoTargetInfo).unwrap();
        assert_eq!(s.attribute("db.query.text"), Some(&Value::from("SELECT name FROM users WHERE id = $1")));
        let r = record(SQL_EXEC, SQL_SYSTEM_MYSQL, "UPDATE t SET a = 'x' WHERE id = ?", 1);
        assert_eq!(
            decode(&r, &NoTargetInfo).unwrap().attribute("db.query.text"),
            Some(&Value::from("UPDATE t SET a = 'x' WHERE id = ?"))
        );
    }

    #[test]
    fn errors_carry_the_servers_code() {
        let mut r = record(SQL_QUERY, SQL_SYSTEM_PQ, "SELECT * FORM users", 0);
        r.error_tab = 7;
        set_text(&mut r.error.code, &mut r.error.code_len, "42601");
        let s = decode(&r, &Errors).unwrap();
        assert_eq!(s.name, "SELECT");
        assert_eq!(s.attribute("db.response.status_code"), Some(&Value::from("42601")));
        assert_eq!(s.attribute("error.type"), Some(&Value::from("42601")));
        assert!(matches!(s.status, Status::Error { .. }));
        r.error = Default::default();
        r.error.number = 1062;
        assert_eq!(decode(&r, &Errors).unwrap().attribute("error.type"), Some(&Value::from("1062")));
        r.error = Default::default();
        let s = decode(&r, &Errors).unwrap();
        assert_eq!(s.attribute("error.type"), Some(&Value::from("*github.com/lib/pq.Error")));
        assert_eq!(s.attribute("db.response.status_code"), None);
        r.error_tab = 8;
        assert_eq!(decode(&r, &Errors).unwrap().attribute("error.type"), Some(&Value::from("_OTHER")));
    }

    #[test]
    fn transactions_and_bad_records() {
        let s = decode(&record(SQL_COMMIT, 0, "", -1), &NoTargetInfo).unwrap();
        assert_eq!(s.name, "COMMIT");
        assert_eq!(s.attribute("db.system.name"), Some(&Value::from("other_sql")));
        assert_eq!(s.attribute("db.query.text"), None);
        assert!(decode(&record(99, 0, "", 0), &NoTargetInfo).is_none());
        let bytes = record_bytes(&record(SQL_QUERY, 0, "SELECT 1", 0));
        assert!(crate::span::read_record::<sql_record>(&bytes[..10]).is_none());
    }
}
