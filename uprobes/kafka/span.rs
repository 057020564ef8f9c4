//! The span of a Kafka record (`records.h`), with the stable messaging semantic
//! conventions: `send <topic>` (PRODUCER) or `process <topic>` (CONSUMER),
//! `messaging.system` = `kafka`, `messaging.operation.name` and `.type`,
//! `messaging.destination.name`, `messaging.kafka.message.key` (only a whole key
//! that is printable UTF-8), `messaging.destination.partition.id`,
//! `messaging.kafka.offset`, `messaging.batch.message_count` (more than one
//! message), `messaging.consumer.group.name`, `server.address`/`server.port`, and
//! on failure `error.type` (the Go type of the error) with status ERROR.

use opentelemetry::trace::{SpanKind, Status};
use opentelemetry::KeyValue;

use crate::records::{kafka_record, KAFKA_PROCESS, KAFKA_SEND};
use crate::span::{read_record, split_host_port, text, ProbeSpan, TargetInfo};

/// Decodes a ring-buffer record into its span (any Kafka probe's `decode`).
pub fn decode(bytes: &[u8], target: &dyn TargetInfo) -> Option<ProbeSpan> {
    span(&read_record::<kafka_record>(bytes)?, target)
}

/// The span `r` describes; None for a record of no known operation.
pub fn span(r: &kafka_record, target: &dyn TargetInfo) -> Option<ProbeSpan> {
    let (operation, kind) = match r.operation as u32 {
        KAFKA_SEND => ("send", SpanKind::Producer),
        KAFKA_PROCESS => ("process", SpanKind::Consumer),
        _ => return None,
    };
    let m = &r.msg;
    let (topic, _) = text(&m.topic, m.topic_len);
    let name = if topic.is_empty() { operation.to_string() } else { format!("{operation} {topic}") };
    let mut span = ProbeSpan::from_head(&r.head, kind, name);
    let attrs = &mut span.attributes;
    attrs.push(KeyValue::new("messaging.system", "kafka"));
    attrs.push(KeyValue::new("messaging.operation.name", operation));
    attrs.push(KeyValue::new("messaging.operation.type", operation));
    if !topic.is_empty() {
        attrs.push(KeyValue::new("messaging.destination.name", topic));
    }
    if r.batch > 1 {
        attrs.push(KeyValue::new("messaging.batch.message_count", r.batch as i64));
    } else if let Some(key) = printable_key(m.key_len, &m.key) {
        attrs.push(KeyValue::new("messaging.kafka.message.key", key));
    }
    if m.partition >= 0 {
        attrs.push(KeyValue::new("messaging.destination.partition.id", m.partition.to_string()));
    }
    if m.offset >= 0 {
        attrs.push(KeyValue::new("messaging.kafka.offset", m.offset));
    }
    let (group, _) = text(&r.group, r.group_len);
    if !group.is_empty() {
        attrs.push(KeyValue::new("messaging.consumer.group.name", group));
    }
    let (server, _) = text(&r.server, r.server_len);
    if let Some((host, port)) = split_host_port(&server) {
        attrs.push(KeyValue::new("server.address", host.to_string()));
        if let Some(p) = port {
            attrs.push(KeyValue::new("server.port", p as i64));
        }
    }
    if r.error_tab != 0 {
        let ty = target.error_type(r.error_tab).unwrap_or("_OTHER").to_string();
        span.attributes.push(KeyValue::new("error.type", ty.clone()));
        span.status = Status::error(ty);
    }
    Some(span)
}

