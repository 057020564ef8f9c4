//! Kafka producer → consumer context through a real broker: the in-kernel
//! insertion of a `traceparent` record header (uprobes/context_propagation/kafka*.h)
//! into the Produce requests of IBM/sarama's SyncProducer (its default protocol
//! version) and segmentio/kafka-go's Writer, read back by kafka-go's Reader.
//!
//! The app (tests/go-apps/kafkaoffer) calls `main.Offer(key, value, ctx)` with each
//! message just before producing it; a test-only uprobe there
//! (uprobes/tests/kafka_offer/probe.bpf.c) calls `kafka_offer_context` as the real
//! producer probes do. The propagation programs run through the crate's API
//! (`KernelPropagation`, no sidecar), the app registered as a Kafka producer.
//!
//! - `records_carry_the_offered_context`: every offered record is consumed with
//!   exactly one `traceparent` header holding the offered context, keys (a nil and
//!   an empty one included) and values byte-identical, records not offered get none, and the
//!   produce calls succeed (the broker checks each batch's CRC-32C). Record
//!   lengths are chosen so that the length varint grows (1 → 2 and 2 → 3 bytes),
//!   and a batch so that its records size grows (a varint in sarama's default
//!   Produce v9; kafka-go sends v8, an int32).
//!   A record with the app's own `traceparent` keeps it, unchanged and alone,
//!   whether offered or not. Two records the fingerprint cannot tell apart, in one
//!   batch: one carries the later offer's context, the other none, counted
//!   (`kafka_shared`). Then the cost per sk_msg run is measured with BPF
//!   run-time statistics, offered and not.
//! - `compressed_batches_are_left_alone`: with snappy and with gzip compression,
//!   the offered records arrive without a header, intact, and the batches are
//!   counted (`kafka_compressed`).
//! - `untraced_producer_is_untouched`: a producer that is not registered, whose
//!   offers are pending all the same, has no socket enrolled and its records
//!   arrive as produced.
//!
//! Needs root, BTF, a cgroup v2 mount, a BPF filesystem at /sys/fs/bpf, go, Java
//! and Kafka (scripts/install-kafka.sh); otherwise prints `SKIPPED: <why>` (panics
//! when CI=true). Run with `--test-threads=1`.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::Duration;

use aya::programs::uprobe::{UProbeAttachLocation, UProbeAttachPoint, UProbeScope};
use aya::programs::UProbe;
use aya::{Ebpf, EbpfLoader};
use gosight_e2e::kafka::{require_kafka, Kafka};
use gosight_e2e::{build_go_app, require, require_all, serial, tmpdir};
use gosight_uprobes::bpffs::{while_pinned, PinDir};
use gosight_uprobes::context_propagation::{Counters, KernelPropagation, TARGET_KAFKA_PRODUCER};
use serde_json::{json, Value};

const CLIENTS: [&str; 2] = ["sarama", "kafkago"];

fn cgroup2_root() -> Option<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    mounts.lines().find_map(|l| {
        let (pre, post) = l.split_once(" - ")?;
        let mount_point = pre.split_whitespace().nth(4)?;
        post.starts_with("cgroup2 ").then(|| PathBuf::from(mount_point))
    })
}

fn prerequisites() -> bool {
    require_all()
        && require("a cgroup v2 mount", cgroup2_root().is_some())
        && require("a BPF filesystem at /sys/fs/bpf", Path::new("/sys/fs/bpf").is_dir())
        && require_kafka()
}

/// The propagation programs on the cgroup v2 root, plus the test's offer probe
/// sharing their `pending_kafka` map.
struct Setup {
    kp: KernelPropagation,
    offer: Ebpf,
    pin: PinDir,
    exe: PathBuf,
    dir: PathBuf,
}

