//! Child processes of a test (collector, Go apps, gosight) with their output kept
//! in a file, killed when dropped; and a tiny HTTP/1.1 client that records the
//! wall-clock window of each request.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub struct Child {
    pub name: String,
    pub child: std::process::Child,
    pub log: PathBuf,
}

impl Child {
    /// Spawns `cmd` with stdout and stderr appended to `<dir>/<name>.log`.
    pub fn spawn(name: &str, mut cmd: Command, dir: &Path) -> Child {
        let log = dir.join(format!("{name}.log"));
        let f = std::fs::File::create(&log).unwrap();
        cmd.stdin(Stdio::null()).stdout(f.try_clone().unwrap()).stderr(f);
        let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        Child { name: name.into(), child, log }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for a line containing every one of `needles`; returns that line.
    pub fn wait_for_line(&self, needles: &[&str], timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let out = self.output();
            if let Some(line) = out.lines().find(|l| needles.iter().all(|n| l.contains(n))) {
                return line.to_string();
            }
            if Instant::now() > deadline {
                panic!("{}: no line with {needles:?} within {timeout:?}; output:\n{out}", self.name);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> String {
        self.wait_for_line(&[needle], timeout)
    }

    /// Sends SIGTERM and waits for the exit; returns the exit code.
    pub fn terminate(&mut self, timeout: Duration) -> Option<i32> {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(st)) = self.child.try_wait() {
                return st.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Go test app that prints `listening on <addr>` once it serves.
pub struct App {
    pub child: Child,
    pub addr: String,
    pub exe: PathBuf,
}

impl App {
    pub fn start(exe: &Path, dir: &Path, name: &str) -> App {
        App::start_with(exe, dir, name, &[])
    }

    /// Starts `exe -addr 127.0.0.1:0 <args>` and waits until it listens.
    pub fn start_with(exe: &Path, dir: &Path, name: &str, args: &[String]) -> App {
        let mut cmd = Command::new(exe);
        cmd.args(["-addr", "127.0.0.1:0"]).args(args);
        let child = Child::spawn(name, cmd, dir);
        let line = child.wait_for_log("listening on", Duration::from_secs(20));
        let addr = line.rsplit(' ').next().unwrap().trim().to_string();
        App { child, addr, exe: exe.to_path_buf() }
    }
}

/// Nanoseconds since the Unix epoch, now.
pub fn wall_ns() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos()
}

/// One exchange as the client saw it.
#[derive(Debug, Clone)]
pub struct Exchange {
    pub method: String,
    pub path: String,
    pub status: u16,
    pub body: Vec<u8>,
    /// Wall clock just before the request's first byte was written.
    pub sent_ns: u128,
    /// Wall clock just after the response's last byte was read.
    pub done_ns: u128,
}

/// A keep-alive HTTP/1.1 connection.
pub struct HttpConn {
    stream: BufReader<TcpStream>,
    host: String,
}

impl HttpConn {
    pub fn connect(addr: &str) -> HttpConn {
        let s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s.set_nodelay(true).unwrap();
        HttpConn { stream: BufReader::new(s), host: addr.to_string() }
    }

    pub fn request(&mut self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Exchange {
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: gosight-e2e\r\n", self.host);
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        if !body.is_empty() || method == "POST" || method == "PUT" {
            req.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        req.push_str("\r\n");
        let mut bytes = req.into_bytes();
        bytes.extend_from_slice(body);

        let sent_ns = wall_ns();
        self.stream.get_mut().write_all(&bytes).expect("write request");
        let mut status_line = String::new();
        self.stream.read_line(&mut status_line).expect("read status line");
        let status: u16 = status_line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("status code");
        let mut len = 0usize;
        let mut chunked = false;
        loop {
            let mut line = String::new();
            self.stream.read_line(&mut line).expect("read header");
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            let lower = l.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("content-length:") {
                len = v.trim().parse().unwrap();
            }
            if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
                chunked = true;
            }
        }
        let body = if chunked { self.read_chunked() } else { self.read_exact(len) };
        let done_ns = wall_ns();
        Exchange { method: method.into(), path: path.into(), status, body, sent_ns, done_ns }
    }

    fn read_exact(&mut self, n: usize) -> Vec<u8> {
        let mut buf = vec![0; n];
        self.stream.read_exact(&mut buf).expect("read body");
        buf
    }

    fn read_chunked(&mut self) -> Vec<u8> {
        let mut body = Vec::new();
        loop {
            let mut line = String::new();
            self.stream.read_line(&mut line).unwrap();
            let n = usize::from_str_radix(line.trim().split(';').next().unwrap(), 16).unwrap();
            let chunk = self.read_exact(n + 2);
            body.extend_from_slice(&chunk[..n]);
            if n == 0 {
                return body;
            }
        }
    }
}
