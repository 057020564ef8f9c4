#!/usr/bin/env python3
"""Benchmark: database/sql queries traced by gosight. tests/go-apps/sqlapp's `GET /<driver>/hello`
(one `SELECT 1` through database/sql) for the drivers pgx (stdlib) and lib/pq against a real
PostgreSQL and go-sql-driver/mysql against a real MariaDB, and through pgx's own API (a pgxpool.Pool), under wrk, without and with gosight
(defaults), measured side by side in one run: interleaved rounds, a fresh app per cell, medians.
Also uprobe hits per query of the database_sql_client probe (the aim is 2: entry + return of
queryDC; pgx's Query entry + its rows' Close), hits per request of the net_http_server probe, and gosight's CPU per request. Starts
both database servers itself (loopback, free ports, data in a temporary directory, as
tests/e2e/src/databases.rs does) and removes them at the end. Writes its figures into BENCHMARKS.md.

Run as root:  python3 bench/database_sql.py [--rounds 3] [--seconds 8] [--connections 8]
"""
import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import (ROOT, build_go_app, env_with_tools, free_port, other_gosights, prepare, probe_hits,
                    proc_cpu_seconds, start_collector, start_go_app, start_gosight, stop_gosight, wrk, write_section)

# (label, route prefix, whether the app is built with -tags pgxonly: pgx's database/sql driver the
# only one linked, where database/sql's own functions stay unprobed and pgx's make the span)
CLIENTS = [("pgx", "pgx", False), ("pq", "pq", False), ("mysql", "mysql", False),
           ("pgxnative", "pgxnative", False), ("pgx, pgx-only binary", "pgx", True)]
DRIVERS = [label for label, _, _ in CLIENTS]
SQL_PROBE, HTTP_PROBE = "database_sql_client", "net_http_server"
# The database, user and password the app is given (tests/e2e/src/databases.rs).
DB = USER = PASSWORD = "shop"


def run_ok(cmd, **kw):
    out = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    if out.returncode != 0:
        raise SystemExit(f"bench: {cmd[0]} failed:\n{out.stdout}{out.stderr}")
    return out.stdout


def wait_ready(cmd, server, log, timeout=30):
    """Runs `cmd` (a client's `SELECT 1`) until it succeeds; fails if the server exits or time runs out."""
    deadline = time.time() + timeout
    while subprocess.run([str(c) for c in cmd], capture_output=True).returncode != 0:
        if server.poll() is not None or time.time() > deadline:
            raise SystemExit(f"bench: {cmd[0]}: the server is not ready:\n{Path(log).read_text()}")
        time.sleep(0.05)


def start_postgres(work, servers):
    """A fresh PostgreSQL (the newest under /usr/lib/postgresql) run as the postgres user; returns its
    URL for the app (pgx and lib/pq alike) and its version."""
    bindir = max(Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=lambda p: int(p.parts[-3])).parent
    d = work / "postgres"
    (d / "sock").mkdir(parents=True)
    for p in (d, d / "sock"):
        shutil.chown(p, "postgres", "postgres")
    as_postgres = dict(user="postgres", group="postgres", extra_groups=[], cwd=d)
    run_ok([bindir / "initdb", "--no-sync", "-E", "UTF8", "--locale=C", "-U", "postgres", "--auth-local=trust",
            "--auth-host=scram-sha-256", "-D", d / "data"], **as_postgres)
    port, log = free_port(), work / "postgres.log"
    settings = ["listen_addresses=127.0.0.1", "fsync=off", "synchronous_commit=off", "full_page_writes=off",
                "max_connections=100", "log_min_messages=warning"]
    server = subprocess.Popen([str(bindir / "postgres"), "-D", str(d / "data"), "-p", str(port), "-k", str(d / "sock"),
                               *[x for s in settings for x in ("-c", s)]],
                              stdout=open(log, "w"), stderr=subprocess.STDOUT, **as_postgres)
    servers.append((server, signal.SIGINT))  # SIGINT: fast shutdown

    def psql(sql):
        return ["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-U", "postgres", "-d", "postgres",
                "-h", d / "sock", "-p", port, "-c", sql]
    wait_ready(psql("SELECT 1"), server, log)
    run_ok(psql(f"CREATE ROLE {USER} LOGIN PASSWORD '{PASSWORD}'"))
    run_ok(psql(f"CREATE DATABASE {DB} OWNER {USER}"))
    version = run_ok(psql("SHOW server_version")).split()[0]
    return f"postgres://{USER}:{PASSWORD}@127.0.0.1:{port}/{DB}?sslmode=disable", f"PostgreSQL {version}"