impl Setup {
    fn start(tag: &str) -> Setup {
        let pin = PinDir::create(Path::new("/sys/fs/bpf")).expect("shared maps");
        let cgroup = cgroup2_root().expect("cgroup2 mount");
        let kp = KernelPropagation::start(&pin.path, &cgroup).expect("KernelPropagation::start");
        let obj = Path::new(gosight_uprobes::TEST_OBJECTS_DIR).join("test_kafka_offer.bpf.o");
        let bytes = std::fs::read(&obj).unwrap_or_else(|e| panic!("{}: {e}", obj.display()));
        let mut loader = EbpfLoader::new();
        let pins: Vec<(&str, PathBuf)> = gosight_uprobes::SHARED_MAPS.iter().map(|m| (*m, pin.path.join(m))).collect();
        for (name, path) in &pins {
            loader.map_pin_path(name, path.as_path());
        }
        let mut offer = while_pinned(&pin.path, || loader.load(&bytes)).expect("load the offer probe");
        let p: &mut UProbe = offer.program_mut("offer").expect("offer").try_into().expect("a uprobe");
        p.load().expect("verifier: offer");
        let exe = build_go_app("kafkaoffer", None, false);
        Setup { kp, offer, pin, exe, dir: tmpdir(tag) }
    }

    /// Starts a producer, registered as a Kafka producer target when `traced`;
    /// the offer probe is attached to it either way.
    fn producer(&mut self, kafka: &Kafka, topic: &str, compression: &str, traced: bool) -> Producer {
        let name = format!("producer-{topic}-{compression}");
        let mut pr = Producer::spawn(&self.exe, &self.dir, &name, kafka, topic, compression);
        if traced {
            self.kp.register(pr.pid, TARGET_KAFKA_PRODUCER).expect("register");
        }
        let p: &mut UProbe = self.offer.program_mut("offer").unwrap().try_into().unwrap();
        let point = UProbeAttachPoint { location: UProbeAttachLocation::Symbol("main.Offer"), cookie: None };
        let scope = UProbeScope::OneProcess(std::num::NonZeroU32::new(pr.pid).unwrap());
        p.attach(point, &self.exe, scope).expect("attach at main.Offer");
        pr.begin();
        pr
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.pin.path);
    }
}

/// The producer app, driven line by line over stdin/stdout.
struct Producer {
    child: std::process::Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
    pid: u32,
    log: PathBuf,
}

impl Producer {
    fn spawn(exe: &Path, dir: &Path, name: &str, kafka: &Kafka, topic: &str, compression: &str) -> Producer {
        let log = dir.join(format!("{name}.log"));
        let mut child = Command::new(exe)
            .args(["produce", "-brokers", &kafka.bootstrap(), "-topic", topic, "-compression", compression])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn kafkaoffer");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let pid = child.id();
        Producer { child, stdin, lines, pid, log }
    }

    fn line(&self) -> String {
        self.lines.recv_timeout(Duration::from_secs(60)).unwrap_or_else(|e| {
            panic!("producer {}: no answer ({e}); stderr:\n{}", self.pid, std::fs::read_to_string(&self.log).unwrap())
        })
    }

    /// Lets it connect its clients.
    fn begin(&mut self) {
        writeln!(self.stdin, "start").unwrap();
        assert_eq!(self.line(), "READY");
    }

    /// Produces `msgs` with `client` in one call; the app's answer.
    fn send(&mut self, client: &str, msgs: &[Msg]) -> Value {
        let batch = json!({ "client": client, "msgs": msgs.iter().map(Msg::json).collect::<Vec<_>>() });
        writeln!(self.stdin, "{batch}").unwrap();
        serde_json::from_str(&self.line()).expect("JSON answer")
    }

