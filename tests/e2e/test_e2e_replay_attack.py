"""The whole pipeline without root: `peregrine replay` of the shipped attack capture -> `peregrine
worker` (Falco stable + incubating + Peregrine's rules) -> `peregrine sink` -> a Slack stand-in, a
real rsyslogd (RFC 5424 + CEF) and a JSON-lines file.

The capture (`devtools/data/attack_scenario.cap`, recorded live by `tests/ebpf/`) holds an
interactive bash under runc in a kubepods container, kubectl, a connect to 10.96.0.1:443, unshare +
nsenter, apt-get. The pod and the API server's service are published to the k8s topic in
k8s-meta's own record format (no API server is needed here: test_e2e_live_attack does it live).

Expected alerts are stated twice: by hand (rule names and priorities, one alert each; Falco
evaluates the first matching rule per event) and as the rule engine computes them in this process
from the same capture (exact output text), so a pipeline stage that loses, duplicates or alters an
alert fails either way.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from e2e_pipeline import ATTACK_CAPTURE, Arrivals, Pipeline, rule_files, slack_destination, syslog_destination
from receivers import Receiver, Rsyslog

import rules
from collectors.capture import read_capture
from collectors.wire import decode_batch
from enrichers.records import ContainerMeta, Meta, ServiceMeta, encode
from enrichers.table import K8sTable
from rules.record import EV_PROC, P_CONTAINER_ID

pytestmark = [pytest.mark.e2e, pytest.mark.kafka]

NODE = "demo-node"  # the node name recorded in the capture
POD = "mysql-db-7d9f8b6c5d-x2x4k"
EXPECTED_RULES = Counter({
    ("Terminal shell in container", "Notice"): 1,
    ("Peregrine: Kubernetes or Docker Client Run in Container", "Warning"): 1,
    ("Contact K8S API Server From Container", "Notice"): 1,
    ("Change thread namespace", "Notice"): 1,
    ("Launch Package Management Process in Container", "Error"): 1,
})
API_SERVER = ServiceMeta(ip="10.96.0.1", name="kubernetes", namespace="default",
                         dns_name="kubernetes.default.svc.cluster.local")


def capture_container_id(capture: Path) -> str:
    for frame in read_capture(str(capture)):
        if frame.kind == "events":
            return str(decode_batch(frame.value).events[0][EV_PROC][P_CONTAINER_ID])
    raise AssertionError(f"{capture}: no events")


def mysql_pod(container_id: str) -> ContainerMeta:
    return ContainerMeta(
        container_id=container_id, runtime="containerd", name="mysql", image="mysql:8.4",
        image_repository="docker.io/library/mysql", image_tag="8.4", image_digest=None, privileged=False,
        start_ts=None, mounts=(), namespace="default", pod_name=POD,
        pod_uid="5e1c2d7e-0000-4000-8000-0000000001", labels={"app": "mysql"}, pod_ip="10.244.1.7", node=NODE,
    )


def engine_alerts(files: list[Path], capture: Path, k8s: list[Meta]) -> Counter[tuple[str, str, str]]:
    """What the rule engine alone says about the capture, with the same Kubernetes table."""
    table = K8sTable()
    for meta in k8s:
        table.apply(*encode(meta))
    ruleset = rules.load(files, ip_names=table.ip_names)
    out: Counter[tuple[str, str, str]] = Counter()
    for frame in read_capture(str(capture)):
        if frame.kind == "events":
            batch = decode_batch(frame.value)
            table.enrich(batch.procs)
            for ev, rule in ruleset.evaluate(batch.events):
                alert = rules.build_alert(rule, ev)
                out[(str(alert["rule"]), str(alert["priority"]), str(alert["output"]))] += 1
    return out


def test_replayed_attack_reaches_slack_syslog_and_file_as_falco_alerts(
    pipeline: Pipeline, receiver: type[Receiver], rsyslog: Rsyslog, falco_rules_dir: Path, tmp_path: Path
) -> None:
    files = rule_files(falco_rules_dir)
    k8s: list[Meta] = [mysql_pod(capture_container_id(ATTACK_CAPTURE)), API_SERVER]
    want = engine_alerts(files, ATTACK_CAPTURE, k8s)
    assert Counter((r, p) for r, p, _ in want.elements()) == EXPECTED_RULES

    slack = receiver("slack")
    slack_entry, env = slack_destination(slack)
    alerts_file = tmp_path / "alerts.jsonl"
    pipeline.publish_k8s(k8s)
    pipeline.start_worker(files)
    file_entry = {"name": "file", "type": "file", "path": str(alerts_file)}
    pipeline.start_sink([slack_entry, syslog_destination(rsyslog), file_entry], env)
    summary = pipeline.replay(ATTACK_CAPTURE)
    assert summary["undelivered"] == 0 and summary["replayed"]["events"] >= 1

    n = sum(want.values())
    arrivals = Arrivals(slack, rsyslog)
    arrivals.wait(lambda a: len(a.at_slack) >= n and len(a.at_syslog) >= n, 180, pipeline.describe)
    arrivals.settle(3.0)
    assert slack.problems == []

    docs = [json.loads(line) for line in alerts_file.read_text().splitlines()]
    assert Counter((d["rule"], d["priority"], d["output"]) for d in docs) == want
    assert {d["hostname"] for d in docs} == {NODE}
    by_uuid = {d["uuid"]: d for d in docs}
    assert len(by_uuid) == len(docs) == n
    assert set(arrivals.at_slack) == set(arrivals.at_syslog) == set(by_uuid)
    assert len(slack.alerts) == n and len(rsyslog.messages("tcp")) == n  # no duplicates either
    for uuid, doc in by_uuid.items():
        for delivered in (arrivals.at_slack[uuid], arrivals.at_syslog[uuid]):
            assert delivered.rule == doc["rule"]
            assert delivered.text == doc["output"]
        assert doc["output_fields"]["k8s.ns.name"] == "default"
        assert doc["output_fields"]["k8s.pod.name"] == POD
        assert f"k8s_pod_name={POD} k8s_ns_name=default" in doc["output"]
    shell = next(d for d in docs if d["rule"] == "Terminal shell in container")
    assert "parent=runc" in shell["output"] and shell["output_fields"]["proc.name"] == "bash"
    assert int(shell["output_fields"]["proc.tty"]) != 0
    api = next(d for d in docs if d["rule"] == "Contact K8S API Server From Container")
    assert "->10.96.0.1:443" in api["output"]
