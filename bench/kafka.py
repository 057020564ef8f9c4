#!/usr/bin/env python3
"""Benchmark: Kafka producers and consumers traced by gosight. tests/go-apps/kafkaapp's producer
service under wrk — `GET /sarama/sync` (one message through sarama's SyncProducer per request) and
`GET /kafkago` (one kafka-go Writer.WriteMessages per request), built producer-only (-tags produceronly)
and, for sarama, also with the consumer role linked — without and with gosight
(defaults), side by side in one run: interleaved rounds, a fresh app per cell, medians; uprobe hits
per message of the producer probes. Then both consumer services (a sarama ConsumerGroup, a kafka-go
Reader; no downstream call) traced by gosight read every message the rounds produced: uprobe hits of
the kafka_consumer probe per message consumed (its runtime.chanrecv / runtime.send probes count every
channel operation of the process, so the figure includes the idle ones during the run). A real
Kafka broker (scripts/install-kafka.sh's release, KRaft, loopback, data in a temporary directory) is
started by the script. Writes its figures into BENCHMARKS.md.

Run as root:  python3 bench/kafka.py [--rounds 3] [--seconds 8] [--connections 8]
"""
import argparse
import base64
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from common import (ROOT, env_with_tools, free_port, lines_with, prepare, probe_hits, start_collector, start_go_app,
                    start_gosight, stop_gosight, wait_for, wait_listening, wrk, write_section)

# (route, producer probe, topic, binary): "producer" is kafkaapp built with -tags produceronly, as a service
# that only produces is linked; "both" is the one binary with the consumer role too, whose producer process then
# also gets the kafka_consumer probe (its runtime.chanrecv / runtime.send probes see every channel operation).
ROUTES = [("sarama/sync", "kafka_sarama_producer", "bench-sarama", "producer"),
          ("kafkago", "kafka_go_producer", "bench-kafkago", "producer"),
          ("sarama/sync", "kafka_sarama_producer", "bench-sarama", "both")]
BINARY = {"producer": "producer-only binary", "both": "binary with the consumer role too"}


def start_kafka(work, env, procs):
    """A fresh single-node KRaft broker (topics created on first use, 2 partitions); returns its
    bootstrap address and version."""
    home = Path(subprocess.run(["bash", str(ROOT / "scripts/install-kafka.sh")], check=True, env=env,
                               capture_output=True, text=True).stdout.strip().splitlines()[-1])
    port, cport = free_port(), free_port()
    d = work / "kafka"
    d.mkdir()
    props = d / "server.properties"
    props.write_text(f"""process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:{cport}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{cport}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs={d / 'logs'}
num.partitions=2
auto.create.topics.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
""")
    java = ["java", "-Xms64m", "-Xmx512m", "-XX:+UseSerialGC", "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={home / 'log4j2.properties'}", "-cp", f"{home / 'libs'}/*"]
    subprocess.run([*java, "kafka.tools.StorageTool", "format", "--standalone", "--ignore-formatted", "-t",
                    _cluster_id(), "-c", str(props)],
                   check=True, capture_output=True, env=env)
    log = work / "kafka.log"
    procs.append(subprocess.Popen([*java, "kafka.Kafka", str(props)], cwd=d, stdout=open(log, "w"),
                                  stderr=subprocess.STDOUT, env=env))
    wait_for(log, "Kafka Server started", timeout=90)
    wait_listening(port, "kafka")
    return f"127.0.0.1:{port}", (home / "VERSION").read_text().strip()


