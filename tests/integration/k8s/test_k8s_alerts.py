"""From the real API server to a Falco alert: pod metadata published by k8s-meta, folded into the
worker's table, enriches events that Falco's own rules then match, and the alert carries
``k8s.ns.name``, ``k8s.pod.name`` and ``container.image.repository``; the ``kubernetes`` service IP
resolves through ``fd.sip.name`` so "Contact K8S API Server From Container" fires."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s_client

import rules
from benchmarks.workload import build_event, build_process
from enrichers.table import K8sTable
from enrichers.topic import read_records

pytestmark = [pytest.mark.k8s, pytest.mark.kafka]


def test_falco_alerts_carry_the_pod_metadata_of_the_api_server(
    make_publisher: Callable[..., Any], pods: Any, namespace: str, core: k8s_client.CoreV1Api,
    falco_rules_dir: Path,
) -> None:
    publisher = make_publisher()
    publisher.start()
    [cid] = pods.create(namespace, "mysql-db-0", {"app": "mysql"})
    api_ip = core.read_namespaced_service("kubernetes", "default").spec.cluster_ip
    publisher.wait_until(lambda s: cid.encode() in s and f"svc:{api_ip}".encode() in s, "pod and API service")
    publisher.stop()

    table = K8sTable()
    table.apply_all(read_records(publisher.config.bootstrap_servers, publisher.config.topic))
    falco = rules.load(falco_rules_dir / "falco_rules.yaml", ip_names=table.ip_names, all_matches=True)
    shell = build_process(name="bash", tty=34816, container_id=cid, parent={"name": "runc"})
    curl = build_process(pid=101, name="curl", exe="curl", exepath="/usr/bin/curl", container_id=cid)
    assert table.enrich([shell, curl]) == 0
    to_api = {"typechar": "4", "l4proto": "tcp", "cip": "10.1.0.5", "cport": 41000, "sip": api_ip,
              "sport": 443}
    events = [build_event("execve", proc=shell), build_event("connect", proc=curl, fd=to_api)]
    alerts = {rule.name: rules.build_alert(rule, ev) for ev, rule in falco.evaluate(events)}

    terminal = alerts["Terminal shell in container"]
    fields = terminal["output_fields"]
    assert isinstance(fields, dict)
    assert (fields["k8s.ns.name"], fields["k8s.pod.name"]) == (namespace, "mysql-db-0")
    assert fields["container.image.repository"] == "docker.io/library/nginx"
    assert fields["container.name"] == "c0"
    assert f"k8s_ns_name={namespace}" in str(terminal["output"])
    assert "Contact K8S API Server From Container" in alerts
