//! One order's whole path in one trace: tests/go-apps/kafkaapp's `/order` — an
//! HTTP service that uses Redis (a missing key, a MULTI/EXEC with a SET, a
//! pipeline) and then produces the order to Kafka (sarama's SyncProducer or
//! kafka-go's Writer) — and the consumer services (a sarama ConsumerGroup, a
//! kafka-go Reader) that make one HTTP call per message, back to the first
//! service. Real Redis, a real Kafka broker, a real OpenTelemetry Collector; go-redis,
//! sarama, kafka-go and net/http probes in one process, traced by one gosight.
//!
//! Per order, exactly these spans, all in one trace: the `/order` SERVER span;
//! under it `GET` (the missing key, not an error), `MULTI` (`INCR ?;SET ? ?`),
//! `PIPELINE` (`GET ?;EXPIRE ? ?`) and `send <topic>`, in that order and inside
//! it; `process <topic>` under the send span, with the message's key; the
//! consumer's CLIENT call under the process span; the `/downstream` SERVER span
//! under that call (go-redis's connection set-up spans, under the first command
//! on a connection, aside). The old releases' set is run stripped (offsets from
//! the database), the new one with DWARF. The RED histograms count each order
//! once per route, send and process, and Redis once per span. The sarama
//! consumer has taken its claims before gosight starts (their channels are
//! found from the partition consumers' fetches).

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use gosight_e2e::collector::{require_collector, Collector, Span};
use gosight_e2e::kafka::{require_kafka, Kafka};
use gosight_e2e::process::{App, Child, HttpConn};
use gosight_e2e::redis::{require_redis, Redis};
use gosight_e2e::*;

const SERVER: i64 = 2;
const CLIENT: i64 = 3;
const PRODUCER: i64 = 4;
const CONSUMER: i64 = 5;

/// The consumers' topics (2 partitions each) and the library producing to and
/// reading each.
const TOPICS: [(&str, &str); 2] = [("orders-sarama", "sarama"), ("orders-kafkago", "kafkago")];
const ORDERS_PER_TOPIC: usize = 3;