/// The key as text when the record holds all of it and it is printable UTF-8
/// (binary keys are left out: the attribute is a string).
fn printable_key(len: i64, buf: &[std::os::raw::c_char]) -> Option<String> {
    if len <= 0 || len as usize > buf.len() {
        return None;
    }
    let bytes: Vec<u8> = buf[..len as usize].iter().map(|&c| c as u8).collect();
    let s = String::from_utf8(bytes).ok()?;
    (!s.chars().any(char::is_control)).then_some(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::span::{record_bytes, NoTargetInfo};
    use opentelemetry::Value;

    fn record(op: u32, topic: &str, key: Option<&[u8]>) -> kafka_record {
        let mut r = kafka_record { operation: op as u8, batch: 1, ..Default::default() };
        r.head.sc.flags = 1;
        for (d, b) in r.msg.topic.iter_mut().zip(topic.bytes()) {
            *d = b as std::os::raw::c_char;
        }
        r.msg.topic_len = topic.len() as u16;
        r.msg.key_len = key.map_or(-1, |k| k.len() as i64);
        for (d, b) in r.msg.key.iter_mut().zip(key.unwrap_or_default()) {
            *d = *b as std::os::raw::c_char;
        }
        r.msg.partition = -1;
        r.msg.offset = -1;
        r
    }

    fn attr<'a>(s: &'a ProbeSpan, k: &str) -> Option<&'a Value> {
        s.attribute(k)
    }

    #[test]
    fn send_span() {
        let mut r = record(KAFKA_SEND, "orders", Some(b"user-1"));
        r.msg.partition = 2;
        r.msg.offset = 41;
        let s = decode(&record_bytes(&r), &NoTargetInfo).unwrap();
        assert_eq!((s.name.as_str(), s.kind.clone()), ("send orders", SpanKind::Producer));
        assert_eq!(attr(&s, "messaging.system"), Some(&Value::from("kafka")));
        assert_eq!(attr(&s, "messaging.operation.type"), Some(&Value::from("send")));
        assert_eq!(attr(&s, "messaging.destination.name"), Some(&Value::from("orders")));
        assert_eq!(attr(&s, "messaging.kafka.message.key"), Some(&Value::from("user-1")));
        assert_eq!(attr(&s, "messaging.destination.partition.id"), Some(&Value::from("2")));
        assert_eq!(attr(&s, "messaging.kafka.offset"), Some(&Value::I64(41)));
        assert!(attr(&s, "messaging.batch.message_count").is_none());
    }

    #[test]
    fn keys_only_whole_and_printable() {
        for key in [None, Some(&b"\x00\x01\xff"[..]), Some(&b"a\nb"[..]), Some(&[b'k'; 65][..]), Some(&b""[..])] {
            let r = record(KAFKA_PROCESS, "t", key);
            let s = span(&r, &NoTargetInfo).unwrap();
            assert!(attr(&s, "messaging.kafka.message.key").is_none(), "{key:?}");
        }
        let s = span(&record(KAFKA_PROCESS, "t", Some("ключ".as_bytes())), &NoTargetInfo).unwrap();
        assert_eq!(attr(&s, "messaging.kafka.message.key"), Some(&Value::from("ключ")));
    }

    #[test]
    fn process_span_with_group_server_and_batch() {
        let mut r = record(KAFKA_PROCESS, "orders", None);
        for (d, b) in r.group.iter_mut().zip(b"billing") {
            *d = *b as std::os::raw::c_char;
        }
        r.group_len = 7;
        for (d, b) in r.server.iter_mut().zip(b"127.0.0.1:9092") {
            *d = *b as std::os::raw::c_char;
        }
        r.server_len = 14;
        r.batch = 3;
        r.error_tab = 1;
        let s = span(&r, &NoTargetInfo).unwrap();
        assert_eq!((s.name.as_str(), s.kind.clone()), ("process orders", SpanKind::Consumer));
        assert_eq!(attr(&s, "messaging.consumer.group.name"), Some(&Value::from("billing")));
        assert_eq!(attr(&s, "server.address"), Some(&Value::from("127.0.0.1")));
        assert_eq!(attr(&s, "server.port"), Some(&Value::I64(9092)));
        assert_eq!(attr(&s, "messaging.batch.message_count"), Some(&Value::I64(3)));
        assert_eq!(attr(&s, "error.type"), Some(&Value::from("_OTHER")));
        assert!(matches!(s.status, Status::Error { .. }));
    }
}
