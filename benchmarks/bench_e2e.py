"""End to end on this machine: syscall -> eBPF collector -> Kafka -> worker -> sink -> HTTP receiver.

Real processes all the way: a broker, ``peregrine collect`` (root, eBPF), ``peregrine worker`` with
Falco's stable + incubating rules, ``peregrine sink`` with a webhook destination, and a local HTTP
receiver. The trigger is ``cat /etc/shadow <marker>`` on the host, which Falco's "Read sensitive
file untrusted" reports (the host has no containers here, so the shell-in-container rules cannot
fire); ``--triggers`` of them are run at ``--rate`` per second under whatever background load the
machine has. Latency is the receiver's arrival time minus the time the bench started the command,
so it includes process start-up (a few ms), every Kafka hop, the worker's transaction commit and
the sink's batching. Figures: p50/p99 and how many triggers arrived (each exactly once).

The triggers run over a background load at half of the pipeline's capacity on this machine (issue
#18 asks for latency there: an idle pipeline hides its queues). The capacity is measured first, in
the same run, with the same processes: `benchmarks.bench_collector`'s load generator opens a file
at doubling rates, then at two bisections of the last gap, ``STEP_S`` seconds each. A rate is kept
up with when the collector reports no drop for it (its `peregrine.stats` records) and the worker's
committed offsets reach the end `peregrine.events` had at the step's end within ``CATCH_UP_S``.
The capacity is the highest such rate (`--load R` skips the search; `--load 0`, no background).

Needs root and the project's Kafka jars. Run: ``.venv/bin/python -m benchmarks.bench_e2e
[--triggers N] [--rate R] [--load R] [--bootstrap HOST:PORT]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from benchmarks.bench_collector import loadgen, run_load
from benchmarks.falco_rules import STABLE_AND_INCUBATING
from benchmarks.processes import stop
from benchmarks.results import record
from collectors.stats import StatsError, decode_stats
from devtools import localkafka

REPO = Path(__file__).resolve().parents[1]
RULES = list(STABLE_AND_INCUBATING)
MARK = "peregrine-e2e-"
PARTITIONS = 4
STEP_S = 8.0
CATCH_UP_S = 1.0
SEARCH_RATES = (5_000, 10_000, 20_000, 40_000, 80_000, 160_000, 320_000)


class Receiver:
    """Webhook endpoint that notes when each trigger's alert arrives."""

    def __init__(self) -> None:
        self.arrivals: dict[int, list[float]] = {}
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                now = time.time()
                receiver.note(json.loads(body), now)
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, name="receiver", daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/alerts"

    def note(self, alert: dict[str, Any], now: float) -> None:
        cmdline = str(alert.get("output_fields", {}).get("proc.cmdline", ""))
        if alert.get("rule") == "Read sensitive file untrusted" and MARK in cmdline:
            index = int(cmdline.split(MARK, 1)[1].split()[0])
            with self.lock:
                self.arrivals.setdefault(index, []).append(now)

    def close(self) -> None:
        self.server.shutdown()


