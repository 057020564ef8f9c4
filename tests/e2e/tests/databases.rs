//! The database harness itself (tests/e2e/src/databases.rs): a PostgreSQL and a
//! MariaDB server of the test's own start, answer a query through their own
//! clients as the app's user, and are gone (process and directory) once dropped.

use std::path::Path;
use std::time::Instant;

use gosight_e2e::databases::{require_databases, MariaDb, Postgres};

fn gone(pid: u32) -> bool {
    // A zombie counts as gone: it is reaped by the Child's drop anyway.
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| s.contains(") Z "))
}

#[test]
fn postgres_and_mariadb_start_answer_and_clean_up() {
    if !require_databases() {
        return;
    }
    let t = Instant::now();
    let pg = Postgres::start();
    eprintln!("postgres {} on {} in {:?}", pg.version, pg.addr(), t.elapsed());
    let t = Instant::now();
    let my = MariaDb::start();
    eprintln!("mariadb {} on {} in {:?}", my.version, my.addr(), t.elapsed());

    assert_eq!(pg.psql("SELECT 40 + 2").trim(), "42");
    assert_eq!(pg.psql("SELECT current_user || '@' || current_database()").trim(), "shop@shop");
    pg.psql("CREATE TABLE t (id int PRIMARY KEY, name text); INSERT INTO t VALUES (1, 'a')");
    assert_eq!(pg.psql("SELECT name FROM t WHERE id = 1").trim(), "a");
    assert!(pg.url().starts_with(&format!("postgres://shop:shop@127.0.0.1:{}/shop", pg.port)));

    assert_eq!(my.mariadb("SELECT 40 + 2").trim(), "42");
    assert_eq!(my.mariadb("SELECT DATABASE()").trim(), "shop");
    my.mariadb("CREATE TABLE t (id INT PRIMARY KEY, name TEXT); INSERT INTO t VALUES (1, 'a')");
    assert_eq!(my.mariadb("SELECT name FROM t WHERE id = 1").trim(), "a");
    assert_eq!(my.dsn(), format!("shop:shop@tcp(127.0.0.1:{})/shop", my.port));

    // Two of a kind side by side: separate ports and directories.
    let pg2 = Postgres::start();
    assert_ne!(pg2.port, pg.port);
    pg2.psql("CREATE TABLE t (id int)"); // no clash with pg's table

    let dirs = vec![pg.dir().to_path_buf(), my.dir().to_path_buf(), pg2.dir().to_path_buf()];
    let pids = server_pids(&dirs);
    drop(pg);
    drop(my);
    drop(pg2);
    for (d, pid) in dirs.iter().zip(pids) {
        assert!(!d.exists(), "{} left behind", d.display());
        assert!(gone(pid), "server {pid} still running");
    }
}

fn server_pids(dirs: &[std::path::PathBuf]) -> Vec<u32> {
    dirs.iter().map(|d| std::fs::read_to_string(d.join("server.pid")).unwrap().trim().parse().unwrap()).collect()
}

/// A run killed before its Drop leaves a server behind: the next start reaps it.
#[test]
fn leftovers_of_a_dead_run_are_reaped() {
    if !require_databases() {
        return;
    }
    // Pose as a dead process: a directory named after a pid that does not exist,
    // holding the pid of a live postgres we then "forget" (mem::forget skips Drop).
    let pg = Postgres::start();
    let dir = pg.dir().to_path_buf();
    let spid: u32 = std::fs::read_to_string(dir.join("server.pid")).unwrap().trim().parse().unwrap();
    // Above pid_max: no process can have it.
    let pid_max: u64 = std::fs::read_to_string("/proc/sys/kernel/pid_max").unwrap().trim().parse().unwrap();
    let dead_pid = pid_max + 1;
    assert!(!Path::new(&format!("/proc/{dead_pid}")).exists());
    let fake = std::env::temp_dir().join(format!("gosight-sqldb-postgres-{dead_pid}-{}", pg.port));
    std::fs::rename(&dir, &fake).unwrap();
    std::mem::forget(pg);
    assert!(!gone(spid), "postgres should still run");

    let my = MariaDb::start(); // reaps on start
    assert!(!fake.exists(), "leftover directory not removed");
    let deadline = Instant::now() + std::time::Duration::from_secs(5);
    while !gone(spid) && Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(gone(spid), "leftover postgres {spid} not killed");
    drop(my);
}
