"""A container's pod record reaches `peregrine.k8s` after its first exec reached `peregrine.events`
(the kubelet reports a container id only once it runs): `peregrine worker` waits for it, so the exec's
alert names the pod; with ``PEREGRINE_K8S_WAIT_NEW=0`` it does not (``<NA>``). Two real workers on
the real broker, each with its own topics, running side by side."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from worker_batches import container_id, make_batch
from worker_harness import Record, WorkerProcs, WorkerSetup, consume_until, produce

from enrichers.records import ContainerMeta, encode

pytestmark = pytest.mark.kafka

RULES = """\
- rule: Shell in a pod
  desc: a shell with a terminal, and the pod it runs in
  condition: evt.type = execve and proc.name = bash
  output: shell (k8s_pod_name=%k8s.pod.name)
  priority: NOTICE
"""
OLD, NEW = "node-old", "node-new"
# The delay the kubelet gave on the real node (tests/cluster/test_kubelet_seed.py): about a second.
RECORD_DELAY_S = 1.0


def pod(node: str) -> ContainerMeta:
    return ContainerMeta(
        container_id=container_id(node), runtime="containerd", name="app", image="nginx:1",
        image_repository="nginx", image_tag="1", image_digest=None, privileged=False, start_ts=None,
        mounts=(), namespace="shop", pod_name=f"web-{node}", pod_uid=f"uid-{node}", labels={},
        pod_ip=None, node=node,
    )


def from_node(node: str) -> Callable[[list[Record]], bool]:
    return lambda records: any(r.json()["hostname"] == node for r in records)


def pod_of(doc: dict[str, Any]) -> object:
    return doc["output_fields"]["k8s.pod.name"]


def alert_of(procs: WorkerProcs, node: str) -> dict[str, Any]:
    setup = procs.setup
    records = consume_until(setup.bootstrap, setup.topic("alerts"), from_node(node), 60,
                            on_timeout=procs.describe)
    [doc] = [r.json() for r in records if r.json()["hostname"] == node]
    return doc


def test_a_new_containers_first_exec_waits_for_its_pod_record_unless_turned_off(
    workers: WorkerProcs, kafka_bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    (tmp_path / "off").mkdir()
    off = WorkerProcs(WorkerSetup(kafka_bootstrap, tmp_path / "off"))
    off.setup.create_topics()
    waiting = workers
    try:
        monkeypatch.setenv("PEREGRINE_K8S_WAIT_NEW", "5")  # the worker's environment, as the chart sets it
        waiting.start([rules], standin=False)
        monkeypatch.setenv("PEREGRINE_K8S_WAIT_NEW", "0")
        off.start([rules], standin=False)
        # A container started long ago and never in the table: evaluated at once, and the worker is
        # then known to be reading its partitions.
        for procs in (waiting, off):
            produce(kafka_bootstrap, procs.setup.topic("events"), [(b"n", make_batch(OLD, 0, 10, 10))])
        for procs in (waiting, off):
            assert pod_of(alert_of(procs, OLD)) is None

        new_batch = make_batch(NEW, 0, 10, 10, start_ns=time.time_ns())
        for procs in (waiting, off):
            produce(kafka_bootstrap, procs.setup.topic("events"), [(b"n", new_batch)])
        time.sleep(RECORD_DELAY_S)
        produce(kafka_bootstrap, waiting.setup.topic("k8s"), [encode(pod(NEW))])
        assert pod_of(alert_of(waiting, NEW)) == f"web-{NEW}"
        # Without the wait the exec is evaluated before the record exists: published only once the
        # alert is out, so this holds however slowly the worker read the batch.
        doc = alert_of(off, NEW)
        produce(kafka_bootstrap, off.setup.topic("k8s"), [encode(pod(NEW))])
        assert pod_of(doc) is None and "k8s_pod_name=<NA>" in doc["output"]
    finally:
        off.stop_all()