    fn send_ok(&mut self, client: &str, msgs: &[Msg]) {
        let answer = self.send(client, msgs);
        assert_eq!(answer, json!({"ok": true}), "{client}: produce failed");
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Clone)]
struct Msg {
    key: Option<Vec<u8>>,
    value: Vec<u8>,
    offer: Option<String>,
    own: Option<String>,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl Msg {
    fn json(&self) -> Value {
        json!({ "key": self.key.as_deref().map(hex), "value": hex(&self.value), "offer": self.offer, "own": self.own })
    }

    /// The headers the consumer must see.
    fn expected_headers(&self, inserting: bool) -> Vec<(String, String)> {
        match (&self.own, &self.offer) {
            (Some(own), _) => vec![("traceparent".into(), hex(own.as_bytes()))],
            (None, Some(tp)) if inserting => vec![("traceparent".into(), hex(tp.as_bytes()))],
            _ => vec![],
        }
    }
}

/// A distinct traceparent per n.
fn traceparent(n: u64) -> String {
    format!("00-{:032x}-{:016x}-01", 0x4b61_666b_6100_0000_u128 + n as u128, 0x5300_0000 + n)
}

/// A value of `len` bytes that starts with `tag` (distinct values: records are
/// matched by value).
fn value(tag: &str, len: usize) -> Vec<u8> {
    let mut v = tag.as_bytes().to_vec();
    v.extend((0..len.saturating_sub(tag.len())).map(|i| b'a' + (i % 26) as u8));
    v.truncate(len.max(tag.len()));
    v
}

fn msg(key: Option<&str>, value: Vec<u8>, offer: Option<u64>, own: Option<u64>) -> Msg {
    Msg {
        key: key.map(|k| k.as_bytes().to_vec()),
        value,
        offer: offer.map(traceparent),
        own: own.map(|n| traceparent(1_000_000 + n)),
    }
}

/// The messages of one client: small records (length varint 1 → 2 bytes), a nil
/// key (null on the wire) and an empty one, a record of about 8.1 KB (2 → 3
/// bytes), one not offered; then a batch where the app sets its own traceparent
/// on two records (one offered); a record alone, and a batch small enough that
/// its records size grows a byte.
fn messages(client: &str, base: u64) -> Vec<Vec<Msg>> {
    let t = |s: &str| format!("{client}-{s}");
    vec![
        vec![
            msg(Some("k-small"), value(&t("small"), 20), Some(base + 1), None),
            msg(None, value(&t("nil-key"), 100), Some(base + 2), None),
            msg(Some(""), value(&t("empty-key"), 30), Some(base + 9), None),
            msg(Some("order-42"), value(&t("large"), 8140), Some(base + 3), None),
            msg(Some("a-key-longer-than-sixteen-bytes"), value(&t("mid"), 300), Some(base + 4), None),
            msg(Some("k-none"), value(&t("not-offered"), 50), None, None),
        ],
        vec![
            msg(Some("own-1"), value(&t("own-offered"), 40), Some(base + 5), Some(base + 5)),
            msg(Some("own-2"), value(&t("own-only"), 40), None, Some(base + 6)),
            msg(Some("plain"), value(&t("beside-own"), 40), Some(base + 7), None),
        ],
        vec![msg(Some("single"), value(&t("single"), 1000), Some(base + 8), None)],
        // A batch under 127 bytes: its records size, a varint from Produce v9 on
        // (sarama's default version), grows a byte.
        vec![msg(Some("t"), value(&t("tiny"), 5), Some(base + 10), None)],
    ]
}

/// One consumed record.
#[derive(Debug)]
struct Record {
    key: Option<String>,
    headers: Vec<(String, String)>,
}

/// The first `n` records of partition 0 of `topic`, by value (hex).
fn consume(exe: &Path, kafka: &Kafka, topic: &str, n: usize) -> HashMap<String, Record> {
    let out = Command::new(exe)
        .args(["consume", "-brokers", &kafka.bootstrap(), "-topic", topic, "-n", &n.to_string()])
        .output()
        .expect("run the consumer");
    assert!(out.status.success(), "consumer: {}", String::from_utf8_lossy(&out.stderr));
    let mut records = HashMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let v: Value = serde_json::from_str(line).expect("consumer JSON");
        let headers = v["headers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| (h[0].as_str().unwrap().to_string(), h[1].as_str().unwrap().to_string()))
            .collect();
        let key = v["key"].as_str().map(str::to_string);
        let prev = records.insert(v["value"].as_str().unwrap().to_string(), Record { key, headers });
        assert!(prev.is_none(), "a value consumed twice: {line}");
    }
    assert_eq!(records.len(), n);
    records
}

/// Every sent message consumed once, key and value byte-identical, with exactly
/// the headers expected.
fn check_records(records: &HashMap<String, Record>, sent: &[Msg], inserting: bool, what: &str) {
    for m in sent {
        let r = records.get(&hex(&m.value)).unwrap_or_else(|| panic!("{what}: a record is missing"));
        // kafka-go's Reader gives a nil key as an empty one.
        let key = m.key.as_deref().map(hex).unwrap_or_default();
        assert_eq!(r.key.clone().unwrap_or_default(), key, "{what}: key changed");
        assert_eq!(r.headers, m.expected_headers(inserting), "{what}: headers of the record with key {key}");
    }
}

fn assert_clean(c: &Counters, what: &str) {
    for (name, v) in [
        ("kafka_split", c.kafka_split()),
        ("kafka_unsupported", c.kafka_unsupported()),
        ("kafka_too_long", c.kafka_too_long()),
        ("kafka_bad_batch", c.kafka_bad_batch()),
        ("kafka_failed", c.kafka_failed()),
        ("kafka_lost", c.kafka_lost()),
        ("kafka_stale", c.kafka_stale()),
    ] {
        assert_eq!(v, 0, "{what}: {name}; all: {}", c.fields());
    }
}

#[test]
fn records_carry_the_offered_context() {
    let _g = serial();
    if !prerequisites() {
        return;
    }
    let kafka = Kafka::start();
    kafka.create_topics(&[("ctx", 1), ("ctx-bench", 1)]);
    let mut s = Setup::start("kafka-context");
    let mut pr = s.producer(&kafka, "ctx", "none", true);
    let mut sent = Vec::new();
    let (mut offered, mut kept_own) = (0, 0);
    for (i, client) in CLIENTS.iter().enumerate() {
        for batch in messages(client, 100 * i as u64) {
            pr.send_ok(client, &batch);
            offered += batch.iter().filter(|m| m.offer.is_some() && m.own.is_none()).count() as u64;
            kept_own += batch.iter().filter(|m| m.offer.is_some() && m.own.is_some()).count() as u64;
            sent.extend(batch);
        }
    }
    // Twins: two records in one batch that the fingerprint cannot tell apart
    // (same lengths, same first 16 bytes), each offered its own context. They
    // share one pending entry: one of them carries the later offer's context, the
    // other none, and the sharing is counted.
    let mut twins = Vec::new();
    for (i, client) in CLIENTS.iter().enumerate() {
        let base = 100 * i as u64;
        let tag = |n: u32| format!("{client}-twin-prefix-{n}");
        let batch = vec![
            msg(Some("twin"), value(&tag(1), 40), Some(base + 11), None),
            msg(Some("twin"), value(&tag(2), 40), Some(base + 12), None),
        ];
        pr.send_ok(client, &batch);
        twins.push((client, batch));
    }
    let c = s.kp.target_counters(pr.pid);
    eprintln!("counters: {}", c.fields());
    let records = consume(&s.exe, &kafka, "ctx", sent.len() + 2 * twins.len());
    check_records(&records, &sent, true, "uncompressed");
    for (client, batch) in &twins {
        let mut got: Vec<&Vec<(String, String)>> = batch.iter().map(|m| &records[&hex(&m.value)].headers).collect();
        got.sort();
        let later = vec![("traceparent".to_string(), hex(batch[1].offer.as_deref().unwrap().as_bytes()))];
        assert_eq!(got, [&vec![], &later], "{client}: twins: one carries the later offer, the other nothing");
    }
    offered += twins.len() as u64;
    assert_eq!(c.kafka_shared(), twins.len() as u64, "{}", c.fields());
    assert!(c.kept_kafka() >= 2, "both clients' connections kept as Kafka: {}", c.fields());
    assert_eq!(c.kafka_inserted(), offered, "{}", c.fields());
    assert_eq!(c.kafka_kept_own(), kept_own, "{}", c.fields());
    assert_eq!(c.kafka_compressed(), 0);
    assert_clean(&c, "uncompressed");

    // Cost per sk_msg run: batches of 1 and of 10 records of 200 bytes, offered
    // and not (figures only: the machine may be busy).
    let _stats = aya::sys::enable_stats(aya::sys::Stats::RunTime).expect("BPF_ENABLE_STATS");
    let mut bench = s.producer(&kafka, "ctx-bench", "none", true);
    let mut inserted = 0;
    for client in CLIENTS {
        for size in [1u64, 10] {
            for offer in [false, true] {
                let (runs0, ns0) = s.kp.insert_stats();
                for b in 0..30u64 {
                    let batch: Vec<Msg> = (0..size)
                        .map(|r| {
                            // Distinct in the first 16 bytes: the fingerprint's reach.
                            let tag = format!("{b}-{r}-{size}-{client}-{offer}");
                            msg(Some("bench"), value(&tag, 200), offer.then_some(10_000 + b * 10 + r), None)
                        })
                        .collect();
                    bench.send_ok(client, &batch);
                }
                let (runs1, ns1) = s.kp.insert_stats();
                let (runs, ns) = (runs1 - runs0, ns1 - ns0);
                eprintln!(
                    "cost {client} {size} record(s)/batch offered={offer}: {runs} sk_msg runs for 30 batches, \
                     {} ns/run, {} ns/record",
                    ns.checked_div(runs).unwrap_or(0),
                    ns / (30 * size)
                );
                if offer {
                    inserted += 30 * size;
                }
            }
        }
    }
    let c = s.kp.target_counters(bench.pid);
    eprintln!("bench counters: {}", c.fields());
    assert_eq!(c.kafka_inserted(), inserted, "{}", c.fields());
    assert_clean(&c, "bench");
}

#[test]
fn compressed_batches_are_left_alone() {
    let _g = serial();
    if !prerequisites() {
        return;
    }
    let kafka = Kafka::start();
    kafka.create_topics(&[("ctx-snappy", 1), ("ctx-gzip", 1)]);
    let mut s = Setup::start("kafka-context-compressed");
    for codec in ["snappy", "gzip"] {
        let topic = format!("ctx-{codec}");
        let mut pr = s.producer(&kafka, &topic, codec, true);
        let mut sent = Vec::new();
        for (i, client) in CLIENTS.iter().enumerate() {
            for batch in messages(client, 100 * i as u64) {
                pr.send_ok(client, &batch);
                sent.extend(batch);
            }
        }
        let records = consume(&s.exe, &kafka, &topic, sent.len());
        check_records(&records, &sent, false, codec);
        let c = s.kp.target_counters(pr.pid);
        eprintln!("{codec} counters: {}", c.fields());
        assert!(c.kept_kafka() >= 2, "{}", c.fields());
        assert_eq!(c.kafka_inserted(), 0, "{}", c.fields());
        assert!(c.kafka_compressed() >= 2, "compressed batches counted, both clients: {}", c.fields());
        assert_clean(&c, codec);
    }
}

#[test]
fn untraced_producer_is_untouched() {
    let _g = serial();
    if !prerequisites() {
        return;
    }
    let kafka = Kafka::start();
    kafka.create_topics(&[("ctx-neighbour", 1)]);
    let mut s = Setup::start("kafka-context-neighbour");
    let before = s.kp.totals();
    let mut pr = s.producer(&kafka, "ctx-neighbour", "none", false);
    let mut sent = Vec::new();
    for (i, client) in CLIENTS.iter().enumerate() {
        for batch in messages(client, 100 * i as u64) {
            pr.send_ok(client, &batch);
            sent.extend(batch);
        }
    }
    let records = consume(&s.exe, &kafka, "ctx-neighbour", sent.len());
    check_records(&records, &sent, false, "untraced");
    let grown = s.kp.totals().saturating_sub(&before);
    assert_eq!(grown, Counters::default(), "nothing counted for an untraced producer: {}", grown.fields());
}