def start(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PEREGRINE_METRICS_PORT": "0"}
    with log.open("wb") as out:
        return subprocess.Popen([sys.executable, "-m", "cli.main", *argv], cwd=REPO, env=env,
                                stdout=out, stderr=subprocess.STDOUT)




def check_alive(proc: subprocess.Popen[bytes], log: Path) -> None:
    if proc.poll() is not None:
        tail = log.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{log.name}: exited {proc.returncode}:\n{tail}")


def wait_for(text: str, log: Path, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in log.read_text(errors="replace"):
            return
        check_alive(proc, log)
        time.sleep(0.2)
    raise RuntimeError(f"{log.name}: no {text!r} after {timeout:.0f} s")


class Pipeline:
    """What the capacity search reads: the worker group's progress on the events topic and the
    collector's drop counts on the stats topic."""

    def __init__(self, bootstrap: str, events: str, stats: str, group: str) -> None:
        self.events = [TopicPartition(events, p) for p in range(PARTITIONS)]
        self.offsets = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                                 "enable.auto.commit": False})
        self.stats = Consumer({"bootstrap.servers": bootstrap, "group.id": f"{group}-bench-stats",
                               "enable.auto.commit": False, "auto.offset.reset": "earliest"})
        self.stats.subscribe([stats])

    def ends(self) -> list[int]:
        """The events topic's end offsets now."""
        return [self.offsets.get_watermark_offsets(tp, timeout=10)[1] for tp in self.events]

    def behind(self, ends: list[int]) -> int:
        """Batches before `ends` the worker has not committed yet (the node's own background
        keeps the topic growing, so "caught up" is with a moment, not with the topic's end)."""
        committed = self.offsets.committed(self.events, timeout=10)
        return sum(max(end - max(tp.offset, 0), 0) for tp, end in zip(committed, ends, strict=True))

    def drops(self) -> int:
        """Events the collector reported lost since the last call (reads every stats record so far)."""
        lost = 0
        while (m := self.stats.poll(0.5)) is not None:
            if m.error() is None:
                try:
                    lost += decode_stats(m.value() or b"").n_drops
                except StatsError:
                    continue
        return lost

    def settle(self, timeout_s: float = 60.0) -> None:
        """Wait until the worker has committed what the topic holds now: each step starts idle."""
        ends, deadline = self.ends(), time.monotonic() + timeout_s
        while self.behind(ends) > 0 and time.monotonic() < deadline:
            time.sleep(0.5)

    def close(self) -> None:
        self.offsets.close()
        self.stats.close()


def capacity(pipeline: Pipeline, exe: str) -> tuple[int, list[dict[str, Any]]]:
    """The highest background rate (opens per second) the pipeline keeps up with, and each step:
    doubling until a rate fails, then two halvings of the gap (a quarter of it left unknown)."""
    steps: list[dict[str, Any]] = []
    pipeline.drops()

    def keeps_up(target: int) -> bool:
        pipeline.settle()
        load = run_load(exe, target, STEP_S)
        achieved = load["ops"] / load["elapsed"]
        ends = pipeline.ends()
        deadline = time.monotonic() + CATCH_UP_S
        while (behind := pipeline.behind(ends)) > 0 and time.monotonic() < deadline:
            time.sleep(0.2)
        lost = pipeline.drops()
        steps.append({"target": target, "achieved": round(achieved), "lag_batches": behind, "dropped": lost})
        return behind == 0 and lost == 0 and achieved >= 0.9 * target

    best, failed = 0, 0
    for target in SEARCH_RATES:
        if not keeps_up(target):
            failed = target
            break
        best = target
    for _ in range(2 if best and failed else 0):
        middle = (best + failed) // 2
        if keeps_up(middle):
            best = middle
        else:
            failed = middle
    pipeline.settle()
    return best, steps


