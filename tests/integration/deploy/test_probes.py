"""The Kubernetes probes of every long-running role, on real processes: ``/readyz`` turns 200 only when
the role has done what readiness means for it (the worker and the sink joined their consumer groups,
k8s-meta read its topic back and listed the real API server), ``/livez`` is 200 while its loop beats,
and a role that cannot reach Kafka stays unready, saying what it waits for, without being killed.
The collector's probes need eBPF and are checked in tests/ebpf."""

from __future__ import annotations

import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from http_probe import probe
from kube_apiserver import free_port
from metric_catalog import ROOT
from test_prometheus_scrape import _role, _stop

pytestmark = [pytest.mark.kafka, pytest.mark.k8s]
DEADLINE_S = 90.0
STARTING = (503, "waiting: start (the role has not declared its conditions yet)\n")
WAITING_FOR_KAFKA = (503, "waiting: pods listed (no list handled yet)\n"  # the lists wait for the topic
                           "waiting: services listed (no list handled yet)\n"
                           "waiting: topic (not read back yet)\n")


def wait_ready(port: int, proc: subprocess.Popen[bytes], log: Path) -> str:
    deadline = time.monotonic() + DEADLINE_S
    last = (0, "")
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"exited {proc.returncode}:\n{log.read_text()[-3000:]}"
        last = probe(port, "/readyz")
        if last[0] == 200:
            return last[1]
        time.sleep(0.3)
    pytest.fail(f"not ready within {DEADLINE_S}s: last answer {last}\n{log.read_text()[-3000:]}")


@pytest.fixture
def started(tmp_path: Path) -> Iterator[list[tuple[subprocess.Popen[bytes], Path]]]:
    procs: list[tuple[subprocess.Popen[bytes], Path]] = []
    yield procs
    for proc, log in procs:
        _stop(proc, log)


def start(started: list[tuple[subprocess.Popen[bytes], Path]], tmp: Path, name: str,
          args: list[str]) -> tuple[int, subprocess.Popen[bytes], Path]:
    port, log = free_port(), tmp / f"{name}.log"
    proc = _role(args, port, log)
    started.append((proc, log))
    return port, proc, log


def test_worker_sink_and_k8s_meta_become_ready_and_stay_live(
    kafka_bootstrap: str, kube_api: Any, tmp_path: Path, started: list[tuple[subprocess.Popen[bytes], Path]]
) -> None:
    tag = uuid.uuid4().hex[:8]
    worker_args = ["worker", "--bootstrap", kafka_bootstrap, "--app-id", f"probes-{tag}", "--partitions", "2",
                   "--replication", "1", "--datadir", str(tmp_path / "worker"), "--k8s-wait", "1",
                   "--rules", str(ROOT / "rules" / "data" / "peregrine_rules.yaml")]
    for name in ("events", "stats", "alerts", "dlq", "k8s"):
        worker_args += [f"--{name}-topic", f"probes-{name}-{tag}"]
    config = tmp_path / "sink.yaml"
    config.write_text(yaml.safe_dump({
        "kafka": {"bootstrap_servers": kafka_bootstrap, "topic": f"probes-alerts-{tag}",
                  "dlq_topic": f"probes-dlq-{tag}", "group_prefix": f"probes-{tag}"},
        "destinations": [{"name": "archive", "type": "file", "path": str(tmp_path / "a.jsonl")}],
    }))
    meta_args = ["k8s-meta", "--kubeconfig", str(kube_api.kubeconfig), "--bootstrap-servers", kafka_bootstrap,
                 "--topic", f"probes-k8s-{tag}"]
    roles = {
        "worker": start(started, tmp_path, "worker", worker_args),
        "sink": start(started, tmp_path, "sink", ["sink", "--config", str(config)]),
        "k8s-meta": start(started, tmp_path, "k8s-meta", meta_args),
    }
    for name, (port, proc, log) in roles.items():
        assert wait_ready(port, proc, log) == "ok\n", name
        assert probe(port, "/livez") == (200, "ok\n"), name
        status, metrics = probe(port, "/metrics")
        assert status == 200 and "process_cpu_seconds_total" in metrics, name
        # OpenTelemetry writes its series (and target_info) with the first data point: a sink is ready
        # once it holds partitions, before it has an alert to count, so only the others must have them.
        deadline = time.monotonic() + 15
        while name != "sink" and "target_info" not in metrics and time.monotonic() < deadline:
            time.sleep(0.2)
            status, metrics = probe(port, "/metrics")
        assert name == "sink" or "target_info" in metrics, name


def test_a_role_that_cannot_reach_kafka_is_unready_and_says_why(kube_api: Any, tmp_path: Path) -> None:
    """k8s-meta gives Kafka 30 s to answer, then exits 1 (restarted by Kubernetes); meanwhile it is
    alive but not ready."""
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        nowhere = f"127.0.0.1:{closed.getsockname()[1]}"
    args = ["k8s-meta", "--kubeconfig", str(kube_api.kubeconfig), "--bootstrap-servers", nowhere]
    port, log = free_port(), tmp_path / "k8s-meta.log"
    proc = _role(args, port, log)
    try:
        deadline = time.monotonic() + DEADLINE_S
        answers: list[tuple[int, str]] = []
        while time.monotonic() < deadline and WAITING_FOR_KAFKA not in answers:
            answer = probe(port, "/readyz")
            if not answers or answers[-1] != answer:
                answers.append(answer)
            time.sleep(0.1)
        # never ready on the way: not before the role declared what it waits for (the probe server
        # starts first: a role once answered 200 in that moment), nor after
        assert set(answers) <= {(0, ""), STARTING, WAITING_FOR_KAFKA}, answers
        assert WAITING_FOR_KAFKA in answers, answers
        time.sleep(2)
        assert proc.poll() is None and probe(port, "/livez") == (200, "ok\n")
        assert probe(port, "/readyz")[0] == 503
    finally:
        proc.kill()
        proc.wait(10)
