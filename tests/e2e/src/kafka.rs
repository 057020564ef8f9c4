//! A real Apache Kafka broker for the Kafka tests, started by each test for
//! itself: the release installed by scripts/install-kafka.sh (jars from Maven
//! Central under `GOSIGHT_KAFKA_DIR`), run with the machine's Java 17 in KRaft
//! mode as a combined broker+controller (no ZooKeeper).
//!
//! [`Kafka::start`] formats a fresh log directory in a temporary directory
//! (`kafka.tools.StorageTool format --standalone`), starts `kafka.Kafka` on
//! 127.0.0.1 at a free port (a second free port for the controller listener) with
//! a small heap and settings for one broker and quick consumer groups, and waits
//! for the broker's "Kafka Server started" line. [`Kafka::create_topics`] creates
//! topics over the Kafka protocol itself (a CreateTopics request; no second JVM)
//! and waits until every partition has a leader. Dropping the value kills the
//! broker, waits for it and removes the directory.
//!
//! A test killed before its `Drop` runs leaves a broker behind: every start first
//! reaps directories named `gosight-kafka-<pid>-<port>` whose creating process is
//! gone (their broker, pid in `server.pid` and checked to be `java`, is killed).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::process::Child;
use crate::{cache_dir, free_port, require};

/// Instance directories are `<temp>/gosight-kafka-<pid>-<port>`.
const PREFIX: &str = "gosight-kafka-";

/// The installed Kafka: `GOSIGHT_KAFKA_DIR`, else the newest complete install
/// under `<cache>/kafka/`.
pub fn kafka_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("GOSIGHT_KAFKA_DIR") {
        let d = PathBuf::from(d);
        return d.join("libs").is_dir().then_some(d);
    }
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(cache_dir().join("kafka"))
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.join(".complete").exists())
        .collect();
    dirs.sort();
    dirs.pop()
}

/// `java` on PATH.
pub fn java_bin() -> Option<PathBuf> {
    Command::new("java").arg("-version").output().ok().filter(|o| o.status.success()).map(|_| PathBuf::from("java"))
}

/// [`crate::require`] for Java and the Kafka install (scripts/install-kafka.sh).
pub fn require_kafka() -> bool {
    require("java (Java 17; scripts/install-kafka.sh installs it)", java_bin().is_some())
        && require("Apache Kafka (GOSIGHT_KAFKA_DIR; scripts/install-kafka.sh)", kafka_dir().is_some())
}

/// A Kafka broker of this test's own.
pub struct Kafka {
    /// The PLAINTEXT listener's port on 127.0.0.1.
    pub port: u16,
    /// The Kafka release (`4.1.1`).
    pub version: String,
    /// From spawning the JVM to "Kafka Server started" (storage format excluded).
    pub startup: Duration,
    /// Formatting the log directory (a JVM of its own).
    pub format_time: Duration,
    dir: PathBuf,
    child: Option<Child>,
}

impl Kafka {
    /// Starts a fresh broker (about 2 s to format and 3-4 s to start on 2 cores).
    pub fn start() -> Kafka {
        for attempt in 0.. {
            match Kafka::try_start() {
                Ok(k) => return k,
                Err(k) if attempt < 3 => drop(k), // a port was taken meanwhile
                Err(k) => panic!("kafka could not bind its ports:\n{}", k.log()),
            }
        }
        unreachable!()
    }

