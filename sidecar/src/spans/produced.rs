//! Span links from a Kafka consumer's `process` span to the `send` span that
//! produced its message, for a message that arrived without a `traceparent`
//! record header — one the kernel left untouched because it could not rewrite it
//! safely (a compressed batch, a request split across writes, ...: counted by the
//! socket side's `kafka_*` counters). The send span is known here by topic,
//! partition and offset when this gosight traced the producer and its library
//! reports the broker's offset (sarama); otherwise the process span stays a root.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use opentelemetry::trace::{Link, SpanContext, SpanKind};
use opentelemetry::{KeyValue, Value};

/// Sends remembered: the newest ones.
const CAPACITY: usize = 65_536;

/// (topic, partition, offset).
type MessageKey = (String, String, i64);

/// The span contexts of recent sampled sends, by the message they produced.
#[derive(Debug, Default)]
pub struct ProducedMessages {
    inner: Mutex<Remembered>,
}

#[derive(Debug, Default)]
struct Remembered {
    by_message: HashMap<MessageKey, SpanContext>,
    order: VecDeque<MessageKey>,
}

/// The message a Kafka span is about, when it names its offset.
fn message_key(attrs: &[KeyValue]) -> Option<MessageKey> {
    let get = |k: &str| attrs.iter().find(|kv| kv.key.as_str() == k).map(|kv| &kv.value);
    let text = |k: &str| match get(k)? {
        Value::String(s) => Some(s.as_str().to_string()),
        _ => None,
    };
    if text("messaging.system")? != "kafka" {
        return None;
    }
    let offset = match get("messaging.kafka.offset")? {
        Value::I64(o) => *o,
        _ => return None,
    };
    Some((text("messaging.destination.name")?, text("messaging.destination.partition.id")?, offset))
}

impl ProducedMessages {
    /// Remembers a PRODUCER span of one message whose offset it reports.
    pub fn record(&self, kind: &SpanKind, attrs: &[KeyValue], sc: &SpanContext) {
        if *kind != SpanKind::Producer {
            return;
        }
        let Some(key) = message_key(attrs) else { return };
        let mut r = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if r.by_message.insert(key.clone(), sc.clone()).is_none() {
            r.order.push_back(key);
            if r.order.len() > CAPACITY {
                if let Some(oldest) = r.order.pop_front() {
                    r.by_message.remove(&oldest);
                }
            }
        }
    }

    /// The link of a CONSUMER span without a parent (its message carried no
    /// context) to its message's send span, when that is remembered.
    pub fn link_for(&self, kind: &SpanKind, has_parent: bool, attrs: &[KeyValue]) -> Option<Link> {
        if *kind != SpanKind::Consumer || has_parent {
            return None;
        }
        let key = message_key(attrs)?;
        let sc = self.inner.lock().unwrap_or_else(|p| p.into_inner()).by_message.get(&key)?.clone();
        Some(Link::with_context(sc))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{SpanId, TraceFlags, TraceId, TraceState};

    fn attrs(offset: i64) -> Vec<KeyValue> {
        vec![
            KeyValue::new("messaging.system", "kafka"),
            KeyValue::new("messaging.destination.name", "orders"),
            KeyValue::new("messaging.destination.partition.id", "1"),
            KeyValue::new("messaging.kafka.offset", offset),
        ]
    }

    #[test]
    fn a_parentless_process_span_links_to_the_send_of_its_message() {
        let produced = ProducedMessages::default();
        let sc = SpanContext::new(
            TraceId::from_bytes([7; 16]),
            SpanId::from_bytes([9; 8]),
            TraceFlags::SAMPLED,
            false,
            TraceState::default(),
        );
        produced.record(&SpanKind::Producer, &attrs(42), &sc);
        let link = produced.link_for(&SpanKind::Consumer, false, &attrs(42)).expect("a link");
        assert_eq!(link.span_context, sc);
        assert!(produced.link_for(&SpanKind::Consumer, true, &attrs(42)).is_none(), "a parent needs no link");
        assert!(produced.link_for(&SpanKind::Consumer, false, &attrs(43)).is_none(), "another message");
        let batch: Vec<KeyValue> =
            attrs(42).into_iter().filter(|kv| kv.key.as_str() != "messaging.kafka.offset").collect();
        produced.record(&SpanKind::Producer, &batch, &sc); // no offset (kafka-go): nothing to remember
        assert_eq!(produced.inner.lock().unwrap().order.len(), 1);
    }
}
