"""`peregrine worker` with Falco's stable and incubating rules: exactly the alerts the rule engine
gives for the same batches (rule, priority, output), Kubernetes fields from `peregrine.k8s`, and
pod fields printed ``<NA>`` for a container the table does not know."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest
from worker_batches import container_id, make_batch
from worker_harness import REPO, WorkerProcs, consume_until, produce, replay

import rules
from collectors.capture import read_capture
from collectors.wire import decode_batch
from enrichers.records import ContainerMeta, ServiceMeta, encode
from enrichers.table import K8sTable
from rules.record import EV_PROC, P_CONTAINER_ID

pytestmark = pytest.mark.kafka

KNOWN, UNKNOWN = "node-known", "node-unknown"
API_SERVER = ServiceMeta(ip="10.96.0.1", name="kubernetes", namespace="default",
                         dns_name="kubernetes.default.svc.cluster.local")


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
    workers.start(rule_files, standin=False)  # its start-up overlaps the oracle's compile
    want = expected(rule_files, batches, table)
    assert sum(want.values()) == 30  # 15 shells per node
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
    assert all(set(d) - {"evidence"} == keys for d in docs)  # evidence: Peregrine's one added key
    json.dumps(docs)


def test_replayed_attack_capture_gives_exactly_the_engines_alerts(
    workers: WorkerProcs, falco_rules_dir: Path
) -> None:
    """`peregrine replay` of the recorded attack scenario (devtools/data) -> `peregrine worker` with
    Falco's stable + incubating rules and Peregrine's own, the pod and the API server's service on
    `peregrine.k8s`: exactly the alerts (rule, priority, output) the engine gives for the capture."""
    setup = workers.setup
    capture = REPO / "devtools" / "data" / "attack_scenario.cap"
    rule_files = [falco_rules_dir / "falco_rules.yaml", falco_rules_dir / "falco-incubating_rules.yaml",
                  REPO / "rules" / "data" / "peregrine_rules.yaml"]
    frames = [f for f in read_capture(str(capture)) if f.kind == "events"]
    cid = str(decode_batch(frames[0].value).events[0][EV_PROC][P_CONTAINER_ID])
    k8s: list[ContainerMeta | ServiceMeta] = [replace(pod("demo-node"), container_id=cid), API_SERVER]
    produce(setup.bootstrap, setup.topic("k8s"), [encode(m) for m in k8s])
    replay(setup, capture)
    workers.start(rule_files, standin=False)  # its start-up overlaps the oracle's compile

    table = K8sTable()
    for meta in k8s:
        table.apply(*encode(meta))
    ruleset = rules.load(rule_files, ip_names=table.ip_names)
    want: Counter[tuple[str, str, str]] = Counter()
    for frame in frames:
        batch = decode_batch(frame.value)
        table.enrich(batch.procs)
        for ev, rule in ruleset.evaluate(batch.events):
            alert = rules.build_alert(rule, ev)
            want[(str(alert["rule"]), str(alert["priority"]), str(alert["output"]))] += 1
    assert {r for r, _, _ in want} >= {"Terminal shell in container", "Contact K8S API Server From Container",
                                       "Launch Package Management Process in Container"}
    n = sum(want.values())
    alerts = consume_until(setup.bootstrap, setup.topic("alerts"), lambda r: len(r) >= n, 120, settle=3,
                           on_timeout=workers.describe)
    got = Counter((d["rule"], d["priority"], d["output"]) for d in (a.json() for a in alerts))
    assert got == want