/// The Redis spans under each `/order` span: (name, db.query.text, batch size).
const REDIS: [(&str, &str, Option<i64>); 3] =
    [("GET", "GET ?", None), ("MULTI", "INCR ?;SET ? ?", Some(2)), ("PIPELINE", "GET ?;EXPIRE ? ?", Some(2))];

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn run(set: &str, stripped: bool) {
    if !require_all() || !require_kafka() || !require_redis() {
        return;
    }
    let _serial = serial();
    let Some(col_bin) = require_collector() else { return };
    let what = format!("order flow {set}{}", if stripped { " stripped" } else { "" });
    let exe = build_release_set("kafkaapp", set, stripped);
    let redis = Redis::start();
    let kafka = Kafka::start();
    kafka.create_topics(&TOPICS.map(|(t, _)| (t, 2)));
    let collector = Collector::start(&col_bin);
    let dir = tmpdir(&format!("order-flow-{set}"));

    // The sarama consumer runs, its claims taken, before gosight starts: its
    // claims' channels are found from the partition consumers' fetches.
    let brokers = ["-brokers".to_string(), kafka.bootstrap()];
    let consumer = |topic: &str, lib: &str, start_after: &str, downstream: &str| {
        let mut cmd = Command::new(&exe);
        cmd.args(["-role", "consumer", "-lib", lib, "-topic", topic, "-group", "shipping"])
            .args(["-downstream", downstream, "-start-after", start_after])
            .args(&brokers);
        Child::spawn(&format!("consumer-{lib}"), cmd, &dir)
    };
    // The producer's port is chosen before it starts, for the early consumer's
    // downstream URL.
    let port = free_port();
    let downstream = format!("http://127.0.0.1:{port}/downstream");
    let early = consumer(TOPICS[0].0, TOPICS[0].1, "0s", &downstream);
    early.wait_for_log("sarama consumer: claims", Duration::from_secs(60));
    std::thread::sleep(Duration::from_millis(500));

    let mut cmd = collector.gosight_command();
    cmd.arg("--target-exe").arg(&exe);
    let mut gs = Child::spawn("gosight", cmd, &dir);
    gs.wait_for_log("gosight starting", Duration::from_secs(30));

    let args = [
        &["-role".to_string(), "producer".into(), "-redis".into(), redis.addr()][..],
        &["-addr".to_string(), format!("127.0.0.1:{port}")],
        &brokers[..],
    ]
    .concat();
    let producer = App::start_with(&exe, &dir, "producer", &args);
    // The kafka-go Reader starts once gosight is attached: a fetch already
    // blocked at attach time would miss its message (kafkaapp/PROBING.md).
    let consumers = [early, consumer(TOPICS[1].0, TOPICS[1].1, "8s", &downstream)];
    let ppid = producer.child.pid();
    for probe in ["go_redis_client", "kafka_sarama_producer", "kafka_go_producer", "net_http_server"] {
        gs.wait_for_line(&["probe attached", probe, &format!("pid={ppid}")], Duration::from_secs(60));
    }
    for c in &consumers {
        for probe in ["kafka_consumer", "net_http_client"] {
            gs.wait_for_line(&["probe attached", probe, &format!("pid={}", c.pid())], Duration::from_secs(60));
        }
    }

    // The orders: (topic, lib, id, value), each value unique and not text.
    let mut orders = Vec::new();
    let mut conn = HttpConn::connect(&producer.addr);
    for (topic, lib) in TOPICS {
        for i in 0..ORDERS_PER_TOPIC {
            let id = format!("{lib}-{i}");
            let value = vec![b'o', i as u8, 0x00, 0xff, lib.len() as u8, b'\n'];
            let path = format!("/order?id={id}&topic={topic}&lib={lib}&key=-&value={}", hex(&value));
            let x = conn.request("GET", &path, &[], b"");
            assert_eq!(x.status, 200, "{what}: {path}: {}", String::from_utf8_lossy(&x.body));
            orders.push((topic, lib, id, value));
        }
    }
    let total = orders.len();
    // Every order reaches its consumer, byte for byte.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let lines: Vec<serde_json::Value> = loop {
        let lines: Vec<serde_json::Value> = consumers
            .iter()
            .flat_map(|c| c.output().lines().filter_map(|l| serde_json::from_str(l).ok()).collect::<Vec<_>>())
            .collect();
        if lines.len() >= total {
            break lines;
        }
        assert!(std::time::Instant::now() < deadline, "{what}: {} of {total} orders consumed", lines.len());
        std::thread::sleep(Duration::from_millis(100));
    };
    for (topic, _, id, value) in &orders {
        let l = lines.iter().find(|l| l["value"].as_str() == Some(&hex(value))).expect("consumed");
        assert_eq!(l["topic"].as_str(), Some(*topic), "{what}: {id}");
        assert_eq!(l["key"].as_str(), Some(hex(format!("order-{id}").as_bytes()).as_str()), "{what}: {id}");
    }

    let pids: Vec<i64> = std::iter::once(ppid).chain(consumers.iter().map(|c| c.pid())).map(|p| p as i64).collect();
    let ours = |sp: &[Span]| -> Vec<Span> {
        sp.iter().filter(|s| s.resource_int("process.pid").is_some_and(|p| pids.contains(&p))).cloned().collect()
    };
    collector.wait_for(Duration::from_secs(30), |sp| {
        let s = ours(sp);
        s.iter().filter(|s| s.kind == CONSUMER).count() >= total
            && s.iter().filter(|s| s.kind == SERVER && s.attr_str("url.path") == Some("/downstream")).count() >= total
    });
    std::thread::sleep(Duration::from_millis(800)); // any duplicate arrives
    let code = gs.terminate(Duration::from_secs(20));
    let log = gs.output();
    assert_eq!(code, Some(0), "{what}: gosight exit:\n{log}");
    let spans = ours(&collector.spans());
    let children = |p: &Span| -> Vec<&Span> {
        let mut c: Vec<&Span> = spans.iter().filter(|s| s.parent_span_id == p.span_id).collect();
        c.sort_by_key(|s| s.start_ns);
        c
    };
    let only = |v: Vec<&'_ Span>, kind: i64, name: &str, ctx: &str| -> Span {
        assert_eq!(v.len(), 1, "{ctx}: one {name}: {v:#?}\ngosight log:\n{log}");
        assert_eq!((v[0].kind, v[0].name.as_str()), (kind, name), "{ctx}: {:#?}", v[0]);
        v[0].clone()
    };

    let orders_srv: Vec<&Span> =
        spans.iter().filter(|s| s.kind == SERVER && s.attr_str("url.path") == Some("/order")).collect();
    assert_eq!(orders_srv.len(), total, "{what}: one /order server span per order");
    for (topic, lib, id, value) in &orders {
        let ctx = format!("{what}: order {id}");
        let line = lines.iter().find(|l| l["value"].as_str() == Some(&hex(value))).unwrap();
        let (partition, offset) = (line["partition"].as_i64().unwrap(), line["offset"].as_i64().unwrap());
        // The process span, by where the consumer read the message.
        let process = only(
            spans
                .iter()
                .filter(|s| {
                    s.kind == CONSUMER
                        && s.attr_str("messaging.destination.name") == Some(topic)
                        && s.attr_str("messaging.destination.partition.id") == Some(&partition.to_string())
                        && s.attr_int("messaging.kafka.offset") == Some(offset)
                })
                .collect(),
            CONSUMER,
            &format!("process {topic}"),
            &ctx,
        );
        assert_eq!(process.attr_str("messaging.kafka.message.key"), Some(format!("order-{id}").as_str()), "{ctx}");
        // Up the trace: send → /order.
        let send = spans.iter().find(|s| s.span_id == process.parent_span_id).unwrap_or_else(|| {
            panic!("{ctx}: the process span's parent is not among the spans: {process:#?}\ngosight log:\n{log}")
        });
        assert_eq!((send.kind, send.name.as_str()), (PRODUCER, format!("send {topic}").as_str()), "{ctx}");
        let srv = spans.iter().find(|s| s.span_id == send.parent_span_id).expect("the send span's parent");
        assert_eq!(srv.kind, SERVER, "{ctx}");
        assert_eq!(srv.attr_str("url.path"), Some("/order"), "{ctx}");
        assert_eq!(srv.attr_str("http.route"), Some("/order"), "{ctx}");
        assert!(srv.parent_span_id.is_empty(), "{ctx}: /order is the root");
        // Under /order: the Redis commands, then the send, in order, inside it.
        let under = children(srv);
        let names: Vec<&str> = under.iter().map(|s| s.name.as_str()).collect();
        let want: Vec<String> =
            REDIS.iter().map(|r| r.0.to_string()).chain(std::iter::once(format!("send {topic}"))).collect();
        assert_eq!(names, want, "{ctx}: children of /order: {under:#?}");
        for (s, (name, text, batch)) in under.iter().zip(REDIS) {
            assert_eq!(s.kind, CLIENT, "{ctx}: {name}");
            assert_eq!(s.attr_str("db.system.name"), Some("redis"), "{ctx}: {s:#?}");
            assert_eq!(s.attr_str("db.operation.name"), Some(name), "{ctx}: {s:#?}");
            assert_eq!(s.attr_str("db.query.text"), Some(text), "{ctx}: {s:#?}");
            assert_eq!(s.attr_int("db.operation.batch.size"), batch, "{ctx}: {s:#?}");
            assert_eq!(s.attr_int("server.port"), Some(redis.port as i64), "{ctx}: {s:#?}");
            assert_eq!(s.status_code, 0, "{ctx}: {name} (a missing key is not an error): {s:#?}");
        }
        for w in under.windows(2) {
            assert!(w[0].end_ns <= w[1].start_ns, "{ctx}: {} ends before {} starts", w[0].name, w[1].name);
        }
        for s in &under {
            assert!(s.start_ns >= srv.start_ns && s.end_ns <= srv.end_ns, "{ctx}: {} inside /order", s.name);
        }
        assert_eq!(send.attr_str("messaging.kafka.message.key"), Some(format!("order-{id}").as_str()), "{ctx}");
        if *lib == "sarama" {
            assert_eq!(send.attr_int("messaging.kafka.offset"), Some(offset), "{ctx}: the broker's offset");
        }
        assert!(process.start_ns >= send.start_ns, "{ctx}: processed after it was sent");
        // Down the trace: process → the consumer's call → /downstream.
        let call = only(children(&process), CLIENT, "GET", &ctx);
        assert!(call.start_ns >= process.start_ns && call.end_ns <= process.end_ns, "{ctx}: call inside process");
        let down = only(children(&call), SERVER, "GET /downstream", &ctx);
        assert_eq!(down.resource_int("process.pid"), Some(ppid as i64), "{ctx}: served by the order service");
        assert!(children(&down).is_empty(), "{ctx}: /downstream calls nothing");
        // All of it one trace, and nothing else in it but go-redis's connection
        // set-up under a command.
        let trace: Vec<&Span> = spans.iter().filter(|s| s.trace_id == srv.trace_id).collect();
        let known = [&srv.span_id, &send.span_id, &process.span_id, &call.span_id, &down.span_id];
        for s in &trace {
            let redis_cmd = under.iter().any(|u| u.span_id == s.span_id);
            let setup = under.iter().any(|u| u.span_id == s.parent_span_id && u.kind == CLIENT);
            assert!(known.contains(&&s.span_id) || redis_cmd || setup, "{ctx}: a stray span in the trace: {s:#?}");
        }
        for s in [send, &process, &call, &down] {
            assert_eq!(s.trace_id, srv.trace_id, "{ctx}: {} in the order's trace", s.name);
        }
    }

    // RED: each order once per operation (flushed at SIGTERM).
    let n = ORDERS_PER_TOPIC as u64;
    // Redis: as many as its spans per operation — the orders' commands and
    // go-redis's connection set-up (HELLO, a PIPELINE of CLIENT SETINFO).
    let mut want: BTreeMap<String, u64> = BTreeMap::new();
    for s in spans.iter().filter(|s| s.attr_str("db.system.name") == Some("redis")) {
        *want.entry(format!("redis {}", s.attr_str("db.operation.name").unwrap_or_default())).or_default() += 1;
    }
    want.extend(
        [
            ("/order", total as u64),
            ("messaging.client.operation.duration orders-sarama", n),
            ("messaging.client.operation.duration orders-kafkago", n),
            ("messaging.process.duration orders-sarama", n),
            ("messaging.process.duration orders-kafkago", n),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v)),
    );
    let mut got: BTreeMap<String, u64> = BTreeMap::new();
    for _ in 0..50 {
        got.clear();
        for p in collector.metric_points() {
            let key = match p.name.as_str() {
                "http.server.request.duration" if p.attr_str("http.route") == Some("/order") => "/order".to_string(),
                "db.client.operation.duration" if p.attr_str("db.system.name") == Some("redis") => {
                    format!("redis {}", p.attr_str("db.operation.name").unwrap_or_default())
                }
                "messaging.client.operation.duration" | "messaging.process.duration" => {
                    format!("{} {}", p.name, p.attr_str("messaging.destination.name").unwrap_or_default())
                }
                _ => continue,
            };
            *got.entry(key).or_default() += p.value as u64;
        }
        if want.iter().all(|(k, v)| got.get(k) == Some(v)) {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    for (k, v) in &want {
        assert_eq!(got.get(k), Some(v), "{what}: {k}: {got:?}");
    }
    println!("{what}: {total} orders, {} spans, metrics {got:?}", spans.len());
}

#[test]
fn order_flow_new() {
    run("new", false);
}

#[test]
fn order_flow_old_stripped() {
    run("old", true);
}