def run(bootstrap: str, tmp: Path, triggers: int, rate: float, load: int | None) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:8]
    topics = {n: f"e2e.{n}-{tag}" for n in ("events", "stats", "alerts", "dlq", "k8s")}
    receiver = Receiver()
    (tmp / "sink.yaml").write_text(json.dumps({
        "kafka": {"bootstrap_servers": bootstrap, "topic": topics["alerts"],
                  "dlq_topic": f"{topics['alerts']}.dlq", "group_prefix": f"e2e-sink-{tag}"},
        "batch": {"max_alerts": 200, "max_wait_s": 0.05},
        "destinations": [{"name": "hook", "type": "webhook", "url": receiver.url}],
    }))
    rules = [a for r in RULES for a in ("--rules", str(r))]
    group = f"e2e-worker-{tag}"
    worker_flags = ["worker", "--bootstrap", bootstrap, "--app-id", group, "--partitions", str(PARTITIONS),
                    "--datadir", str(tmp / "worker"), "--k8s-wait", "5", *rules]
    for name, topic in topics.items():
        worker_flags += [f"--{name}-topic", topic]
    procs: list[subprocess.Popen[bytes]] = []
    background: subprocess.Popen[bytes] | None = None
    pipeline: Pipeline | None = None
    try:
        worker_log = tmp / "worker.log"
        procs.append(start(worker_flags, worker_log))
        wait_for("Worker]: Ready", worker_log, procs[-1], 120)
        sink_log = tmp / "sink.log"
        procs.append(start(["sink", "--config", str(tmp / "sink.yaml")], sink_log))
        collect_log = tmp / "collect.log"
        procs.append(start(["collect", "--bootstrap", bootstrap, "--events-topic", topics["events"],
                            "--stats-topic", topics["stats"], *rules], collect_log))
        wait_for("peregrine collector ready", collect_log, procs[-1], 300)
        wait_for("consuming", sink_log, procs[1], 60)
        time.sleep(3)  # the sink's first partition assignment
        for p, log in zip(procs, (worker_log, sink_log, collect_log), strict=True):
            check_alive(p, log)
        exe = loadgen()
        steps: list[dict[str, Any]] = []
        if load is None:
            pipeline = Pipeline(bootstrap, topics["events"], topics["stats"], group)
            found, steps = capacity(pipeline, exe)
            load = found // 2
        if load > 0:
            seconds = triggers / rate + 40  # outlasts the triggers and the wait for their alerts
            background = subprocess.Popen([exe, str(load), str(seconds), "/etc/hostname", "4"],
                                          stdout=subprocess.DEVNULL)
            time.sleep(2)  # the load reaches its pace before the first trigger
        started: dict[int, float] = {}
        for i in range(triggers):
            started[i] = time.time()
            subprocess.run(["cat", "/etc/shadow", f"{MARK}{i}"], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, check=False)
            time.sleep(1 / rate)
        deadline = time.monotonic() + 30
        while len(receiver.arrivals) < triggers and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(2)  # late duplicates
        with receiver.lock:
            arrivals = {i: list(v) for i, v in receiver.arrivals.items()}
        latencies = [min(v) - started[i] for i, v in arrivals.items() if i in started]
        copies = Counter(len(v) for v in arrivals.values())
        return {"latencies": latencies, "arrived": len(arrivals), "copies": dict(copies), "logs": str(tmp),
                "load": load, "capacity_steps": steps}
    finally:
        if background is not None:
            background.kill()
            background.wait()
        if pipeline is not None:
            pipeline.close()
        stop(procs)
        receiver.close()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--triggers", type=int, default=100)
    ap.add_argument("--rate", type=float, default=5.0, help="triggers per second")
    ap.add_argument("--load", type=int, help="background opens/s (default: half the capacity)")
    ap.add_argument("--bootstrap", help="use this broker instead of starting one")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        raise SystemExit("bench_e2e needs root (the collector loads eBPF programs)")
    tmp = Path(tempfile.mkdtemp(prefix="bench-e2e-"))
    cluster = None
    bootstrap = args.bootstrap
    if bootstrap is None:
        cluster = localkafka.start(tmp / "kafka", n=1, heap="1g")
        bootstrap = cluster.bootstrap
    try:
        result = run(bootstrap, tmp, args.triggers, args.rate, args.load)
    finally:
        if cluster is not None:
            localkafka.stop(cluster)
    lat = result["latencies"]
    if len(lat) < 2:
        raise SystemExit(f"only {len(lat)} of {args.triggers} alerts arrived; logs in {result['logs']}")
    q = statistics.quantiles(lat, n=100)
    arrived = f"{result['arrived']}/{args.triggers} arrived"
    background = f"over {result['load']:,} background opens/s" if result["load"] else "no background load"
    if args.load is None:
        background += " (half the measured capacity)"
    record(f"e2e syscall -> receiver latency (collect, worker exactly_once, sink webhook), {background}",
           f"p50 {q[49] * 1000:.0f} ms, p99 {q[98] * 1000:.0f} ms, {arrived}",
           "goal p99 <= 1000 ms", None, 1,
           {"copies_per_alert": result["copies"], "load_avg_1m": round(os.getloadavg()[0], 1),
            "rate_per_s": args.rate, "max_ms": round(max(lat) * 1000),
            "background_per_s": result["load"], "capacity_steps": result["capacity_steps"]})


if __name__ == "__main__":
    main()
