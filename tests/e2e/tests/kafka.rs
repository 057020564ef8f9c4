//! Kafka PRODUCER and CONSUMER spans (uprobes/kafka, kafka_sarama, kafka_go)
//! end to end: a real broker (tests/e2e/src/kafka.rs), tests/go-apps/kafkaapp
//! built against the old and the new sarama and kafka-go releases (and
//! stripped) running as a producer service and two consumer services (a sarama
//! ConsumerGroup, a kafka-go Reader), all traced by one gosight exporting to a
//! real OpenTelemetry Collector.
//!
//! Every message sent through sarama's SyncProducer (one and several at a
//! time), its AsyncProducer and kafka-go's Writer (one, and a batch of three) to
//! both consumers' topics — printable, binary and nil keys — must arrive at its
//! consumer byte for byte, and have: a `send <topic>` PRODUCER span, child of
//! the HTTP server span of the request that produced it (sarama: one per
//! message, with the partition and offset the broker gave; kafka-go: one per
//! WriteMessages, `messaging.batch.message_count` for the batch); a `process
//! <topic>` CONSUMER span with its partition and offset, the key when it is
//! printable, the consumer group, the broker's address; and the
//! consumer's downstream HTTP call for it is that span's child; and each process
//! span is in its producer span's trace, as its child (the `traceparent` record
//! header the kernel wrote into the Produce request) — except a snappy batch's
//! (sarama, `/sarama/snappy`), which the kernel leaves untouched: its process span
//! is a root with a link to its send span. Stripped builds are checked
//! the same, from the offsets database (the runtime's channel layout from its std
//! layer).

use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

use gosight_e2e::collector::{require_collector, Collector, Span};
use gosight_e2e::kafka::{require_kafka, Kafka};
use gosight_e2e::process::{App, Child, Exchange, HttpConn};
use gosight_e2e::*;

const SERVER: i64 = 2;
const CLIENT: i64 = 3;
const PRODUCER: i64 = 4;
const CONSUMER: i64 = 5;

/// The consumers' topics (2 partitions each) and the library reading each.
const TOPICS: [(&str, &str); 2] = [("orders-sarama", "sarama"), ("orders-kafkago", "kafkago")];
const GROUP: &str = "billing";

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// One message the test produces.
#[derive(Debug, Clone)]
struct Message {
    key: Option<Vec<u8>>,
    value: Vec<u8>,
}

/// One request to the producer: its route, topic, messages, and what happened.
#[derive(Debug)]
struct Produced {
    route: &'static str,
    topic: &'static str,
    messages: Vec<Message>,
    exchange: Exchange,
}

/// The consumer's line for one message.
#[derive(Debug, Clone)]
struct Consumed {
    topic: String,
    partition: i64,
    offset: i64,
    key: Option<String>,
    value: String,
}

fn consumed(log: &str) -> Vec<Consumed> {
    log.lines()
        .filter(|l| l.starts_with('{'))
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|v| Consumed {
            topic: v["topic"].as_str().unwrap_or_default().to_string(),
            partition: v["partition"].as_i64().unwrap_or(-1),
            offset: v["offset"].as_i64().unwrap_or(-1),
            key: v["key"].as_str().map(str::to_string),
            value: v["value"].as_str().unwrap_or_default().to_string(),
        })
        .collect()
}

/// The requests: per topic, each producer with a printable key, a binary key,
/// no key, and several messages in one call.
fn plan() -> Vec<(&'static str, &'static str, Vec<Message>)> {
    let mut out = Vec::new();
    let mut n = 0u8;
    let mut value = |route: &str| {
        n += 1;
        // A unique value with bytes that are not text.
        (n, vec![b'v', n, 0x00, 0xff, 0x0a, b'"', 0xc3, 0x28, route.len() as u8])
    };
    for (topic, _) in TOPICS {
        for route in ["sarama/sync", "sarama/async", "kafkago"] {
            let (i, v) = value(route);
            out.push((route, topic, vec![Message { key: Some(format!("order-{i}").into_bytes()), value: v }]));
            let (i, v) = value(route);
            out.push((route, topic, vec![Message { key: Some(vec![0x00, 0xfe, 0x0a, i]), value: v }]));
            out.push((route, topic, vec![Message { key: None, value: value(route).1 }]));
            if route != "sarama/async" {
                let (i, v) = value(route);
                let batch = vec![
                    Message { key: Some(b"batch-a".to_vec()), value: v },
                    Message { key: Some(vec![0x01, i]), value: value(route).1 },
                    Message { key: None, value: value(route).1 },
                ];
                out.push((route, topic, batch));
            }
        }
        // Snappy batches carry no context (the kernel leaves them untouched):
        // their process spans are linked to their send spans instead.
        let (i, v) = value("sarama/snappy");
        out.push(("sarama/snappy", topic, vec![Message { key: Some(format!("zip-{i}").into_bytes()), value: v }]));
    }
    out
}

