//! Real database servers for the SQL tests, each started by the test for itself:
//! PostgreSQL (Debian's `postgresql`, binaries under /usr/lib/postgresql/<N>/bin)
//! and MariaDB (Debian's `mariadb-server`), both installed by
//! scripts/install-databases.sh. Debian's packaged services are never used.
//!
//! [`Postgres::start`] / [`MariaDb::start`] make a fresh data directory in a
//! temporary directory (`initdb` / `mariadb-install-db`, well under a second
//! each), start the server on 127.0.0.1 at a free port with its own unix socket
//! directory, wait until it answers, and create the database `shop` owned by the
//! user `shop` (password `shop`) that the test apps use. Dropping the value stops
//! the server and removes the directory.
//!
//! The servers refuse to run as root, so they run as Debian's `postgres` /
//! `mysql` users: postgres is exec'd with that uid/gid; mariadbd is started as
//! root with `--user=mysql` and drops privileges itself. The process the test
//! holds is the server itself (no `runuser`/`su` in between), so stopping it is
//! one signal to a known pid.
//!
//! A test killed before its `Drop` runs leaves a server and its directory behind.
//! Every start first reaps such leftovers: directories named
//! `gosight-sqldb-<kind>-<pid>-<port>` whose creating process is gone have their
//! server (pid in `server.pid`, checked by its command name) killed and are
//! removed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::process::Child;
use crate::{free_port, require};

/// The database, user and password every server is set up with.
pub const DATABASE: &str = "shop";
pub const USER: &str = "shop";
pub const PASSWORD: &str = "shop";

/// Instance directories are `<temp>/gosight-sqldb-<kind>-<pid>-<port>`.
const PREFIX: &str = "gosight-sqldb-";

/// The newest PostgreSQL server binaries directory (`/usr/lib/postgresql/<N>/bin`).
pub fn postgres_bin_dir() -> Option<PathBuf> {
    let mut dirs: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            (bin.join("initdb").exists() && bin.join("postgres").exists()).then_some((v, bin))
        })
        .collect();
    dirs.sort();
    dirs.pop().map(|(_, d)| d)
}

fn which(name: &str, fallbacks: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).map(|d| d.join(name)).chain(fallbacks.iter().map(PathBuf::from)).find(|p| p.is_file())
}

fn mariadbd_bin() -> Option<PathBuf> {
    which("mariadbd", &["/usr/sbin/mariadbd"])
}

/// `(uid, gid)` of a system user.
fn user_ids(name: &str) -> Option<(u32, u32)> {
    let c = std::ffi::CString::new(name).ok()?;
    // SAFETY: getpwnam returns a pointer into static storage or null; we copy the
    // two fields out immediately (tests start servers one at a time).
    unsafe {
        let pw = libc::getpwnam(c.as_ptr());
        (!pw.is_null()).then(|| ((*pw).pw_uid, (*pw).pw_gid))
    }
}

/// PostgreSQL's server, initdb, psql and the `postgres` user are all here.
pub fn postgres_available() -> bool {
    postgres_bin_dir().is_some() && which("psql", &[]).is_some() && user_ids("postgres").is_some()
}

/// mariadbd, mariadb-install-db, the mariadb client and the `mysql` user are all here.
pub fn mariadb_available() -> bool {
    mariadbd_bin().is_some()
        && which("mariadb-install-db", &[]).is_some()
        && which("mariadb", &[]).is_some()
        && user_ids("mysql").is_some()
}

/// [`crate::require`] for both servers (scripts/install-databases.sh installs them).
pub fn require_databases() -> bool {
    require("PostgreSQL server binaries and the postgres user (scripts/install-databases.sh)", postgres_available())
        && require("MariaDB server, client and the mysql user (scripts/install-databases.sh)", mariadb_available())
}

/// A server process and its directory: stops the one and removes the other on drop.
struct Instance {
    dir: PathBuf,
    child: Option<Child>,
    /// Signal for an orderly, quick stop (postgres: SIGINT = fast shutdown;
    /// mariadbd: SIGTERM).
    stop_signal: i32,
}