def start_mariadb(work, servers):
    """A fresh MariaDB (mariadbd started as root with --user=mysql); returns its DSN for
    go-sql-driver/mysql and its version."""
    d = work / "mariadb"
    (d / "run").mkdir(parents=True)
    shutil.chown(d / "run", "mysql", "mysql")
    tuning = ["--innodb-log-file-size=8M", "--innodb-buffer-pool-size=32M", "--skip-log-bin"]
    datadir, sock = f"--datadir={d / 'data'}", d / "run/mysqld.sock"
    run_ok(["mariadb-install-db", "--no-defaults", datadir, "--user=mysql", "--skip-test-db",
            "--auth-root-authentication-method=socket", *tuning], cwd=d)
    port, log = free_port(), work / "mariadb.log"
    mariadbd = shutil.which("mariadbd") or "/usr/sbin/mariadbd"
    server = subprocess.Popen([mariadbd, "--no-defaults", datadir, "--user=mysql", "--bind-address=127.0.0.1",
                               f"--port={port}", f"--socket={sock}", f"--pid-file={d / 'run/mariadbd.pid'}",
                               "--skip-name-resolve", "--innodb-flush-log-at-trx-commit=0", "--max-connections=200",
                               *tuning], cwd=d, stdout=open(log, "w"), stderr=subprocess.STDOUT)
    servers.append((server, signal.SIGTERM))

    def as_root(sql):
        return ["mariadb", "--no-defaults", f"--socket={sock}", "-u", "root", "-N", "-B", "-e", sql]
    wait_ready(as_root("SELECT 1"), server, log)
    run_ok(as_root(f"CREATE DATABASE {DB}; CREATE USER '{USER}'@'%' IDENTIFIED BY '{PASSWORD}';"
                   f" GRANT ALL ON {DB}.* TO '{USER}'@'%';"))
    version = run_ok(as_root("SELECT VERSION()")).strip().split("-")[0]
    return f"{USER}:{PASSWORD}@tcp(127.0.0.1:{port})/{DB}", f"MariaDB {version}"


def stop_server(server, sig):
    server.send_signal(sig)
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


def foreign_cpu_seconds():
    """CPU seconds (since boot) the machine spent outside this script's process tree. (Tick accounting
    charges a tick in irq or softirq to the process it interrupted as well: those count in the total.)"""
    f = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    total = sum(int(f[i]) for i in (1, 2, 3, 6, 7)) / os.sysconf("SC_CLK_TCK")  # user nice system irq softirq
    procs = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            f = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        procs[int(stat.parent.name)] = (int(f[1]), sum(int(x) for x in f[11:15]))  # ppid, u + s + cu + cs
    mine, todo = {os.getpid()}, [os.getpid()]
    while todo:
        parent = todo.pop()
        kids = [pid for pid, (ppid, _) in procs.items() if ppid == parent]
        mine.update(kids)
        todo += kids
    return total - sum(procs[p][1] for p in mine if p in procs) / os.sysconf("SC_CLK_TCK")


