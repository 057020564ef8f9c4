//! A real Redis server for the go-redis tests, started by each test for itself:
//! Debian's `redis-server`, installed by scripts/install-redis.sh (which prints
//! its path, exported by scripts/test.sh as `GOSIGHT_REDIS_SERVER`). Debian's
//! packaged service is never used.
//!
//! [`Redis::start`] runs the server on 127.0.0.1 at a free port, without
//! persistence (`--save '' --appendonly no`), in a temporary directory, and waits
//! until it answers PING. Dropping the value kills the server, waits for it and
//! removes the directory. [`Redis::command`] speaks RESP for the test's own
//! checks.
//!
//! A test killed before its `Drop` runs leaves a server behind: every start first
//! reaps directories named `gosight-redis-<pid>-<port>` whose creating process is
//! gone (their server, pid in `server.pid` and checked to be `redis-server`, is
//! killed).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::process::Child;
use crate::{free_port, require};

/// Instance directories are `<temp>/gosight-redis-<pid>-<port>`.
const PREFIX: &str = "gosight-redis-";

/// The server binary: `GOSIGHT_REDIS_SERVER`, else `redis-server` on PATH or
/// in /usr/bin.
pub fn redis_server_bin() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("GOSIGHT_REDIS_SERVER") {
        let p = PathBuf::from(p);
        return p.is_file().then_some(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("redis-server"))
        .chain(std::iter::once(PathBuf::from("/usr/bin/redis-server")))
        .find(|p| p.is_file())
}

/// [`crate::require`] for the Redis server (scripts/install-redis.sh installs it).
pub fn require_redis() -> bool {
    require("redis-server (GOSIGHT_REDIS_SERVER; scripts/install-redis.sh)", redis_server_bin().is_some())
}

/// A Redis server of this test's own.
pub struct Redis {
    pub port: u16,
    /// `redis-server --version`'s `v=` field (`7.0.15`).
    pub version: String,
    dir: PathBuf,
    child: Option<Child>,
}

impl Redis {
    /// Starts a fresh server (a few milliseconds).
    pub fn start() -> Redis {
        let bin = redis_server_bin().expect("redis-server (scripts/install-redis.sh)");
        let out = Command::new(&bin).arg("--version").output().expect("redis-server --version");
        let version = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .find_map(|w| w.strip_prefix("v=").map(str::to_string))
            .unwrap_or_default();
        crate::server_dirs::reap(PREFIX, &["redis-server"], "redis");
        for attempt in 0.. {
            let port = free_port();
            let dir = std::env::temp_dir().join(format!("{PREFIX}{}-{port}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            let mut cmd = Command::new(&bin);
            cmd.args(["--bind", "127.0.0.1", "--port", &port.to_string(), "--save", "", "--appendonly", "no"])
                .args(["--daemonize", "no", "--protected-mode", "no", "--dir"])
                .arg(&dir)
                .current_dir(&dir);
            let child = Child::spawn("redis", cmd, &dir);
            std::fs::write(dir.join("server.pid"), child.pid().to_string()).unwrap();
            let mut r = Redis { port, version: version.clone(), dir, child: Some(child) };
            match r.wait_ready() {
                Ok(()) => {
                    eprintln!("redis {} on 127.0.0.1:{port}", r.version);
                    return r;
                }
                Err(log) if attempt < 3 && log.contains("Address already in use") => drop(r),
                Err(log) => panic!("redis-server did not start; log:\n{log}"),
            }
        }
        unreachable!()
    }

    /// Waits until the server answers PING (Err: its log, once it exited or 10 s
    /// passed).
    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(reply) = self.try_command(&["PING"]) {
                if reply == "PONG" {
                    return Ok(());
                }
            }
            let exited = self.child.as_mut().is_some_and(|c| !c.is_running());
            if exited || Instant::now() > deadline {
                return Err(self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Runs one command on a new connection; returns its reply as text (a simple
    /// string, an error as `-ERR ...`, an integer, a bulk string, `(nil)`, or an
    /// array's elements joined by newlines).
    pub fn command(&self, args: &[&str]) -> String {
        self.try_command(args).unwrap_or_else(|e| panic!("redis {args:?}: {e}"))
    }

    fn try_command(&self, args: &[&str]) -> std::io::Result<String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut req = format!("*{}\r\n", args.len());
        for a in args {
            req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        s.write_all(req.as_bytes())?;
        read_reply(&mut BufReader::new(s))
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        self.child.as_ref().map(|c| c.output()).unwrap_or_default()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

fn read_reply(r: &mut impl BufRead) -> std::io::Result<String> {
    let mut line = String::new();
    r.read_line(&mut line)?;
    let line = line.trim_end_matches("\r\n");
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, format!("bad reply {line:?}"));
    let (kind, rest) = line.split_at_checked(1).ok_or_else(bad)?;
    match kind {
        "+" | ":" => Ok(rest.to_string()),
        "-" => Ok(line.to_string()),
        "$" => {
            let n: i64 = rest.parse().map_err(|_| bad())?;
            if n < 0 {
                return Ok("(nil)".into());
            }
            let mut buf = vec![0; n as usize + 2];
            r.read_exact(&mut buf)?;
            buf.truncate(n as usize);
            Ok(String::from_utf8_lossy(&buf).into_owned())
        }
        "*" => {
            let n: i64 = rest.parse().map_err(|_| bad())?;
            let items: std::io::Result<Vec<String>> = (0..n.max(0)).map(|_| read_reply(r)).collect();
            Ok(items?.join("\n"))
        }
        _ => Err(bad()),
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        drop(self.child.take()); // killed and waited for
        crate::server_dirs::remove_dir(&self.dir, "redis");
    }
}