def _cluster_id():
    """A KRaft cluster id: 16 random bytes, URL-safe base64 without padding."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def build_apps(env):
    """kafkaapp against the newest releases, both roles, and the producer alone: ({"both", "producer"}, go
    version)."""
    apps = {}
    for kind, flags in (("both", []), ("producer", ["-tags", "produceronly"])):
        apps[kind] = ROOT / f"target/go-apps/bench/kafkaapp-{kind}/kafkaapp"
        subprocess.run(["sh", "build.sh", "new", str(apps[kind]), *flags], cwd=ROOT / "tests/go-apps/kafkaapp",
                       env={**env, "GOTOOLCHAIN": "local"}, check=True)
    version = subprocess.run(["go", "version", str(apps["both"])], capture_output=True, text=True,
                             env=env).stdout.split()[1]
    return apps, version


def first_message(url, timeout=60):
    """One request that succeeds: the broker creates the topic on the first produce, and a
    client's first attempts may fail until it has (kafka-go reports it as an error)."""
    deadline = time.time() + timeout
    while True:
        r = subprocess.run(["curl", "-s", "-m", "25", "-o", "/dev/null", "-w", "%{http_code}", url],
                           capture_output=True, text=True)
        if r.stdout == "200":
            return
        if time.time() > deadline:
            raise SystemExit(f"bench: {url} never succeeded (last status {r.stdout!r})")
        time.sleep(0.5)


def cell(ctx, route, probe, topic, binary, traced, tag):
    """One producer measurement on a fresh app: warm-up, then (if `traced`) gosight attaches, then wrk."""
    app, addr = start_go_app(ctx["apps"][binary], ctx["work"], f"producer-{tag}", ctx["procs"],
                             ["-role", "producer", "-brokers", ctx["brokers"]])
    url = f"http://{addr}/{route}?topic={topic}&key=6b6579&value=76616c7565"
    first_message(url)
    wrk(url, 2, ctx["connections"])
    res = {}
    if traced:
        log = ctx["work"] / f"gosight-{tag}.log"
        gs = start_gosight(ctx["gosight"], [app.pid], log, ctx["env"], ctx["endpoint"], ctx["procs"],
                           wait=("net_http_server", probe))
    reqs, res["rps"], res["p99"] = wrk(url, ctx["seconds"], ctx["connections"])
    if traced:
        stop_gosight(gs)
        res["hits"] = probe_hits(log, probe) / reqs
        res["all"] = probe_hits(log) / reqs
    app.kill()
    app.wait()
    return res


