"""`peregrine worker` with Falco's stable and incubating rules: exactly the alerts the rule engine
gives for the same batches (rule, priority, output), Kubernetes fields from `peregrine.k8s`, and
pod fields printed ``<NA>`` for a container the table does not know."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from worker_batches import container_id, make_batch
from worker_harness import WorkerProcs, WorkerSetup, consume_until, produce

import rules
from collectors.wire import decode_batch
from enrichers.records import ContainerMeta, encode
from enrichers.table import K8sTable

pytestmark = pytest.mark.kafka

KNOWN, UNKNOWN = "node-known", "node-unknown"


@pytest.fixture
def workers(kafka_bootstrap: str, tmp_path: Path) -> Iterator[WorkerProcs]:
    setup = WorkerSetup(kafka_bootstrap, tmp_path)
    setup.create_topics()
    procs = WorkerProcs(setup)
    yield procs
    procs.stop_all()


def pod(node: str) -> ContainerMeta:
    return ContainerMeta(
        container_id=container_id(node), runtime="containerd", name="mysql", image="mysql:8.4",
        image_repository="docker.io/library/mysql", image_tag="8.4", image_digest=None, privileged=False,
        start_ts=None, mounts=(), namespace="default", pod_name="mysql-db-7d9f8b6c5d-x2x4k", pod_uid="u1",
        labels={"app": "mysql"}, pod_ip="10.244.1.7", node=node,
    )


def expected(rule_files: list[Path], batches: list[bytes], table: K8sTable) -> Counter[tuple[str, str, str]]:
    ruleset = rules.load(rule_files)
    out: Counter[tuple[str, str, str]] = Counter()
    for data in batches:
        batch = decode_batch(data)
        table.enrich(batch.procs)
        for ev, rule in ruleset.evaluate(batch.events):
            alert = rules.build_alert(rule, ev)
            out[(str(alert["rule"]), str(alert["priority"]), str(alert["output"]))] += 1
    return out


def test_falco_rules_alerts_match_the_engine_with_kubernetes_fields(
    workers: WorkerProcs, falco_rules_dir: Path
) -> None:
    setup = workers.setup
    rule_files = [falco_rules_dir / "falco_rules.yaml", falco_rules_dir / "falco-incubating_rules.yaml"]
    produce(setup.bootstrap, setup.topic("k8s"), [encode(pod(KNOWN))])
    batches = [make_batch(node, seq, 300, shell_every=100) for node in (KNOWN, UNKNOWN) for seq in range(5)]
    produce(setup.bootstrap, setup.topic("events"), [(b"n", b) for b in batches])
    table = K8sTable()
    table.put(pod(KNOWN))
    want = expected(rule_files, batches, table)
    assert sum(want.values()) == 30  # 15 shells per node

    workers.start(rule_files, standin=False)
    n = sum(want.values())
    alerts = consume_until(setup.bootstrap, setup.topic("alerts"), lambda r: len(r) >= n, 120, settle=2,
                           on_timeout=workers.describe)
    docs = [a.json() for a in alerts]
    got = Counter((d["rule"], d["priority"], d["output"]) for d in docs)
    assert got == want
    assert {d["rule"] for d in docs} == {"Terminal shell in container"}
    known = [d for d in docs if d["hostname"] == KNOWN]
    pod_text = "k8s_pod_name=mysql-db-7d9f8b6c5d-x2x4k k8s_ns_name=default"
    assert known and all(pod_text in d["output"] for d in known)
    assert all(d["output_fields"]["k8s.pod.name"] is None for d in docs if d["hostname"] == UNKNOWN)
    assert len({d["uuid"] for d in docs}) == len(docs)
    assert all(a.key == container_id(a.json()["hostname"]).encode() for a in alerts)
    keys = {"hostname", "output", "output_fields", "priority", "rule", "source", "tags", "time", "uuid"}
    assert all(set(d) == keys for d in docs)
    json.dumps(docs)
