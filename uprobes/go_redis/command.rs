//! The CLIENT span of one Redis command, pipeline or MULTI/EXEC transaction, from
//! its record (`records.h`), with the stable database semantic conventions:
//! `db.system.name` `redis`, `db.operation.name` (the command, upper case — with
//! its sub-command for container commands: `CONFIG GET` — or `PIPELINE` /
//! `MULTI` with `db.operation.batch.size`), `db.query.text` with every argument
//! replaced by `?` (`SET ? ?`; a pipeline's commands joined by `;`, a
//! transaction's without its MULTI and EXEC), `db.namespace` (the database
//! index), `server.address`/`server.port` (the client's `Options.Addr`). The span
//! is named after the operation.
//!
//! Errors: go-redis's own errors carry the server's message (`proto.RedisError`,
//! v9.23's typed `*proto.XxxError`); its first word is Redis's error prefix
//! (`ERR`, `WRONGTYPE`), which becomes `db.response.status_code` and
//! `error.type`. `redis.Nil` (`redis: nil`, a missing key) is not an error. Any
//! other error is typed by its Go type (`*net.OpError`).

use std::net::{IpAddr, SocketAddr};

use opentelemetry::trace::{SpanKind, Status};
use opentelemetry::KeyValue;

use crate::records::{redis_command, redis_record, REDIS_COMMAND, REDIS_PIPELINE, REDIS_TX};
use crate::span::{split_host_port, text, Connection, ProbeSpan, TargetInfo};

/// Commands whose first argument names a sub-command (`CONFIG GET`).
const CONTAINERS: &[&str] = &[
    "ACL", "CLIENT", "CLUSTER", "COMMAND", "CONFIG", "FUNCTION", "LATENCY", "MEMORY", "MODULE", "OBJECT", "PUBSUB",
    "SCRIPT", "SLOWLOG", "XGROUP", "XINFO",
];

/// Placeholders written per command at most (`MSET` of a thousand keys is
/// `MSET ? ? … ?` with this many, then `…`).
const MAX_PLACEHOLDERS: usize = 32;

/// db.query.text's bound, in bytes.
const QUERY_TEXT_MAX: usize = 2048;

/// go-redis's error types whose value starts with the server's message.
const OWN_ERROR: &str = "github.com/redis/go-redis/v9/internal/proto.RedisError";
const OWN_TYPED_ERRORS: &str = "*github.com/redis/go-redis/v9/internal/proto.";

/// The message of redis.Nil.
const NIL: &str = "redis: nil";

/// One command of a record: its operation name and its query text.
struct Command {
    operation: String,
    text: String,
}

fn command(c: &redis_command) -> Option<Command> {
    let (name, cut) = text(&c.name, c.name_len as u16);
    if name.is_empty() || cut || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'|')
    {
        return None;
    }
    let mut operation = name.to_ascii_uppercase();
    let mut words = 1;
    if CONTAINERS.contains(&operation.as_str()) && c.args > 1 {
        let (sub, cut) = text(&c.sub, c.sub_len as u16);
        if !sub.is_empty() && !cut && sub.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            operation = format!("{operation} {}", sub.to_ascii_uppercase());
            words = 2;
        }
    }
    let args = (c.args as usize).saturating_sub(words);
    let mut text = operation.clone();
    for _ in 0..args.min(MAX_PLACEHOLDERS) {
        text.push_str(" ?");
    }
    if args > MAX_PLACEHOLDERS {
        text.push_str(" …");
    }
    Some(Command { operation, text })
}

