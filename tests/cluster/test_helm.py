"""Peregrine installed by `helm install` on the tests' node (issue #15 §3): the chart's collector
DaemonSet, 2 workers, the sinks (Slack stand-in and a real rsyslogd on the host) and k8s-meta, run
from the project's image by the kubelet, talking to a broker on the host (Kafka stays outside the
cluster). One install serves every test here (`release`, conftest.py); its teardown uninstalls
and checks that no pod is left.
"""

from __future__ import annotations

from typing import Any

import pytest

from .helm_release import Release

pytestmark = [pytest.mark.kubelet, pytest.mark.root, pytest.mark.kafka]

ROLES = {"collector", "worker", "sink", "k8s-meta"}


def _ready(pod: dict[str, Any]) -> bool:
    conditions = {c["type"]: c["status"] for c in pod["status"].get("conditions", [])}
    return pod["status"].get("phase") == "Running" and conditions.get("Ready") == "True"


def test_every_pod_of_the_release_is_running_and_ready(release: Release) -> None:
    pods = release.pods()
    by_role: dict[str, list[str]] = {}
    for pod in pods:
        role = pod["metadata"]["labels"]["app.kubernetes.io/component"]
        by_role.setdefault(role, []).append(pod["metadata"]["name"])
    assert set(by_role) == ROLES, by_role
    assert len(by_role["worker"]) == 2 and len(by_role["collector"]) == 1, by_role
    assert len(by_role["sink"]) == 2, by_role  # one Deployment per destination
    not_ready = [p["metadata"]["name"] for p in pods if not _ready(p)]
    assert not_ready == [], release.describe()
    for pod in pods:
        (container,) = pod["spec"]["containers"]
        # the probes are the roles' own answers (telemetry.health), not a port check
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz", pod["metadata"]["name"]
        assert container["livenessProbe"]["httpGet"]["path"] == "/livez", pod["metadata"]["name"]
        assert all(s["restartCount"] == 0 for s in pod["status"]["containerStatuses"]), release.describe()
