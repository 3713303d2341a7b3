"""A real Prometheus scrapes a real `peregrine worker` that evaluated the shipped attack capture, and
the per-rule cost series (`streams.rulecost`) arrive labelled by rule: the dashboard's "most
expensive rules" panel returns data, and the exact per-rule alert count is the count of alerts the
worker wrote to the alerts topic for that rule."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from confluent_kafka import Consumer
from http_probe import probe
from kube_apiserver import free_port
from metric_catalog import ROOT
from test_grafana_dashboard import dashboard
from test_prometheus_scrape import query, wait_for

CAPTURE = ROOT / "devtools" / "data" / "attack_scenario.cap"
DEADLINE_S = 60.0
READY_S = 180.0
PANEL = "Most expensive rules (sampled CPU)"

pytestmark = [pytest.mark.kafka]


def _alerts_by_rule(bootstrap: str, topic: str, expected: int) -> Counter[str]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"read-{uuid.uuid4().hex[:8]}",
                         "auto.offset.reset": "earliest", "isolation.level": "read_committed"})
    consumer.subscribe([topic])
    found: Counter[str] = Counter()
    deadline = time.monotonic() + DEADLINE_S
    try:
        while sum(found.values()) < expected and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                found[json.loads(message.value())["rule"]] += 1
    finally:
        consumer.close()
    return found


def _scrape(port: int, family: str) -> dict[str, float]:
    """One series family of the worker's own endpoint, by rule: exact, unlike a Prometheus query
    that may show the scrape before the last batch."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return {s.labels["rule"]: s.value for f in text_string_to_metric_families(text) for s in f.samples
            if s.name == family}  # fmt: skip


def _settled(read: Callable[[], dict[str, float]], what: str) -> dict[str, float]:
    """`read()` once it is not empty and the same two seconds apart (the replay is processed)."""
    def stable() -> dict[str, float] | None:
        first = read()
        time.sleep(2)
        return first if first and read() == first else None

    settled: dict[str, float] = wait_for(stable, what)
    return settled


@dataclass(frozen=True)
class Worker:
    port: int
    alerts_topic: str
    replay: Callable[[], None]


@pytest.fixture(scope="module")
def worker(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    """A worker sampling every batch (`--rule-cost-every 1`), and a way to replay the capture to it."""
    tmp = tmp_path_factory.mktemp("rulecost")
    tag = uuid.uuid4().hex[:8]
    topics = {name: f"rulecost-{name}-{tag}" for name in ("events", "stats", "alerts", "dlq", "k8s")}
    port = free_port()
    log = tmp / "worker.log"
    env = {"PATH": "/usr/bin:/bin", "PEREGRINE_METRICS_PORT": str(port)}
    env["PEREGRINE_METRICS_ADDR"] = "127.0.0.1"
    argv = [sys.executable, "-m", "cli.main", "worker", "--bootstrap", kafka_bootstrap,
            "--app-id", f"rulecost-{tag}", "--partitions", "1", "--replication", "1",
            "--guarantee", "at_least_once", "--datadir", str(tmp / "data"), "--k8s-wait", "1",
            "--rule-cost-every", "1", "--rules", str(ROOT / "rules" / "data" / "peregrine_rules.yaml")]
    for name, topic in topics.items():
        argv += [f"--{name}-topic", topic]
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)

    def replay() -> None:
        # the worker's new group reads from the earliest offset: no need to wait for it to join
        done = subprocess.run(
            [sys.executable, "-m", "cli.main", "replay", str(CAPTURE), "--max-rate", "--bootstrap",
             kafka_bootstrap, "--events-topic", topics["events"], "--stats-topic", topics["stats"]],
            cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
        )
        assert done.returncode == 0, done.stderr
        assert proc.poll() is None, log.read_text()[-3000:]

    try:
        # under CI load the worker's start can outlast a scrape's patience: wait for its own /readyz
        deadline = time.monotonic() + READY_S
        while probe(port, "/readyz")[0] != 200:
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.5)
        yield Worker(port, topics["alerts"], replay)
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def test_per_rule_series_reach_prometheus_and_the_panel(
    worker: Worker, kafka_bootstrap: str, prometheus: Callable[[list[str]], Any]
) -> None:
    prom = prometheus([f"127.0.0.1:{worker.port}"])
    shell = "Peregrine: Terminal Shell in Container"
    worker.replay()
    alerts = "peregrine_worker_rule_alerts_total"
    by_rule = _settled(lambda: _scrape(worker.port, alerts), "alerts by rule")
    assert by_rule.get(shell)
    on_topic = _alerts_by_rule(kafka_bootstrap, worker.alerts_topic, int(sum(by_rule.values())))
    assert on_topic == Counter(by_rule)
    # the profile is built in a thread after start: batches before it are not sampled; after it, all
    matches = "peregrine_worker_rule_matches_total"
    before = wait_for(lambda: _scrape(worker.port, matches), "the per-rule profile built")
    assert set(before) >= set(by_rule)
    worker.replay()
    wait_for(lambda: _scrape(worker.port, alerts) == {r: 2 * n for r, n in by_rule.items()}, "second replay")
    after = _scrape(worker.port, matches)
    # every batch of the second replay was sampled: each rule matched at least its first-match alerts
    assert all(after[rule] - before[rule] >= count for rule, count in by_rule.items()), (before, after)
    cpu_time = "peregrine_worker_rule_cpu_time_seconds_total"
    cpu = wait_for(lambda: query(prom, cpu_time), "rule cpu time scraped")
    assert {r["metric"]["rule"] for r in cpu} >= set(by_rule)
    (panel,) = [p for p in dashboard()["panels"] if p.get("title") == PANEL]
    (expr,) = [t["expr"] for t in panel["targets"]]
    top = wait_for(lambda: query(prom, expr.replace("$__rate_interval", "1m")), f"data for {expr}")
    assert 0 < len(top) <= 10 and all("rule" in r["metric"] for r in top)