/// The span the record describes; None for a record of no known kind.
pub fn span(r: &redis_record, target: &dyn TargetInfo) -> Option<ProbeSpan> {
    let listed = &r.cmds[..(r.count as usize).min(r.cmds.len())];
    let (operation, query, batch) = match r.kind as u32 {
        REDIS_COMMAND => match r.cmds.first().and_then(command) {
            Some(c) => (Some(c.operation), Some(c.text), None),
            None => (None, None, None),
        },
        REDIS_PIPELINE | REDIS_TX => {
            let tx = r.kind as u32 == REDIS_TX;
            let mut cmds: Vec<Option<Command>> = listed.iter().map(command).collect();
            let mut count = r.count as usize;
            // A transaction's commands come wrapped in MULTI ... EXEC.
            if tx {
                let is = |c: Option<&Option<Command>>, op: &str| c.is_some_and(|c| c.as_ref().is_some_and(|c| c.operation == op));
                if is(cmds.first(), "MULTI") {
                    cmds.remove(0);
                    count -= 1;
                }
                if count == cmds.len() && is(cmds.last(), "EXEC") {
                    cmds.pop();
                    count -= 1;
                }
            }
            let mut text: Vec<String> = cmds.into_iter().map(|c| c.map_or_else(|| "?".to_string(), |c| c.text)).collect();
            if count > text.len() {
                text.push("…".into());
            }
            let op = if tx { "MULTI" } else { "PIPELINE" };
            (Some(op.to_string()), Some(cut(text.join(";"))).filter(|t| !t.is_empty()), Some(count))
        }
        _ => return None,
    };
    let name = operation.clone().unwrap_or_else(|| "redis".to_string());
    let mut span = ProbeSpan::from_head(&r.head, SpanKind::Client, name);
    let attrs = &mut span.attributes;
    attrs.push(KeyValue::new("db.system.name", "redis"));
    if r.db >= 0 {
        attrs.push(KeyValue::new("db.namespace", r.db.to_string()));
    }
    if let Some(o) = operation {
        attrs.push(KeyValue::new("db.operation.name", o));
    }
    if let Some(n) = batch.filter(|n| *n >= 2) {
        attrs.push(KeyValue::new("db.operation.batch.size", n as i64));
    }
    if let Some(q) = query {
        attrs.push(KeyValue::new("db.query.text", q));
    }
    let (addr, _) = text(&r.addr, r.addr_len);
    if let Some((host, port)) = split_host_port(&addr) {
        attrs.push(KeyValue::new("server.address", host.to_string()));
        if let Some(p) = port {
            attrs.push(KeyValue::new("server.port", p as i64));
            span.connection = match host.parse::<IpAddr>() {
                Ok(ip) => Connection::Dialed(SocketAddr::new(ip, p)),
                Err(_) => Connection::DialedDuring { ip: None, port: p },
            };
        }
    }
    if let Some(e) = error(r, target) {
        if let Some(code) = &e.code {
            span.attributes.push(KeyValue::new("db.response.status_code", code.clone()));
        }
        span.attributes.push(KeyValue::new("error.type", e.kind.clone()));
        span.status = Status::error(e.message.unwrap_or(e.kind));
    }
    Some(span)
}

fn cut(mut s: String) -> String {
    if s.len() > QUERY_TEXT_MAX {
        let mut n = QUERY_TEXT_MAX;
        while !s.is_char_boundary(n) {
            n -= 1;
        }
        s.truncate(n);
        s.push('…');
    }
    s
}

/// A failed call's error.
struct Failure {
    /// error.type: Redis's error prefix, else the Go type.
    kind: String,
    /// db.response.status_code: Redis's error prefix.
    code: Option<String>,
    message: Option<String>,
}