    fn try_start() -> Result<Kafka, Box<Kafka>> {
        let home = kafka_dir().expect("Apache Kafka (scripts/install-kafka.sh)");
        let version = std::fs::read_to_string(home.join("VERSION")).unwrap_or_default().trim().to_string();
        crate::server_dirs::reap(PREFIX, &["java"], "kafka");
        let port = free_port();
        let controller_port = loop {
            let p = free_port();
            if p != port {
                break p;
            }
        };
        let dir = std::env::temp_dir().join(format!("{PREFIX}{}-{port}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let logs = dir.join("logs");
        std::fs::create_dir_all(&logs).unwrap();
        let props = dir.join("server.properties");
        std::fs::write(&props, server_properties(port, controller_port, &logs)).unwrap();
        let mut k = Kafka { port, version, startup: Duration::ZERO, format_time: Duration::ZERO, dir, child: None };

        let t = Instant::now();
        let out = java(&home)
            .args(["kafka.tools.StorageTool", "format", "--standalone", "--ignore-formatted", "-t"])
            .arg(cluster_id())
            .arg("-c")
            .arg(&props)
            .output()
            .expect("run java");
        assert!(
            out.status.success(),
            "kafka storage format failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        k.format_time = t.elapsed();

        let t = Instant::now();
        let mut cmd = java(&home);
        cmd.arg("kafka.Kafka").arg(&props).current_dir(&k.dir);
        let child = Child::spawn("kafka", cmd, &k.dir);
        std::fs::write(k.dir.join("server.pid"), child.pid().to_string()).unwrap();
        k.child = Some(child);
        let deadline = t + Duration::from_secs(60);
        loop {
            let log = k.log();
            if log.contains("Kafka Server started") {
                break;
            }
            if log.contains("Address already in use") {
                return Err(Box::new(k));
            }
            let exited = k.child.as_mut().is_some_and(|c| !c.is_running());
            if exited || Instant::now() > deadline {
                panic!(
                    "kafka did not start ({}); log:\n{log}",
                    if exited { "broker exited" } else { "timed out after 60 s" }
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        k.startup = t.elapsed();
        eprintln!(
            "kafka {} on 127.0.0.1:{port}: storage formatted in {:?}, broker started in {:?}",
            k.version, k.format_time, k.startup
        );
        Ok(k)
    }

    /// `127.0.0.1:<port>`, the bootstrap address clients take.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Creates each `(topic, partitions)` (replication factor 1; an existing topic
    /// is fine) and waits until every partition of them has a leader.
    pub fn create_topics(&self, topics: &[(&str, i32)]) {
        let mut conn = Conn::connect(self.port);
        // CreateTopics v4: topics [name, num_partitions, replication_factor,
        // assignments [], configs []], timeout_ms, validate_only.
        let mut body = Vec::new();
        put_i32(&mut body, topics.len() as i32);
        for (name, partitions) in topics {
            put_str(&mut body, name);
            put_i32(&mut body, *partitions);
            body.extend_from_slice(&1i16.to_be_bytes());
            put_i32(&mut body, 0);
            put_i32(&mut body, 0);
        }
        put_i32(&mut body, 30_000);
        body.push(0);
        let resp = conn.call(19, 4, &body);
        let mut r = Reader(&resp);
        r.i32(); // throttle_time_ms
        for _ in 0..r.i32() {
            let name = r.string().unwrap_or_default();
            let code = r.i16();
            let msg = r.string();
            // 36: TOPIC_ALREADY_EXISTS
            assert!(code == 0 || code == 36, "creating topic {name}: error {code} {msg:?}");
        }
        let names: Vec<&str> = topics.iter().map(|t| t.0).collect();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !conn.all_led(&names) {
            assert!(Instant::now() < deadline, "topics {names:?} have no leader after 30 s; log:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The broker's log so far.
    pub fn log(&self) -> String {
        self.child.as_ref().map(|c| c.output()).unwrap_or_default()
    }

    /// The broker's pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.pid()).unwrap_or(0)
    }

    /// The instance's directory (properties, log dir, broker log); removed on drop.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Kafka {
    fn drop(&mut self) {
        drop(self.child.take()); // SIGKILL, then reaped: the data is thrown away anyway
        crate::server_dirs::remove_dir(&self.dir, "kafka");
    }
}

fn java(home: &Path) -> Command {
    let mut cmd = Command::new(java_bin().expect("java"));
    // A small heap, the serial collector and C1 only: a test broker starts often
    // and handles little.
    cmd.args(["-Xms64m", "-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-XX:-UsePerfData"])
        .arg("-Djava.awt.headless=true")
        .arg(format!("-Dlog4j2.configurationFile={}", home.join("log4j2.properties").display()))
        .arg("-cp")
        .arg(format!("{}/*", home.join("libs").display()));
    cmd
}

fn server_properties(port: u16, controller_port: u16, logs: &Path) -> String {
    format!(
        "process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:{controller_port}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs={}
num.partitions=1
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
log.flush.interval.messages=1000000
num.network.threads=2
num.io.threads=2
background.threads=2
",
        logs.display()
    )
}

/// A KRaft cluster id: 16 bytes, URL-safe base64 without padding (22 chars).
fn cluster_id() -> String {
    use sha2::Digest;
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let h = sha2::Sha256::digest(format!("{}-{nanos}", std::process::id()));
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bytes = &h[..16];
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |acc, (i, b)| acc | (*b as u32) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

/// One connection speaking just enough of the Kafka protocol (non-flexible
/// request versions) to create topics and read partition leaders.
struct Conn {
    stream: TcpStream,
    correlation: i32,
}

impl Conn {
    fn connect(port: u16) -> Conn {
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap_or_else(|e| panic!("connect to kafka: {e}"));
        stream.set_read_timeout(Some(Duration::from_secs(40))).unwrap();
        Conn { stream, correlation: 0 }
    }

    /// Sends one request (header v1: api_key, api_version, correlation_id,
    /// client_id) and returns the response body after the correlation id.
    fn call(&mut self, api_key: i16, api_version: i16, body: &[u8]) -> Vec<u8> {
        self.correlation += 1;
        let mut req = Vec::new();
        req.extend_from_slice(&api_key.to_be_bytes());
        req.extend_from_slice(&api_version.to_be_bytes());
        put_i32(&mut req, self.correlation);
        put_str(&mut req, "gosight-e2e");
        req.extend_from_slice(body);
        let mut frame = (req.len() as i32).to_be_bytes().to_vec();
        frame.extend_from_slice(&req);
        self.stream.write_all(&frame).expect("send kafka request");
        let mut len = [0u8; 4];
        self.stream.read_exact(&mut len).expect("read kafka response");
        let mut resp = vec![0u8; i32::from_be_bytes(len) as usize];
        self.stream.read_exact(&mut resp).expect("read kafka response");
        let corr = i32::from_be_bytes(resp[..4].try_into().unwrap());
        assert_eq!(corr, self.correlation, "kafka response out of order");
        resp.split_off(4)
    }

    /// Metadata v4 for `topics`: true when each exists and all its partitions
    /// have a leader.
    fn all_led(&mut self, topics: &[&str]) -> bool {
        let mut body = Vec::new();
        put_i32(&mut body, topics.len() as i32);
        for t in topics {
            put_str(&mut body, t);
        }
        body.push(0); // allow_auto_topic_creation
        let resp = self.call(3, 4, &body);
        let mut r = Reader(&resp);
        r.i32(); // throttle_time_ms
        for _ in 0..r.i32() {
            r.i32(); // node_id
            r.string(); // host
            r.i32(); // port
            r.string(); // rack
        }
        r.string(); // cluster_id
        r.i32(); // controller_id
        let mut ok = true;
        for _ in 0..r.i32() {
            let code = r.i16();
            r.string(); // name
            r.i8(); // is_internal
            let partitions = r.i32();
            ok &= code == 0 && partitions > 0;
            for _ in 0..partitions {
                let pcode = r.i16();
                r.i32(); // partition_index
                let leader = r.i32();
                ok &= pcode == 0 && leader >= 0;
                for _ in 0..2 {
                    let n = r.i32(); // replica_nodes, isr_nodes
                    for _ in 0..n {
                        r.i32();
                    }
                }
            }
        }
        ok
    }
}

fn put_i32(b: &mut Vec<u8>, v: i32) {
    b.extend_from_slice(&v.to_be_bytes());
}

fn put_str(b: &mut Vec<u8>, s: &str) {
    b.extend_from_slice(&(s.len() as i16).to_be_bytes());
    b.extend_from_slice(s.as_bytes());
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> &[u8] {
        assert!(self.0.len() >= n, "short kafka response");
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        a
    }
    fn i8(&mut self) -> i8 {
        self.take(1)[0] as i8
    }
    fn i16(&mut self) -> i16 {
        i16::from_be_bytes(self.take(2).try_into().unwrap())
    }
    fn i32(&mut self) -> i32 {
        i32::from_be_bytes(self.take(4).try_into().unwrap())
    }
    /// A nullable string (length -1: None).
    fn string(&mut self) -> Option<String> {
        let n = self.i16();
        (n >= 0).then(|| String::from_utf8_lossy(self.take(n as usize)).into_owned())
    }
}