def consumers(ctx):
    """Both consumers, traced, read every message of their topic: (lib, messages, kafka_consumer hits per message)."""
    procs, pids = [], []
    for lib, topic in (("sarama", "bench-sarama"), ("kafkago", "bench-kafkago")):
        log = ctx["work"] / f"consumer-{lib}.log"
        p = subprocess.Popen([str(ctx["apps"]["both"]), "-role", "consumer", "-lib", lib, "-topic", topic, "-group", "bench",
                              "-brokers", ctx["brokers"], "-start-after", "3s"], stdout=open(log, "w"),
                             stderr=subprocess.STDOUT)
        ctx["procs"].append(p)
        procs.append((lib, p, log))
        pids.append(p.pid)
    log = ctx["work"] / "gosight-consumers.log"
    gs = start_gosight(ctx["gosight"], pids, log, ctx["env"], ctx["endpoint"], ctx["procs"], wait=("kafka_consumer",))
    counts, stable = {}, 0
    while stable < 3:  # until no consumer read anything for 3 s
        time.sleep(1)
        now = {lib: sum(1 for line in open(lg, errors="replace") if line.startswith("{")) for lib, _, lg in procs}
        stable = stable + 1 if now == counts and all(now.values()) else 0
        counts = now
    stop_gosight(gs)
    out = []
    for lib, p, _ in procs:
        line = next(l for l in lines_with(log, "probe detached") if f"pid={p.pid} " in l and "kafka_consumer" in l)
        hits = int(line.split("entry_hits=")[1].split()[0])
        out.append((lib, counts[lib], hits / counts[lib]))
        p.kill()
        p.wait()
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=8)
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    a = ap.parse_args()
    env = env_with_tools()
    gosight, env["GOSIGHT_COLLECTOR"] = prepare(env)
    apps, go_version = build_apps(env)
    work = Path(tempfile.mkdtemp(prefix="gosight-bench-kafka-"))
    procs, cells = [], {}
    try:
        endpoint = start_collector(work, env, procs)
        brokers, kafka_version = start_kafka(work, env, procs)
        ctx = dict(apps=apps, work=work, procs=procs, gosight=gosight, env=env, endpoint=endpoint, brokers=brokers,
                   seconds=a.seconds, connections=a.connections)
        for r in range(a.rounds):
            for route, probe, topic, binary in ROUTES:
                for traced in ((False, True) if r % 2 == 0 else (True, False)):
                    tag = f"{route.replace('/', '-')}-{binary}-{'on' if traced else 'off'}-{r}"
                    cells.setdefault((route, binary, traced), []).append(
                        cell(ctx, route, probe, topic, binary, traced, tag))
                off, on = cells[(route, binary, False)][-1], cells[(route, binary, True)][-1]
                print(f"round {r + 1} {route} ({binary}): off {off['rps']:.0f} msg/s, on {on['rps']:.0f} msg/s "
                      f"({on['rps'] / off['rps']:.3f}), {probe} hits/message {on['hits']:.2f}", file=sys.stderr)
        consumed = consumers(ctx)
    finally:
        for p in procs:
            p.kill()
            p.wait()
        shutil.rmtree(work / "kafka", ignore_errors=True)

    def med(route, binary, traced, key):
        return statistics.median(c[key] for c in cells[(route, binary, traced)])
    rows = []
    for route, probe, _, binary in ROUTES:
        off_rps, on_rps, off_p99, on_p99 = (med(route, binary, t, k) for k in ("rps", "p99") for t in (False, True))
        rows.append(f"| `GET /{route}`, {BINARY[binary]} | {off_rps:.0f} | {on_rps:.0f} | {on_rps / off_rps:.3f} | {off_p99:.2f} | "
                    f"{on_p99:.2f} | {probe}: {med(route, binary, True, 'hits'):.2f} | "
                    f"{med(route, binary, True, 'all'):.2f} |")
    crows = [f"| {lib} | {n} | {h:.2f} |" for lib, n, h in consumed]
    cmd = " ".join(["python3 bench/kafka.py", *sys.argv[1:]])
    table = "\n".join([
        "## Kafka: producer throughput and uprobe hits per message (sarama, kafka-go), without vs with gosight",
        "",
        f"Command: `{cmd}` (as root). Measured {time.strftime('%Y-%m-%d')} on this project's 2-core VM, {go_version}, "
        f"Apache Kafka {kafka_version} (KRaft, one broker on loopback, started by the script), "
        "tests/go-apps/kafkaapp built against sarama v1.62.0 and kafka-go v0.4.51; "
        f"`wrk -t1 -c{a.connections}` on the producer service: one message per request (sarama SyncProducer "
        "`SendMessage`, acks=all; kafka-go `Writer.WriteMessages`, acks=all, 5 ms batch timeout). A fresh app per "
        f"cell (warmed up before gosight attaches), {a.rounds} interleaved rounds of {a.seconds} s, medians; "
        "gosight with its defaults, exporting OTLP http/protobuf to a real collector. Hits = uprobe hits from "
        "gosight's `probe detached` lines, divided by the messages (requests) wrk counted.",
        "",
        "| producer route | messages/s without | messages/s with | ratio | p99 without (ms) | p99 with (ms) "
        "| producer probe hits per message | all uprobe hits per request |",
        "|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        "The producer-only binary is kafkaapp built with `-tags produceronly`: like a service that only "
        "produces, it does not link sarama's or kafka-go's consumer, so gosight attaches no consumer probe "
        "(all hits: net_http_server's 1 and the producer probe's). The binary with the consumer role too (the "
        "tests' kafkaapp) links sarama's consumer, so its producer process also gets the kafka_consumer probe, "
        "whose runtime.chanrecv / runtime.send probes fire on every channel operation of sarama's producer "
        "pipeline: the difference between the two sarama rows is that cost, paid by a binary that links a "
        "consumer whether or not it runs one.",
        "",
        "Consumers, traced, then read every message those rounds produced (no downstream call): kafka_consumer "
        "hits per message consumed, including the hits its runtime.chanrecv / runtime.send probes take on the "
        "process's other channel operations during the run.",
        "",
        "| consumer | messages | kafka_consumer hits per message |",
        "|---|---|---|",
        *crows,
    ])
    print(table)
    if not a.no_write:
        print(f"bench: wrote {write_section('kafka', table)}", file=sys.stderr)


if __name__ == "__main__":
    main()
