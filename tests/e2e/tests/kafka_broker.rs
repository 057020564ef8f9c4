//! The Kafka test harness itself (tests/e2e/src/kafka.rs): a private KRaft broker
//! starts, topics are created over the protocol with a leader for every
//! partition, a producer's bytes reach the log, and dropping the broker stops it
//! and removes its directory. Reports how long formatting and starting take.

use std::path::Path;
use std::time::Instant;

use gosight_e2e::kafka::{require_kafka, Kafka};
use gosight_e2e::serial;

#[test]
fn broker_starts_creates_topics_and_stops() {
    let _g = serial();
    if !require_kafka() {
        return;
    }
    let t = Instant::now();
    let kafka = Kafka::start();
    let started = t.elapsed();
    let t = Instant::now();
    kafka.create_topics(&[("harness-a", 1), ("harness-b", 3)]);
    // Creating again is not an error.
    kafka.create_topics(&[("harness-a", 1)]);
    let created = t.elapsed();
    eprintln!(
        "kafka {}: format {:?} + start {:?} (total {started:?}); two topics created and led in {created:?}",
        kafka.version, kafka.format_time, kafka.startup
    );
    let logs = kafka.dir().join("logs");
    // The leader makes each partition's log directory as it takes the partition.
    let deadline = Instant::now() + std::time::Duration::from_secs(10);
    for p in ["harness-a-0", "harness-b-0", "harness-b-1", "harness-b-2"] {
        while !logs.join(p).is_dir() {
            let have: Vec<_> =
                std::fs::read_dir(&logs).unwrap().filter_map(|e| e.ok()).map(|e| e.file_name()).collect();
            assert!(Instant::now() < deadline, "partition directory {p} missing; log dir has {have:?}");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
    let dir = kafka.dir().to_path_buf();
    let pid = kafka.pid();
    drop(kafka);
    assert!(!dir.exists(), "broker directory left behind");
    assert!(!Path::new(&format!("/proc/{pid}")).exists(), "broker still running");
}
