//! The start-up self-check: does a socket in the propagation map still behave on
//! this kernel? gosight registers itself as a target, opens a loopback connection
//! of its own (so the client end is enrolled exactly as a target's would be), and
//! checks what apps rely on: an edge-triggered epoll wake-up on every arrival,
//! FIONREAD, MSG_PEEK, a blocking recv that returns the bytes sent (never EAGAIN),
//! and a release from the map after a non-HTTP first message that loses nothing.
//!
//! `GOSIGHT_TEST_SELFCHECK_FAIL` (tests only) makes it fail.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use super::{KernelPropagation, TARGET_SELF};

/// Why an enrolled socket misbehaves, or why the check could not run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckError {
    /// The socket misbehaved: propagation must not run in this mode.
    Failed(String),
    /// gosight's own connection was not enrolled (the watched cgroup does not
    /// hold gosight): nothing could be checked.
    NotEnrolled(String),
}

impl std::fmt::Display for CheckError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CheckError::Failed(s) | CheckError::NotEnrolled(s) => f.write_str(s),
        }
    }
}

/// Runs the check in the current mode; gosight is a target only meanwhile.
pub fn run(kp: &mut KernelPropagation) -> Result<(), CheckError> {
    if std::env::var_os("GOSIGHT_TEST_SELFCHECK_FAIL").is_some_and(|v| !v.is_empty() && v != "0") {
        return Err(CheckError::Failed("forced by GOSIGHT_TEST_SELFCHECK_FAIL".into()));
    }
    let me = std::process::id();
    kp.register(me, TARGET_SELF).map_err(|e| CheckError::NotEnrolled(format!("registering gosight: {e}")))?;
    let result = check(kp, me);
    kp.unregister(me);
    result
}

fn fail(what: impl Into<String>) -> CheckError {
    CheckError::Failed(what.into())
}

fn io(what: &str) -> impl Fn(std::io::Error) -> CheckError + '_ {
    move |e| CheckError::Failed(format!("{what}: {e}"))
}

fn check(kp: &KernelPropagation, me: u32) -> Result<(), CheckError> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(io("listen"))?;
    let client = TcpStream::connect(listener.local_addr().map_err(io("listen"))?).map_err(io("connect"))?;
    let (mut server, _) = listener.accept().map_err(io("accept"))?;
    client.set_read_timeout(Some(Duration::from_secs(2))).map_err(io("timeout"))?;
    if !wait_until(Duration::from_secs(1), || kp.target_counters(me).enrolled() >= 1) {
        return Err(CheckError::NotEnrolled(format!(
            "gosight's own test connection was not enrolled (is gosight inside cgroup {}?)",
            kp.cgroup.display()
        )));
    }
    let epoll = Epoll::new(client.as_raw_fd()).map_err(io("epoll"))?;
    let mut client = client;

    // Two arrivals, each must wake epoll and be counted by FIONREAD.
    for (round, n) in [(1, 1000usize), (2, 500)] {
        let data = pattern(n, round);
        server.write_all(&data).map_err(io("send"))?;
        if !epoll.wait(Duration::from_secs(1)) {
            return Err(fail(format!("no epoll wake-up for arrival {round} ({n} bytes)")));
        }
        // One loopback segment carries the arrival: once epoll woke, it is all there
        // (a short wait covers a split arrival).
        let mut avail = 0;
        wait_until(Duration::from_millis(50), || {
            avail = fionread(&client);
            avail >= n
        });
        if avail != n {
            return Err(fail(format!("FIONREAD returned {avail} with {n} bytes waiting")));
        }
        let mut peek = vec![0u8; n];
        let got = client.peek(&mut peek).map_err(io("MSG_PEEK"))?;
        if got != n || peek != data {
            return Err(fail(format!("MSG_PEEK saw {got} of {n} bytes, or other bytes")));
        }
        let mut buf = vec![0u8; n];
        client.read_exact(&mut buf).map_err(io("blocking recv"))?;
        if buf != data {
            return Err(fail("blocking recv returned other bytes than were sent"));
        }
    }

    // A first message that is not HTTP: the socket is released, nothing is lost.
    client.write_all(b"self-check\n").map_err(io("send"))?;
    let mut got = [0u8; 11];
    server.read_exact(&mut got).map_err(io("server recv"))?;
    if &got != b"self-check\n" {
        return Err(fail("the peer received other bytes than were sent"));
    }
    let data = pattern(700, 3);
    server.write_all(&data).map_err(io("send"))?;
    let mut buf = vec![0u8; 700];
    client.read_exact(&mut buf).map_err(io("blocking recv during release"))?;
    if buf != data {
        return Err(fail("bytes received during release differ"));
    }
    // The release waits for an ACK of our data with the psock queue empty: keep
    // sending a byte (read by the peer) until one comes.
    let mut nudges: u32 = 0;
    if !wait_until(Duration::from_secs(2), || {
        if kp.target_counters(me).released() >= 1 {
            return true;
        }
        nudges += 1;
        if nudges.is_multiple_of(20) && client.write_all(b"x").is_ok() {
            let mut one = [0u8; 1];
            let _ = server.read_exact(&mut one);
        }
        false
    }) {
        return Err(fail(format!(
            "the socket was not released after a non-HTTP first message ({})",
            kp.target_counters(me).fields()
        )));
    }
    let data = pattern(300, 4);
    server.write_all(&data).map_err(io("send"))?;
    if !epoll.wait(Duration::from_secs(1)) {
        return Err(fail("no epoll wake-up after release"));
    }
    let mut buf = vec![0u8; 300];
    client.read_exact(&mut buf).map_err(io("recv after release"))?;
    if buf != data {
        return Err(fail("bytes received after release differ"));
    }
    Ok(())
}

fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn fionread(s: &TcpStream) -> usize {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int.
    let rc = unsafe { libc::ioctl(s.as_raw_fd(), libc::FIONREAD, &mut n) };
    if rc == 0 {
        n.max(0) as usize
    } else {
        0
    }
}

/// An edge-triggered epoll set watching one socket for input.
struct Epoll(std::os::fd::OwnedFd);

impl Epoll {
    fn new(fd: i32) -> std::io::Result<Epoll> {
        use std::os::fd::FromRawFd;
        // SAFETY: plain syscalls; the new fd is owned right away.
        let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if ep < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let ep = unsafe { std::os::fd::OwnedFd::from_raw_fd(ep) };
        let mut ev = libc::epoll_event { events: (libc::EPOLLIN | libc::EPOLLET) as u32, u64: 1 };
        // SAFETY: valid fds and event.
        if unsafe { libc::epoll_ctl(ep.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Epoll(ep))
    }

    fn wait(&self, timeout: Duration) -> bool {
        let mut ev = libc::epoll_event { events: 0, u64: 0 };
        // SAFETY: one event slot.
        let n = unsafe { libc::epoll_wait(self.0.as_raw_fd(), &mut ev, 1, timeout.as_millis() as i32) };
        n == 1 && ev.events & libc::EPOLLIN as u32 != 0
    }
}
