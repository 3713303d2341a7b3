"""A real Prometheus scrapes a real `peregrine worker` that evaluated the shipped attack capture, and
the per-rule cost series (`streams.rulecost`) arrive labelled by rule: the dashboard's "most
expensive rules" panel returns data, and the exact per-rule alert count is the count of alerts the
worker wrote to the alerts topic for that rule."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from confluent_kafka import Consumer
from kube_apiserver import free_port
from metric_catalog import ROOT
from test_grafana_dashboard import dashboard
from test_prometheus_scrape import query, wait_for

CAPTURE = ROOT / "devtools" / "data" / "attack_scenario.cap"
DEADLINE_S = 60.0
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


@pytest.fixture(scope="module")
def worker(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, str]]:
    """(metrics port, alerts topic) of a worker that sampled every batch of the replayed capture."""
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
    try:
        # the worker's new group reads from the earliest offset: no need to wait for it to join
        replay = subprocess.run(
            [sys.executable, "-m", "cli.main", "replay", str(CAPTURE), "--max-rate", "--bootstrap",
             kafka_bootstrap, "--events-topic", topics["events"], "--stats-topic", topics["stats"]],
            cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
        )
        assert replay.returncode == 0, replay.stderr
        assert proc.poll() is None, log.read_text()[-3000:]
        yield port, topics["alerts"]
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def test_per_rule_series_reach_prometheus_and_the_panel(
    worker: tuple[int, str], kafka_bootstrap: str, prometheus: Callable[[list[str]], Any]
) -> None:
    port, alerts_topic = worker
    prom = prometheus([f"127.0.0.1:{port}"])
    shell = "Peregrine: Terminal Shell in Container"
    series = f'peregrine_worker_rule_alerts_total{{rule="{shell}"}}'
    alerts = wait_for(lambda: query(prom, series), "per-rule alerts scraped")
    by_rule = {r["metric"]["rule"]: int(float(r["value"][1]))
               for r in query(prom, "peregrine_worker_rule_alerts_total")}
    assert alerts and by_rule[shell] > 0
    assert _alerts_by_rule(kafka_bootstrap, alerts_topic, sum(by_rule.values())) == Counter(by_rule)
    cpu = wait_for(lambda: query(prom, "peregrine_worker_rule_cpu_time_seconds_total"), "rule cpu time")
    matches = {r["metric"]["rule"]: float(r["value"][1])
               for r in query(prom, "peregrine_worker_rule_matches_total")}
    assert {r["metric"]["rule"] for r in cpu} >= set(by_rule)
    # every batch was sampled: the profile's matches are the engine's alerts (first match: at most)
    assert all(matches.get(rule, 0) >= count for rule, count in by_rule.items()), (matches, by_rule)
    (panel,) = [p for p in dashboard()["panels"] if p.get("title") == PANEL]
    (expr,) = [t["expr"] for t in panel["targets"]]
    top = wait_for(lambda: query(prom, expr.replace("$__rate_interval", "1m")), f"data for {expr}")
    assert 0 < len(top) <= 10 and all("rule" in r["metric"] for r in top)