def wait_quiet(deadline, limit=0.1):
    """Waits (until `deadline`, then goes on) while gosights not ours run (they would probe these
    sockets too) or other processes use more than `limit` of the machine's CPU (sampled over 2 s)."""
    while True:
        before = foreign_cpu_seconds()
        time.sleep(2)
        busy, others = (foreign_cpu_seconds() - before) / 2 / os.cpu_count(), other_gosights()
        if busy <= limit and not others:
            return
        if time.time() > deadline:
            print("bench: WARNING: measuring on a busy machine", file=sys.stderr)
            return
        print(f"bench: waiting for a quiet machine ({busy:.0%} CPU used by others, gosights {others})",
              file=sys.stderr)


def cell(ctx, label, traced, tag):
    """One measurement on a fresh app: warm-up (the pool opens its connections), then, if `traced`,
    gosight attaches, then wrk; gosight's hits are read from its detach lines at SIGTERM. `foreign`:
    the share of the machine's CPU other processes used during wrk; `alone`: no other gosight at its end."""
    wait_quiet(ctx["quiet_deadline"])
    _, route, pgx_only = next(c for c in CLIENTS if c[0] == label)
    app, addr = start_go_app(ctx["app_pgx_only" if pgx_only else "app"], ctx["work"], f"app-{tag}", ctx["procs"],
                             ctx["app_args"])
    url = f"http://{addr}/{route}/hello"
    wrk(url, 2, ctx["connections"])
    res = {}
    if traced:
        log = ctx["work"] / f"gosight-{tag}.log"
        gs = start_gosight(ctx["gosight"], [app.pid], log, ctx["env"], ctx["endpoint"], ctx["procs"],
                           wait=(HTTP_PROBE, SQL_PROBE))
        cpu0 = proc_cpu_seconds(gs.pid)
    foreign0 = foreign_cpu_seconds()
    reqs, res["rps"], res["p99"] = wrk(url, ctx["seconds"], ctx["connections"])
    res["foreign"] = (foreign_cpu_seconds() - foreign0) / ctx["seconds"] / os.cpu_count()
    res["alone"] = not set(other_gosights()) - ({gs.pid} if traced else set())
    if traced:
        cpu = proc_cpu_seconds(gs.pid) - cpu0
        stop_gosight(gs)
        res.update(sql=probe_hits(log, SQL_PROBE) / reqs, http=probe_hits(log, HTTP_PROBE) / reqs,
                   all=probe_hits(log) / reqs, cpu_us=cpu / reqs * 1e6)
    app.kill()
    app.wait()
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=8)
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--quiet-wait", type=int, default=900, help="s to wait in all for a quiet machine")
    ap.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    a = ap.parse_args()
    env = env_with_tools()
    gosight, env["GOSIGHT_COLLECTOR"] = prepare(env)
    subprocess.run(["bash", str(ROOT / "scripts/install-databases.sh")], check=True, env=env)
    app_bin, go_version = build_go_app("sqlapp", env)
    app_pgx_only, _ = build_go_app("sqlapp", env, tags="pgxonly")
    work = Path(tempfile.mkdtemp(prefix="gosight-bench-sql-"))
    work.chmod(0o755)  # the database servers run unprivileged
    procs, servers, cells = [], [], {}
    try:
        endpoint = start_collector(work, env, procs)
        pg_url, pg_version = start_postgres(work, servers)
        my_dsn, my_version = start_mariadb(work, servers)
        ctx = dict(app=app_bin, app_pgx_only=app_pgx_only, work=work, procs=procs, app_args=["-postgres", pg_url, "-mysql", my_dsn],
                   gosight=gosight, env=env, endpoint=endpoint, seconds=a.seconds, connections=a.connections,
                   quiet_deadline=time.time() + a.quiet_wait)
        for r in range(a.rounds):
            for driver in DRIVERS:
                # Alternate which of the pair goes first, so neither always runs on a warmer machine.
                for traced in ((False, True) if r % 2 == 0 else (True, False)):
                    for attempt in range(3):  # again if the machine got busy meanwhile (while we may wait)
                        tag = f"{driver.split(',')[0]}{'-only' if ',' in driver else ''}"
                        res = cell(ctx, driver, traced, f"{tag}-{'on' if traced else 'off'}-{r}-{attempt}")
                        if res["alone"] and res["foreign"] <= 0.1 or time.time() > ctx["quiet_deadline"]:
                            break
                    cells.setdefault((driver, traced), []).append(res)
                off, on = cells[(driver, False)][-1], cells[(driver, True)][-1]
                print(f"round {r + 1} {driver}: off {off['rps']:.0f} req/s, on {on['rps']:.0f} req/s "
                      f"({on['rps'] / off['rps']:.3f}), {SQL_PROBE} hits/query {on['sql']:.2f}, "
                      f"{HTTP_PROBE} hits/req {on['http']:.2f}, all {on['all']:.2f}; CPU used by others "
                      f"{off['foreign']:.1%} / {on['foreign']:.1%}", file=sys.stderr)
    finally:
        for p in procs:
            p.kill()
            p.wait()
        for server, sig in servers:
            stop_server(server, sig)
        for d in ("postgres", "mariadb"):
            shutil.rmtree(work / d, ignore_errors=True)

    def med(driver, traced, key):
        return statistics.median(c[key] for c in cells[(driver, traced)])
    rows, foreign = [], [c["foreign"] for v in cells.values() for c in v]
    for drv in DRIVERS:
        off_rps, on_rps, off_p99, on_p99 = (med(drv, t, k) for k in ("rps", "p99") for t in (False, True))
        route = next(f"`GET /{c[1]}/hello`" + (" (pgx-only binary)" if c[2] else "") for c in CLIENTS if c[0] == drv)
        rows.append(f"| {route} | {off_rps:.0f} | {on_rps:.0f} | {on_rps / off_rps:.3f} | {off_p99:.2f} | "
                    f"{on_p99:.2f} | {on_p99 / off_p99:.2f} | {med(drv, True, 'sql'):.2f} | "
                    f"{med(drv, True, 'http'):.2f} | {med(drv, True, 'all'):.2f} | {med(drv, True, 'cpu_us'):.1f} |")
    cmd = " ".join(["python3 bench/database_sql.py", *sys.argv[1:]])
    table = "\n".join([
        "## database/sql: wrk against `tests/go-apps/sqlapp` (one `SELECT 1` per request), without vs with gosight",
        "",
        f"Command: `{cmd}` (as root). Measured {time.strftime('%Y-%m-%d')} on this project's 2-core VM, {go_version}, "
        f"{pg_version} and {my_version} on loopback (started by the script; fsync off); `wrk -t1 -c{a.connections}` "
        f"on `GET /<driver>/hello`: one `SELECT 1` through database/sql (`QueryRowContext`, a pool of 8 "
        f"connections) with pgx v5 stdlib (`pgx`) or lib/pq (`pq`) against PostgreSQL, go-sql-driver/mysql "
        f"(`mysql`) against MariaDB, or through pgx's own API (`pgxnative`: `pgxpool.Pool.QueryRow`); and pgx's database/sql driver in the app built with `-tags pgxonly` (no other database/sql driver linked). A fresh app per cell (warmed up before gosight attaches), {a.rounds} "
        f"interleaved rounds of {a.seconds} s, medians; gosight with its defaults, exporting OTLP http/protobuf "
        "to a real collector. Hits = uprobe hits (entry + return) from gosight's `probe detached` lines, "
        "divided by the requests wrk counted. Other processes' share of the machine's CPU during the measurements: "
        f"median {statistics.median(foreign):.0%}, at most {max(foreign):.0%}"
        f"{'; other gosights ran during some' if not all(c['alone'] for v in cells.values() for c in v) else ''}.",
        "",
        "| route | requests/s without | requests/s with | ratio | p99 without (ms) | p99 with (ms) | ratio "
        f"| {SQL_PROBE} hits per query | {HTTP_PROBE} hits per request | all uprobe hits per request "
        "| gosight CPU per request (us) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        *rows,
    ])
    print(table)
    if not a.no_write:
        print(f"bench: wrote {write_section('database_sql', table)}", file=sys.stderr)


if __name__ == "__main__":
    main()
