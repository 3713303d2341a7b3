"""Peregrine installed by `helm install` on the tests' node (issue #15 §3): the chart's collector
DaemonSet, 2 workers, the sinks (Slack stand-in and a real rsyslogd on the host) and k8s-meta, run
from the project's image by the kubelet, talking to a broker on the host (Kafka stays outside the
cluster). One install serves every test here (`release`, conftest.py); its teardown uninstalls
and checks that no pod is left.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from deploy_tools import CHART, Prometheus

from .helm_release import Release

pytestmark = [pytest.mark.kubelet, pytest.mark.root, pytest.mark.kafka]

ROLES = {"collector", "worker", "sink", "k8s-meta"}
STAGES = {"collector", "worker", "sink", "k8s_meta"}
DASHBOARD = CHART.parents[2] / "k8s" / "dashboards" / "peregrine.json"
SCRAPE_TIMEOUT_S = 60
# A headline panel of each stage, as _dashboard_queries gives it: these must have data.
HEADLINES = [
    "sum(rate(peregrine_collector_events_total[1m]))",
    "sum(rate(peregrine_worker_events_total[1m]))",
    'sum by (destination) (rate(peregrine_sink_delivered_total{destination=~".*"}[1m]))',
    "sum(peregrine_k8s_meta_keys)",
]


def test_every_pod_of_the_release_is_running_and_ready(release: Release) -> None:
    pods = release.pods()
    by_role: dict[str, list[str]] = {}
    for pod in pods:
        role = pod["metadata"]["labels"]["app.kubernetes.io/component"]
        by_role.setdefault(role, []).append(pod["metadata"]["name"])
    assert set(by_role) == ROLES, by_role
    assert len(by_role["worker"]) == 2 and len(by_role["collector"]) == 1, by_role
    assert len(by_role["sink"]) == 2, by_role  # one Deployment per destination
    assert release.all_ready(), release.describe()
    for pod in pods:
        (container,) = pod["spec"]["containers"]
        # the probes are the roles' own answers (telemetry.health), not a port check
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz", pod["metadata"]["name"]
        assert container["livenessProbe"]["httpGet"]["path"] == "/livez", pod["metadata"]["name"]
        assert all(s["restartCount"] == 0 for s in pod["status"]["containerStatuses"]), release.describe()


def test_prometheus_scrapes_every_pod_and_the_dashboard_has_data(release: Release, tmp_path: Path) -> None:
    """A real Prometheus on the host scrapes each pod at its own address (static targets over the
    CNI bridge: no in-cluster Prometheus here), and the dashboard's queries return data for every
    stage. A sink exports its series once it has delivered, so the test makes one alert: a
    connection to the API server from a release pod ("Contact K8S API Server From Container")."""
    pods = release.pods()
    targets = {f"{p['status']['podIP']}:{_metrics_port(p)}": p["metadata"]["name"] for p in pods}
    sink = next(p["metadata"]["name"] for p in pods if p["metadata"]["name"].startswith("pg-sink-slack"))
    connect = "import socket; socket.create_connection(('10.0.0.1', 443), 5).close()"
    release.node.kubectl("exec", "-n", release.namespace, sink, "--", "python3", "-c", connect)
    queries = _dashboard_queries()
    prom = Prometheus(tmp_path, sorted(targets))
    prom.start()
    try:
        deadline = time.monotonic() + SCRAPE_TIMEOUT_S
        while True:
            up = {r["metric"]["instance"]: r["value"][1] for r in prom.api("query", query="up")["result"]}
            with_data = [q for q in queries if prom.api("query", query=q)["result"]]
            stages = {s for s in STAGES for q in with_data if f"peregrine_{s}_" in q}
            headlines = [q for q in HEADLINES if q in with_data]
            if set(up.values()) == {"1"} and len(up) == len(targets) and headlines == HEADLINES:
                break
            if time.monotonic() > deadline:
                break
            time.sleep(1)
    finally:
        prom.stop()
    print(f"\n{len(with_data)} of {len(queries)} dashboard queries return data; empty: "
          f"{[q[:80] for q in queries if q not in with_data]}")
    assert {targets[i]: v for i, v in up.items()} == {name: "1" for name in targets.values()}
    assert stages == STAGES, with_data
    assert headlines == HEADLINES, with_data


def _metrics_port(pod: dict[str, Any]) -> int:
    (container,) = pod["spec"]["containers"]
    return int(next(p["containerPort"] for p in container["ports"] if p["name"] == "metrics"))


def _dashboard_queries() -> list[str]:
    """The dashboard's PromQL with Grafana's variables given values (test_grafana_dashboard checks
    the dashboard itself)."""
    doc = json.loads(DASHBOARD.read_text())
    panels = [q for p in doc["panels"] for q in (p, *p.get("panels", []))]
    found = [t["expr"] for p in panels for t in p.get("targets", [])]
    return [e.replace("$__rate_interval", "1m").replace("$destination", ".*") for e in found]