/// The record's error, None when there is none (redis.Nil included).
fn error(r: &redis_record, target: &dyn TargetInfo) -> Option<Failure> {
    if r.error_tab == 0 {
        return None;
    }
    let ty = target.error_type(r.error_tab);
    let own = ty.is_some_and(|t| t == OWN_ERROR || (t.starts_with(OWN_TYPED_ERRORS) && t.ends_with("Error")));
    if !own {
        return Some(Failure { kind: ty.unwrap_or("_OTHER").to_string(), code: None, message: None });
    }
    let (message, _) = text(&r.error, r.error_len);
    if message == NIL {
        return None;
    }
    let prefix = message.split(' ').next().unwrap_or_default();
    let code = (!prefix.is_empty() && prefix.bytes().all(|b| b.is_ascii_uppercase() || b == b'_'))
        .then(|| prefix.to_string());
    let kind = code.clone().unwrap_or_else(|| ty.unwrap_or("_OTHER").to_string());
    Some(Failure { kind, code, message: Some(message) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::span::{record_bytes, set_text, NoTargetInfo};
    use opentelemetry::Value;

    fn cmd(name: &str, sub: &str, args: u32) -> redis_command {
        let mut c = redis_command { args, ..Default::default() };
        let mut n = 0;
        set_text(&mut c.name, &mut n, name);
        c.name_len = n as u8;
        set_text(&mut c.sub, &mut n, sub);
        c.sub_len = n as u8;
        c
    }

    fn record(kind: u32, cmds: &[redis_command]) -> redis_record {
        let mut r = redis_record { kind: kind as u8, count: cmds.len() as u16, db: 3, ..Default::default() };
        r.head.sc.flags = 1;
        r.cmds[..cmds.len()].copy_from_slice(cmds);
        set_text(&mut r.addr, &mut r.addr_len, "127.0.0.1:6379");
        r
    }

    struct Errors;
    impl TargetInfo for Errors {
        fn error_type(&self, itab: u64) -> Option<&str> {
            match itab {
                1 => Some(OWN_ERROR),
                2 => Some("*github.com/redis/go-redis/v9/internal/proto.LoadingError"),
                3 => Some("*net.OpError"),
                _ => None,
            }
        }
    }

    fn decode(r: &redis_record, target: &dyn TargetInfo) -> ProbeSpan {
        let bytes = record_bytes(r);
        span(&crate::span::read_record(&bytes).unwrap(), target).unwrap()
    }

    fn attr<'a>(s: &'a ProbeSpan, k: &str) -> Option<&'a Value> {
        s.attribute(k)
    }

    #[test]
    fn a_command_is_a_client_span_without_its_arguments() {
        let s = decode(&record(REDIS_COMMAND, &[cmd("set", "user:1", 3)]), &NoTargetInfo);
        assert_eq!((s.name.as_str(), s.kind.clone()), ("SET", SpanKind::Client));
        assert_eq!(attr(&s, "db.system.name"), Some(&Value::from("redis")));
        assert_eq!(attr(&s, "db.operation.name"), Some(&Value::from("SET")));
        assert_eq!(attr(&s, "db.query.text"), Some(&Value::from("SET ? ?")));
        assert_eq!(attr(&s, "db.namespace"), Some(&Value::from("3")));
        assert_eq!(attr(&s, "server.address"), Some(&Value::from("127.0.0.1")));
        assert_eq!(attr(&s, "server.port"), Some(&Value::from(6379i64)));
        assert_eq!(attr(&s, "db.operation.batch.size"), None);
        assert_eq!(s.connection, Connection::Dialed("127.0.0.1:6379".parse().unwrap()));
        assert_eq!(s.status, Status::Unset);
    }

    #[test]
    fn container_commands_keep_their_sub_command() {
        let s = decode(&record(REDIS_COMMAND, &[cmd("config", "get", 3)]), &NoTargetInfo);
        assert_eq!(s.name, "CONFIG GET");
        assert_eq!(attr(&s, "db.query.text"), Some(&Value::from("CONFIG GET ?")));
        // Not a container: the first argument is a key, never kept.
        let s = decode(&record(REDIS_COMMAND, &[cmd("get", "secret", 2)]), &NoTargetInfo);
        assert_eq!(attr(&s, "db.query.text"), Some(&Value::from("GET ?")));
        let mut many = cmd("mset", "k", 201);
        many.args = 201;
        let s = decode(&record(REDIS_COMMAND, &[many]), &NoTargetInfo);
        let q = s.attribute("db.query.text").unwrap().as_str().into_owned();
        assert!(q.starts_with("MSET ? ?") && q.ends_with(" …") && q.matches('?').count() == MAX_PLACEHOLDERS, "{q}");
    }

    #[test]
    fn pipelines_and_transactions_list_their_commands() {
        let p = [cmd("set", "k", 3), cmd("incr", "k", 2), cmd("get", "k", 2), cmd("expire", "k", 3)];
        let s = decode(&record(REDIS_PIPELINE, &p), &NoTargetInfo);
        assert_eq!(s.name, "PIPELINE");
        assert_eq!(attr(&s, "db.query.text"), Some(&Value::from("SET ? ?;INCR ?;GET ?;EXPIRE ? ?")));
        assert_eq!(attr(&s, "db.operation.batch.size"), Some(&Value::from(4i64)));
        let t = [cmd("multi", "", 1), cmd("incr", "k", 2), cmd("incrby", "k", 3), cmd("exec", "", 1)];
        let s = decode(&record(REDIS_TX, &t), &NoTargetInfo);
        assert_eq!(s.name, "MULTI");
        assert_eq!(attr(&s, "db.operation.name"), Some(&Value::from("MULTI")));
        assert_eq!(attr(&s, "db.query.text"), Some(&Value::from("INCR ?;INCRBY ? ?")));
        assert_eq!(attr(&s, "db.operation.batch.size"), Some(&Value::from(2i64)));
        // More commands than the record lists.
        let many = [cmd("incr", "k", 2); 32];
        let mut r = record(REDIS_PIPELINE, &many);
        r.count = 40;
        let s = decode(&r, &NoTargetInfo);
        let q = s.attribute("db.query.text").unwrap().as_str().into_owned();
        assert!(q.starts_with("INCR ?;INCR ?;") && q.ends_with(";INCR ?;…") && q.matches("INCR").count() == 32, "{q}");
        assert_eq!(attr(&s, "db.operation.batch.size"), Some(&Value::from(40i64)));
    }

    #[test]
    fn errors_carry_the_servers_prefix_and_nil_is_not_one() {
        let mut r = record(REDIS_COMMAND, &[cmd("lpush", "k", 3)]);
        r.error_tab = 1;
        set_text(&mut r.error, &mut r.error_len, "WRONGTYPE Operation against a key holding the wrong kind of value");
        let s = decode(&r, &Errors);
        assert_eq!(attr(&s, "error.type"), Some(&Value::from("WRONGTYPE")));
        assert_eq!(attr(&s, "db.response.status_code"), Some(&Value::from("WRONGTYPE")));
        assert!(matches!(&s.status, Status::Error { description } if description.starts_with("WRONGTYPE Operation")));
        r.error_tab = 2;
        set_text(&mut r.error, &mut r.error_len, "LOADING Redis is loading the dataset in memory");
        assert_eq!(attr(&decode(&r, &Errors), "error.type"), Some(&Value::from("LOADING")));
        r.error_tab = 1;
        set_text(&mut r.error, &mut r.error_len, NIL);
        let s = decode(&r, &Errors);
        assert_eq!((s.status.clone(), attr(&s, "error.type")), (Status::Unset, None));
        // Another type's bytes are never taken for a message.
        r.error_tab = 3;
        let s = decode(&r, &Errors);
        assert_eq!(attr(&s, "error.type"), Some(&Value::from("*net.OpError")));
        assert_eq!(attr(&s, "db.response.status_code"), None);
        r.error_tab = 9;
        assert_eq!(attr(&decode(&r, &Errors), "error.type"), Some(&Value::from("_OTHER")));
    }

    #[test]
    fn bad_records() {
        let mut r = record(REDIS_COMMAND, &[cmd("", "", 0)]);
        let s = decode(&r, &NoTargetInfo);
        assert_eq!(s.name, "redis");
        assert_eq!(attr(&s, "db.query.text"), None);
        r.kind = 9;
        let bytes = record_bytes(&r);
        assert!(span(&crate::span::read_record(&bytes).unwrap(), &NoTargetInfo).is_none());
        assert!(crate::span::read_record::<redis_record>(&bytes[..10]).is_none());
    }
}
