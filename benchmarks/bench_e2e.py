"""End to end on this machine: syscall -> eBPF collector -> Kafka -> worker -> sink -> HTTP receiver.

Real processes all the way: a broker, ``peregrine collect`` (root, eBPF), ``peregrine worker`` with
Falco's stable + incubating rules, ``peregrine sink`` with a webhook destination, and a local HTTP
receiver. The trigger is ``cat /etc/shadow <marker>`` on the host, which Falco's "Read sensitive
file untrusted" reports (the host has no containers here, so the shell-in-container rules cannot
fire); ``--triggers`` of them are run at ``--rate`` per second under whatever background load the
machine has. Latency is the receiver's arrival time minus the time the bench started the command,
so it includes process start-up (a few ms), every Kafka hop, the worker's transaction commit and
the sink's batching. Figures: p50/p99 and how many triggers arrived (each exactly once).

Needs root and the project's Kafka jars. Run: ``.venv/bin/python -m benchmarks.bench_e2e
[--triggers N] [--rate R] [--bootstrap HOST:PORT]``.
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

from benchmarks.falco_rules import STABLE_AND_INCUBATING
from benchmarks.processes import stop
from benchmarks.results import record
from devtools import localkafka

REPO = Path(__file__).resolve().parents[1]
RULES = list(STABLE_AND_INCUBATING)
MARK = "peregrine-e2e-"


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


def run(bootstrap: str, tmp: Path, triggers: int, rate: float) -> dict[str, Any]:
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
    worker_flags = ["worker", "--bootstrap", bootstrap, "--app-id", f"e2e-worker-{tag}", "--partitions", "4",
                    "--datadir", str(tmp / "worker"), "--k8s-wait", "5", *rules]
    for name, topic in topics.items():
        worker_flags += [f"--{name}-topic", topic]
    procs: list[subprocess.Popen[bytes]] = []
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
        return {"latencies": latencies, "arrived": len(arrivals), "copies": dict(copies), "logs": str(tmp)}
    finally:
        stop(procs)
        receiver.close()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--triggers", type=int, default=100)
    ap.add_argument("--rate", type=float, default=5.0, help="triggers per second")
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
        result = run(bootstrap, tmp, args.triggers, args.rate)
    finally:
        if cluster is not None:
            localkafka.stop(cluster)
    lat = result["latencies"]
    if len(lat) < 2:
        raise SystemExit(f"only {len(lat)} of {args.triggers} alerts arrived; logs in {result['logs']}")
    q = statistics.quantiles(lat, n=100)
    arrived = f"{result['arrived']}/{args.triggers} arrived"
    record("e2e syscall -> receiver latency (collect, worker exactly_once, sink webhook)",
           f"p50 {q[49] * 1000:.0f} ms, p99 {q[98] * 1000:.0f} ms, {arrived}",
           "goal p99 <= 1000 ms", None, 1,
           {"copies_per_alert": result["copies"], "load_avg_1m": round(os.getloadavg()[0], 1),
            "rate_per_s": args.rate, "max_ms": round(max(lat) * 1000)})


if __name__ == "__main__":
    main()