fn query(topic: &str, messages: &[Message]) -> String {
    let mut q = format!("topic={topic}");
    for m in messages {
        let key = m.key.as_deref().map(hex).unwrap_or_else(|| "-".into());
        q.push_str(&format!("&key={key}&value={}", hex(&m.value)));
    }
    q
}

fn run(set: &str, stripped: bool) {
    if !require_all() || !require_kafka() {
        return;
    }
    let _serial = serial();
    let Some(col_bin) = require_collector() else { return };
    let exe = build_release_set("kafkaapp", set, stripped);
    let kafka = Kafka::start();
    kafka.create_topics(&TOPICS.map(|(t, _)| (t, 2)));
    let collector = Collector::start(&col_bin);
    let dir = tmpdir(&format!("kafka-{set}"));

    let mut cmd = collector.gosight_command();
    cmd.arg("--target-exe").arg(&exe);
    let mut gs = Child::spawn("gosight", cmd, &dir);
    gs.wait_for_log("gosight starting", Duration::from_secs(30));

    let brokers = ["-brokers".to_string(), kafka.bootstrap()];
    let producer =
        App::start_with(&exe, &dir, "producer", &[&["-role".to_string(), "producer".into()], &brokers[..]].concat());
    let downstream = format!("http://{}/downstream", producer.addr);
    let consumers: Vec<(&str, &str, Child)> = TOPICS
        .iter()
        .map(|&(topic, lib)| {
            let mut cmd = Command::new(&exe);
            // The consumer asks for its message channel once, when it starts
            // consuming: gosight must be attached by then (PROBING.md).
            cmd.args(["-role", "consumer", "-lib", lib, "-topic", topic, "-group", GROUP, "-downstream", &downstream])
                .args(["-start-after", "8s"])
                .args(&brokers);
            (topic, lib, Child::spawn(&format!("consumer-{lib}"), cmd, &dir))
        })
        .collect();
    let ppid = producer.child.pid();
    for probe in ["kafka_sarama_producer", "kafka_go_producer", "net_http_server"] {
        gs.wait_for_line(&["probe attached", probe, &format!("pid={ppid}")], Duration::from_secs(60));
    }
    for (_, _, c) in &consumers {
        gs.wait_for_line(&["probe attached", "kafka_consumer", &format!("pid={}", c.pid())], Duration::from_secs(60));
        gs.wait_for_line(&["probe attached", "net_http_client", &format!("pid={}", c.pid())], Duration::from_secs(60));
    }

    let mut conn = HttpConn::connect(&producer.addr);
    let mut produced = Vec::new();
    for (route, topic, messages) in plan() {
        let x = conn.request("GET", &format!("/{route}?{}", query(topic, &messages)), &[], b"");
        assert_eq!(x.status, 200, "/{route} {topic}: {}", String::from_utf8_lossy(&x.body));
        produced.push(Produced { route, topic, messages, exchange: x });
    }
    let total: usize = produced.iter().map(|p| p.messages.len()).sum();

    // Every message arrives, byte for byte.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let lines = loop {
        let lines: Vec<Consumed> = consumers.iter().flat_map(|(_, _, c)| consumed(&c.output())).collect();
        if lines.len() >= total {
            break lines;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} of {total} messages consumed; logs:\n{}",
            lines.len(),
            consumers.iter().map(|(_, _, c)| c.output()).collect::<Vec<_>>().join("\n")
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let by_value: HashMap<&str, &Consumed> = lines.iter().map(|c| (c.value.as_str(), c)).collect();
    for p in &produced {
        for m in &p.messages {
            let c = by_value.get(hex(&m.value).as_str()).unwrap_or_else(|| panic!("{p:?}: {m:?} not consumed"));
            assert_eq!(c.topic, p.topic, "{m:?}");
            assert_eq!(c.key, m.key.as_deref().map(hex), "{}: key of {m:?} at the consumer", p.route);
        }
    }

    let pids: Vec<i64> =
        std::iter::once(ppid).chain(consumers.iter().map(|(_, _, c)| c.pid())).map(|p| p as i64).collect();
    let ours = |sp: &[Span]| -> Vec<Span> {
        sp.iter().filter(|s| s.resource_int("process.pid").is_some_and(|p| pids.contains(&p))).cloned().collect()
    };
    let producer_spans = produced.iter().map(|p| if p.route == "kafkago" { 1 } else { p.messages.len() }).sum();
    let process_spans = total;
    collector.wait_for(Duration::from_secs(30), |sp| {
        let s = ours(sp);
        s.iter().filter(|s| s.kind == PRODUCER).count() >= producer_spans
            && s.iter().filter(|s| s.kind == CONSUMER).count() >= process_spans
    });
    std::thread::sleep(Duration::from_millis(800)); // any duplicate arrives
    let code = gs.terminate(Duration::from_secs(20));
    let log = gs.output();
    assert_eq!(code, Some(0), "gosight exit:\n{log}");
    let spans = ours(&collector.spans());
    let pid_of = |s: &Span| s.resource_int("process.pid").unwrap_or(0);

    // Producer side: per request, its server span and the send spans under it.
    let mut send_of_value: HashMap<String, &Span> = HashMap::new();
    let compressed: Vec<String> = produced
        .iter()
        .filter(|p| p.route == "sarama/snappy")
        .flat_map(|p| p.messages.iter().map(|m| hex(&m.value)))
        .collect();
    for p in &produced {
        let what = format!("{set}: /{} {}", p.route, p.topic);
        let x = &p.exchange;
        let path = format!("/{}", p.route);
        let srv: Vec<&Span> = spans
            .iter()
            .filter(|s| s.kind == SERVER && pid_of(s) == ppid as i64 && s.attr_str("url.path") == Some(&path))
            .filter(|s| s.start_ns >= x.sent_ns && s.end_ns <= x.done_ns)
            .collect();
        assert_eq!(srv.len(), 1, "{what}: one server span in the request's window: {srv:#?}");
        let srv = srv[0];
        let mut sends: Vec<&Span> =
            spans.iter().filter(|s| s.kind == PRODUCER && s.parent_span_id == srv.span_id).collect();
        sends.sort_by_key(|s| s.start_ns);
        let want = if p.route == "kafkago" { 1 } else { p.messages.len() };
        assert_eq!(sends.len(), want, "{what}: send spans {sends:#?}\ngosight log:\n{log}");
        let results: Vec<serde_json::Value> = serde_json::from_slice(&x.body).unwrap();
        for (i, s) in sends.iter().enumerate() {
            assert_eq!(s.name, format!("send {}", p.topic), "{what}");
            assert_eq!(s.trace_id, srv.trace_id, "{what}");
            assert!(s.start_ns >= srv.start_ns && s.end_ns <= srv.end_ns, "{what}: send inside its server span");
            assert_eq!(s.attr_str("messaging.system"), Some("kafka"), "{what}");
            assert_eq!(s.attr_str("messaging.operation.name"), Some("send"), "{what}");
            assert_eq!(s.attr_str("messaging.operation.type"), Some("send"), "{what}");
            assert_eq!(s.attr_str("messaging.destination.name"), Some(p.topic), "{what}");
            assert_eq!(s.status_code, 0, "{what}");
            if p.route == "kafkago" {
                let n = p.messages.len() as i64;
                assert_eq!(s.attr_int("messaging.batch.message_count"), (n > 1).then_some(n), "{what}: {s:#?}");
                let key = p.messages[0].key.as_deref().filter(|_| n == 1);
                assert_eq!(s.attr_str("messaging.kafka.message.key"), printable(key), "{what}: {s:#?}");
                for m in &p.messages {
                    send_of_value.insert(hex(&m.value), s);
                }
                continue;
            }
            // sarama: one per message; the broker's partition and offset, as the
            // app was told them.
            let partition = s.attr_str("messaging.destination.partition.id").expect("partition").to_string();
            let offset = s.attr_int("messaging.kafka.offset").expect("offset");
            let r = results
                .iter()
                .position(|r| {
                    r["partition"].as_i64().map(|p| p.to_string()) == Some(partition.clone())
                        && r["offset"].as_i64() == Some(offset)
                })
                .unwrap_or_else(|| panic!("{what}: span {i} at {partition}/{offset} not in the reply {results:?}"));
            let m = &p.messages[r];
            assert_eq!(s.attr_str("messaging.kafka.message.key"), printable(m.key.as_deref()), "{what}: {s:#?}");
            assert!(
                s.attr_str("messaging.batch.message_count").is_none()
                    && s.attr_int("messaging.batch.message_count").is_none()
            );
            send_of_value.insert(hex(&m.value), s);
        }
    }

    // Consumer side: per consumed message, its process span and its downstream call.
    for c in &lines {
        let lib = TOPICS.iter().find(|(t, _)| *t == c.topic).unwrap().1;
        let what = format!("{set}: {lib} {}/{}/{}", c.topic, c.partition, c.offset);
        let proc: Vec<&Span> = spans
            .iter()
            .filter(|s| {
                s.kind == CONSUMER
                    && s.attr_str("messaging.destination.name") == Some(&c.topic)
                    && s.attr_str("messaging.destination.partition.id") == Some(&c.partition.to_string())
                    && s.attr_int("messaging.kafka.offset") == Some(c.offset)
            })
            .collect();
        assert_eq!(
            proc.len(),
            1,
            "{what}: one process span: {proc:#?}\nall of them: {:#?}\ngosight log:\n{log}",
            spans.iter().filter(|s| s.kind == CONSUMER).map(|s| (&s.name, &s.attrs)).collect::<Vec<_>>()
        );
        let s = proc[0];
        assert_eq!(s.name, format!("process {}", c.topic), "{what}");
        assert_eq!(s.attr_str("messaging.system"), Some("kafka"), "{what}");
        assert_eq!(s.attr_str("messaging.operation.name"), Some("process"), "{what}");
        assert_eq!(s.attr_str("messaging.operation.type"), Some("process"), "{what}");
        let key = c.key.as_deref().map(|k| {
            (0..k.len()).step_by(2).map(|i| u8::from_str_radix(&k[i..i + 2], 16).unwrap()).collect::<Vec<u8>>()
        });
        assert_eq!(s.attr_str("messaging.kafka.message.key"), printable(key.as_deref()), "{what}: {s:#?}");
        assert_eq!(s.attr_str("server.address"), Some("127.0.0.1"), "{what}: {s:#?}");
        assert_eq!(s.attr_int("server.port"), Some(kafka.port as i64), "{what}: {s:#?}");
        assert_eq!(s.attr_str("messaging.consumer.group.name"), Some(GROUP), "{what}: {s:#?}");
        let calls: Vec<&Span> = spans.iter().filter(|x| x.kind == CLIENT && x.parent_span_id == s.span_id).collect();
        assert_eq!(calls.len(), 1, "{what}: the downstream call is the process span's child: {calls:#?}");
        let call = calls[0];
        assert_eq!(call.trace_id, s.trace_id, "{what}");
        assert!(call.start_ns >= s.start_ns && call.end_ns <= s.end_ns, "{what}: downstream call inside process");
        let send = send_of_value.get(&c.value).unwrap_or_else(|| panic!("{what}: no send span"));
        if compressed.contains(&c.value) {
            assert!(s.parent_span_id.is_empty() && s.trace_id != send.trace_id, "{what}: snappy: no context {s:#?}");
            assert_eq!(s.links, [(send.trace_id.clone(), send.span_id.clone())], "{what}: snappy: linked to its send");
        } else {
            assert_eq!(s.trace_id, send.trace_id, "{what}: process span in the producer's trace");
            assert_eq!(s.parent_span_id, send.span_id, "{what}: process span's parent is the send span");
            assert!(s.links.is_empty(), "{what}: a parent and no link");
        }
    }

    // RED: one messaging observation per send and per process span, by topic and
    // operation (flushed at SIGTERM).
    let mut want: std::collections::BTreeMap<(String, String, String), u64> = Default::default();
    for s in spans.iter().filter(|s| s.kind == PRODUCER || s.kind == CONSUMER) {
        let metric =
            if s.kind == CONSUMER { "messaging.process.duration" } else { "messaging.client.operation.duration" };
        let topic = s.attr_str("messaging.destination.name").unwrap_or_default().to_string();
        let op = s.attr_str("messaging.operation.name").unwrap_or_default().to_string();
        *want.entry((metric.to_string(), topic, op)).or_default() += 1;
    }
    let mut got: std::collections::BTreeMap<(String, String, String), u64> = Default::default();
    for _ in 0..50 {
        got.clear();
        for p in collector.metric_points() {
            if p.name.starts_with("messaging.") && p.attr_str("messaging.system") == Some("kafka") {
                assert!(p.attr_str("messaging.kafka.message.key").is_none(), "{set}: key in a metric: {p:?}");
                let topic = p.attr_str("messaging.destination.name").unwrap_or_default().to_string();
                let op = p.attr_str("messaging.operation.name").unwrap_or_default().to_string();
                *got.entry((p.name.clone(), topic, op)).or_default() += p.value as u64;
            }
        }
        if got == want {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(got, want, "{set}: messaging metric counts by (metric, topic, operation)");

    let hits: Vec<&str> = log.lines().filter(|l| l.contains("probe detached") && l.contains("kafka")).collect();
    println!("{set}{}: {} messages, {} spans; {hits:#?}", if stripped { " stripped" } else { "" }, total, spans.len());
}

/// The key attribute a key must give: present only when it is printable UTF-8.
fn printable(key: Option<&[u8]>) -> Option<&str> {
    let s = std::str::from_utf8(key?).ok()?;
    (!s.is_empty() && !s.chars().any(char::is_control)).then_some(s)
}

#[test]
fn kafka_new() {
    run("new", false);
}

#[test]
fn kafka_new_stripped() {
    run("new", true);
}

#[test]
fn kafka_old() {
    run("old", false);
}

#[test]
fn kafka_old_stripped() {
    run("old", true);
}