impl Instance {
    fn new(kind: &str, port: u16) -> Instance {
        crate::server_dirs::reap(PREFIX, &["postgres", "mariadbd", "mysqld"], "databases");
        let dir = std::env::temp_dir().join(format!("{PREFIX}{kind}-{}-{port}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        // The servers run unprivileged: they must be able to reach their directories.
        set_mode(&dir, 0o755);
        Instance { dir, child: None, stop_signal: libc::SIGTERM }
    }

    fn spawn(&mut self, name: &str, cmd: Command) {
        let child = Child::spawn(name, cmd, &self.dir);
        std::fs::write(self.dir.join("server.pid"), child.pid().to_string()).unwrap();
        self.child = Some(child);
    }

    fn log(&self) -> String {
        self.child.as_ref().map(|c| c.output()).unwrap_or_default()
    }

    /// Polls `probe` until it succeeds; panics with the server's log if the
    /// server exits or `timeout` passes.
    fn wait_ready(&mut self, what: &str, timeout: Duration, mut probe: impl FnMut() -> Output) {
        let deadline = Instant::now() + timeout;
        loop {
            let out = probe();
            if out.status.success() {
                return;
            }
            let exited = self.child.as_mut().is_some_and(|c| !c.is_running());
            if exited || Instant::now() > deadline {
                panic!(
                    "{what} did not become ready ({}); last probe: {}{}\nserver log:\n{}",
                    if exited { "server exited" } else { "timed out" },
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr),
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// True if the log says the port was taken between choosing and binding it.
    fn lost_port_race(&self) -> bool {
        let log = self.log();
        log.contains("Address already in use") || log.contains("could not create any TCP/IP sockets")
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(c.pid() as i32, self.stop_signal) };
            let deadline = Instant::now() + Duration::from_secs(10);
            while c.is_running() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            drop(c); // SIGKILL if it is still running, then reaped
        }
        crate::server_dirs::remove_dir(&self.dir, "databases");
    }
}

fn set_mode(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn chown(p: &Path, (uid, gid): (u32, u32)) {
    std::os::unix::fs::chown(p, Some(uid), Some(gid)).unwrap_or_else(|e| panic!("chown {}: {e}", p.display()));
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"))
}

fn run_ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A PostgreSQL server of this test's own.
pub struct Postgres {
    pub host: String,
    pub port: u16,
    pub database: String,
    pub user: String,
    pub password: String,
    /// The server's unix socket directory (superuser `postgres`, trust).
    pub socket_dir: PathBuf,
    pub version: String,
    inst: Instance,
}

impl Postgres {
    /// Starts a fresh server (a few hundred milliseconds) with database `shop`
    /// owned by `shop`/`shop` (password auth over TCP: scram-sha-256).
    pub fn start() -> Postgres {
        for attempt in 0.. {
            match Postgres::try_start() {
                Ok(pg) => return pg,
                Err(inst) if attempt < 3 => drop(inst), // port taken meanwhile: another one
                Err(inst) => panic!("postgres could not bind a port:\n{}", inst.log()),
            }
        }
        unreachable!()
    }

    fn try_start() -> Result<Postgres, Instance> {
        let bin = postgres_bin_dir().expect("PostgreSQL server binaries (scripts/install-databases.sh)");
        let ids = user_ids("postgres").expect("the postgres user");
        let port = free_port();
        let mut inst = Instance::new("postgres", port);
        inst.stop_signal = libc::SIGINT;
        let data = inst.dir.join("data");
        let sock = inst.dir.join("sock");
        std::fs::create_dir_all(&sock).unwrap();
        chown(&sock, ids);
        // initdb creates data/ itself (mode 0700): it needs to write its parent.
        chown(&inst.dir, ids);

        use std::os::unix::process::CommandExt;
        let out = run(Command::new(bin.join("initdb"))
            .uid(ids.0)
            .gid(ids.1)
            .current_dir(&inst.dir)
            .args(["--no-sync", "-E", "UTF8", "--locale=C", "-U", "postgres"])
            .args(["--auth-local=trust", "--auth-host=scram-sha-256", "-D"])
            .arg(&data));
        assert!(
            out.status.success(),
            "initdb failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );

        let mut cmd = Command::new(bin.join("postgres"));
        cmd.uid(ids.0).gid(ids.1).current_dir(&inst.dir).arg("-D").arg(&data);
        cmd.args(["-p", &port.to_string(), "-k"]).arg(&sock);
        for c in [
            "listen_addresses=127.0.0.1",
            "fsync=off",
            "synchronous_commit=off",
            "full_page_writes=off",
            "max_connections=100",
            "log_min_messages=warning",
        ] {
            cmd.args(["-c", c]);
        }
        inst.spawn("postgres", cmd);
        let psql = which("psql", &[]).expect("psql");
        let probe = |sql: &str| {
            let mut c = Command::new(&psql);
            c.args(["-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-U", "postgres", "-d", "postgres", "-h"])
                .arg(&sock)
                .args(["-p", &port.to_string(), "-c", sql]);
            c
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if run(&mut probe("SELECT 1")).status.success() {
                break;
            }
            if inst.lost_port_race() {
                return Err(inst);
            }
            if inst.child.as_mut().is_some_and(|c| !c.is_running()) || Instant::now() > deadline {
                inst.wait_ready("postgres", Duration::ZERO, || run(&mut probe("SELECT 1")));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        run_ok(&mut probe(&format!("CREATE ROLE {USER} LOGIN PASSWORD '{PASSWORD}'")));
        run_ok(&mut probe(&format!("CREATE DATABASE {DATABASE} OWNER {USER}")));
        let version = run_ok(&mut probe("SHOW server_version")).trim().to_string();
        Ok(Postgres {
            host: "127.0.0.1".into(),
            port,
            database: DATABASE.into(),
            user: USER.into(),
            password: PASSWORD.into(),
            socket_dir: sock,
            version,
            inst,
        })
    }

    /// `postgres://shop:shop@127.0.0.1:<port>/shop?sslmode=disable` — understood
    /// by pgx and lib/pq alike.
    pub fn url(&self) -> String {
        format!(
            "postgres://{}:{}@{}:{}/{}?sslmode=disable",
            self.user, self.password, self.host, self.port, self.database
        )
    }

    /// The keyword/value form: `host=127.0.0.1 port=<port> user=shop ...`.
    pub fn dsn(&self) -> String {
        format!(
            "host={} port={} user={} password={} dbname={} sslmode=disable",
            self.host, self.port, self.user, self.password, self.database
        )
    }

    /// `host:port`.
    pub fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// Runs `sql` with psql over TCP as the app's user; returns stdout (`-At`:
    /// unaligned, tuples only). Panics on failure.
    pub fn psql(&self, sql: &str) -> String {
        run_ok(
            Command::new(which("psql", &[]).expect("psql"))
                .env("PGPASSWORD", &self.password)
                .args(["-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-h", &self.host, "-p", &self.port.to_string()])
                .args(["-U", &self.user, "-d", &self.database, "-c", sql]),
        )
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        self.inst.log()
    }

    /// The instance's directory (data, socket, log, `server.pid`); removed on drop.
    pub fn dir(&self) -> &Path {
        &self.inst.dir
    }
}

/// A MariaDB server of this test's own.
pub struct MariaDb {
    pub host: String,
    pub port: u16,
    pub database: String,
    pub user: String,
    pub password: String,
    /// The server's unix socket (OS root connects as `root` through it).
    pub socket: PathBuf,
    pub version: String,
    inst: Instance,
}

impl MariaDb {
    /// Starts a fresh server (about a second) with database `shop` and the user
    /// `shop`/`shop` granted everything on it.
    pub fn start() -> MariaDb {
        for attempt in 0.. {
            match MariaDb::try_start() {
                Ok(m) => return m,
                Err(inst) if attempt < 3 => drop(inst),
                Err(inst) => panic!("mariadbd could not bind a port:\n{}", inst.log()),
            }
        }
        unreachable!()
    }

    fn try_start() -> Result<MariaDb, Instance> {
        let mariadbd = mariadbd_bin().expect("mariadbd (scripts/install-databases.sh)");
        let ids = user_ids("mysql").expect("the mysql user");
        let port = free_port();
        let mut inst = Instance::new("mariadb", port);
        inst.stop_signal = libc::SIGTERM;
        let data = inst.dir.join("data");
        let run_dir = inst.dir.join("run");
        std::fs::create_dir_all(&run_dir).unwrap();
        chown(&run_dir, ids);
        let socket = run_dir.join("mysqld.sock");
        // Small files and buffers: a test server, started often.
        let tuning = ["--innodb-log-file-size=8M", "--innodb-buffer-pool-size=32M", "--skip-log-bin"];

        let out = run(Command::new(which("mariadb-install-db", &[]).expect("mariadb-install-db"))
            .current_dir(&inst.dir)
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .args(["--user=mysql", "--skip-test-db", "--auth-root-authentication-method=socket"])
            .args(tuning));
        assert!(
            out.status.success(),
            "mariadb-install-db failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );

        let mut cmd = Command::new(mariadbd);
        cmd.current_dir(&inst.dir)
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg("--user=mysql")
            .arg("--bind-address=127.0.0.1")
            .arg(format!("--port={port}"))
            .arg(format!("--socket={}", socket.display()))
            .arg(format!("--pid-file={}", run_dir.join("mariadbd.pid").display()))
            .args(["--skip-name-resolve", "--innodb-flush-log-at-trx-commit=0", "--max-connections=200"])
            .args(tuning);
        inst.spawn("mariadbd", cmd);
        let client = which("mariadb", &[]).expect("mariadb client");
        let root = |sql: &str| {
            let mut c = Command::new(&client);
            c.arg("--no-defaults")
                .arg(format!("--socket={}", socket.display()))
                .args(["-u", "root", "-N", "-B", "-e", sql]);
            c
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if run(&mut root("SELECT 1")).status.success() {
                break;
            }
            if inst.lost_port_race() {
                return Err(inst);
            }
            if inst.child.as_mut().is_some_and(|c| !c.is_running()) || Instant::now() > deadline {
                inst.wait_ready("mariadbd", Duration::ZERO, || run(&mut root("SELECT 1")));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // '%' for TCP (names are not resolved), 'localhost' for the socket.
        run_ok(&mut root(&format!(
            "CREATE DATABASE {DATABASE};
             CREATE USER '{USER}'@'%' IDENTIFIED BY '{PASSWORD}';
             CREATE USER '{USER}'@'localhost' IDENTIFIED BY '{PASSWORD}';
             GRANT ALL ON {DATABASE}.* TO '{USER}'@'%';
             GRANT ALL ON {DATABASE}.* TO '{USER}'@'localhost';"
        )));
        let version = run_ok(&mut root("SELECT VERSION()")).trim().to_string();
        Ok(MariaDb {
            host: "127.0.0.1".into(),
            port,
            database: DATABASE.into(),
            user: USER.into(),
            password: PASSWORD.into(),
            socket,
            version,
            inst,
        })
    }

    /// go-sql-driver/mysql's DSN: `shop:shop@tcp(127.0.0.1:<port>)/shop`.
    pub fn dsn(&self) -> String {
        format!("{}:{}@tcp({}:{})/{}", self.user, self.password, self.host, self.port, self.database)
    }

    /// `mysql://shop:shop@127.0.0.1:<port>/shop`.
    pub fn url(&self) -> String {
        format!("mysql://{}:{}@{}:{}/{}", self.user, self.password, self.host, self.port, self.database)
    }

    /// `host:port`.
    pub fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// Runs `sql` with the mariadb client over TCP as the app's user; returns
    /// stdout (`-N -B`: tab-separated, no column names). Panics on failure.
    pub fn mariadb(&self, sql: &str) -> String {
        run_ok(
            Command::new(which("mariadb", &[]).expect("mariadb client"))
                .arg("--no-defaults")
                .args(["-h", &self.host, "-P", &self.port.to_string(), "-u", &self.user])
                .arg(format!("-p{}", self.password))
                .args(["-N", "-B", "-D", &self.database, "-e", sql]),
        )
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        self.inst.log()
    }

    /// The instance's directory (data, socket, log, `server.pid`); removed on drop.
    pub fn dir(&self) -> &Path {
        &self.inst.dir
    }
}
