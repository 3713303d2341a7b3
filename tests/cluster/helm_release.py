"""Peregrine installed by helm on the tests' node: the release's handle (`Release`), shared by the
fixture that installs it (conftest.py) and the tests that use it. The receivers, helm and the
end-to-end helpers belong to other test folders, whose modules are made importable here (what
pytest's default import mode does for every test folder it collects).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devtools import localkafka
from devtools.localkube.node import Node
from devtools.localkube.procs import binary

TESTS = Path(__file__).resolve().parents[1]
for _folder in ("integration/sinks", "integration/deploy", "integration/worker", "e2e", "ebpf"):
    if str(TESTS / _folder) not in sys.path:
        sys.path.insert(0, str(TESTS / _folder))

from deploy_tools import CHART, HELM  # noqa: E402 - needs the sys.path entries above
from e2e_pipeline import SLACK_URL_ENV, Arrivals, Delivered  # noqa: E402
from receivers import SLACK_PATH, Receiver, Rsyslog, serve_rsyslog  # noqa: E402

__all__ = ["CHART", "HELM", "SLACK_PATH", "SLACK_URL_ENV", "UNINSTALL_TIMEOUT_S", "Receiver", "Release",
           "Rsyslog", "serve_rsyslog"]

VALUES = Path(__file__).with_name("values-test.yaml")
INSTALL_TIMEOUT_S = 300
DEADLINE_S = 120.0  # for an alert to reach the receivers: correctness only (the machine is shared)
# `helm uninstall --wait` waits for the objects it deleted, not for their pods to stop
UNINSTALL_TIMEOUT_S = 60


@dataclass
class Release:
    """Peregrine as `helm install` made it on the node, and where its alerts arrive on the host."""

    node: Node
    name: str
    namespace: str
    kafka: localkafka.Cluster
    slack: Receiver
    rsyslog: Rsyslog
    values: list[Path]

    def helm(self, *args: str, timeout: float = INSTALL_TIMEOUT_S) -> str:
        done = subprocess.run([str(HELM), f"--kubeconfig={self.node.kubeconfig}", "--namespace",
                               self.namespace, *args], capture_output=True, text=True, timeout=timeout + 30,
                              check=False)
        if done.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} failed ({done.returncode}):\n"
                                 f"{done.stderr}{done.stdout}\n{self.describe()}")
        return done.stdout

    def install(self, *extra: Path, verb: str = "install") -> str:
        """`helm install` (or `upgrade`), then every pod Ready: helm's --wait does not wait for the
        collector (a DaemonSet of one pod with maxUnavailable 10% may have none ready)."""
        files = [a for v in (*self.values, *extra) for a in ("--values", str(v))]
        out = self.helm(verb, self.name, str(CHART), *files, "--wait", f"--timeout={INSTALL_TIMEOUT_S}s")
        deadline = time.monotonic() + INSTALL_TIMEOUT_S
        while not self.all_ready():
            if time.monotonic() > deadline:
                raise AssertionError(f"not every pod Ready {INSTALL_TIMEOUT_S}s after helm {verb}\n"
                                     f"{self.describe()}")
            time.sleep(0.5)
        return out

    def all_ready(self) -> bool:
        """Every pod of the release Ready, and none of an older revision still there."""
        pods = self.pods()
        return bool(pods) and all(_ready(p) and "deletionTimestamp" not in p["metadata"] for p in pods)

    def pods(self, namespace: str | None = None) -> list[dict[str, Any]]:
        out = self.node.kubectl("get", "pods", "-n", namespace or self.namespace, "-o", "json").stdout
        items: list[dict[str, Any]] = json.loads(out)["items"]
        return items

    def wait_no_pods(self, timeout: float) -> list[str]:
        """The release's pods still there after `timeout` seconds (none, once they all stopped)."""
        deadline = time.monotonic() + timeout
        while True:
            left = [p["metadata"]["name"] for p in self.pods()]
            if not left or time.monotonic() > deadline:
                return left
            time.sleep(0.5)

    def describe(self) -> str:
        """What a failure needs: the pods' states and each container's log tail."""
        lines = [self.node.kubectl("get", "pods", "-n", self.namespace, "-o", "wide", check=False).stdout]
        for pod in self.pods():
            name = pod["metadata"]["name"]
            logs = self.node.kubectl("logs", "-n", self.namespace, name, "--tail=15", check=False)
            lines.append(f"--- {name}: {json.dumps(pod['status'].get('containerStatuses'))[:600]}\n"
                         f"{logs.stdout}{logs.stderr}")
        return "\n".join(lines)


def _ready(pod: dict[str, Any]) -> bool:
    conditions = {c["type"]: c["status"] for c in pod["status"].get("conditions", [])}
    return pod["status"].get("phase") == "Running" and conditions.get("Ready") == "True"


@dataclass
class Target:
    """The pod the operator attacks from, as the kubelet runs it."""

    namespace: str
    name: str
    container_id: str  # the full id `crictl ps` lists
    arrivals: Arrivals

    def exec_argv(self, node: Node, *command: str, tty: bool = False) -> list[str]:
        flags = ["-it"] if tty else ["-i"]
        return [str(binary("kubectl")), f"--kubeconfig={node.kubeconfig}", "exec", *flags, "-n",
                self.namespace, self.name, "--", *command]

    def mine(self, found: dict[str, Delivered]) -> dict[str, Delivered]:
        mark = f"container_id={self.container_id[:12]}"
        return {u: d for u, d in found.items() if mark in d.text}

    def wait_for_rules(
        self, rules: set[str], describe: Any
    ) -> tuple[dict[str, Delivered], dict[str, Delivered]]:
        def done(a: Arrivals) -> bool:
            return all(rules <= {d.rule for d in self.mine(f).values()} for f in (a.at_slack, a.at_syslog))

        self.arrivals.wait(done, DEADLINE_S, describe)
        self.arrivals.settle(2.0)
        return self.mine(self.arrivals.at_slack), self.mine(self.arrivals.at_syslog)


def running_pod(node: Node, namespace: str, name: str, timeout: float = 90) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        out = node.kubectl("get", "pod", "-n", namespace, name, "-o", "json").stdout
        pod: dict[str, Any] = json.loads(out)
        statuses = pod["status"].get("containerStatuses") or [{}]
        if statuses[0].get("ready"):
            return pod
        if time.monotonic() > deadline:
            raise AssertionError(f"pod {namespace}/{name} not ready in {timeout}s: {json.dumps(pod)[:2000]}")
        time.sleep(0.3)


def target_pod(release: Release, image_ref: str) -> Iterator[Target]:
    """A pod of the project's image (Debian-based) running `sleep` as root in a namespace of its
    own, for a module's tests to act in; the namespace is deleted after."""
    node = release.node
    namespace, name = f"shop-{uuid.uuid4().hex[:6]}", f"web-{uuid.uuid4().hex[:8]}"
    node.kubectl("create", "namespace", namespace)
    pod = {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace},
        "spec": {"containers": [{"name": "web", "image": image_ref, "imagePullPolicy": "Never",
                                 "command": ["sleep", "infinity"],
                                 # root in the container, as many images run: apt and nsenter expect it
                                 "securityContext": {"runAsUser": 0}}],
                 "terminationGracePeriodSeconds": 1},
    }
    node.kubectl("apply", "-f", "-", input=json.dumps(pod))
    try:
        running = running_pod(node, namespace, name)
        cid = running["status"]["containerStatuses"][0]["containerID"].partition("://")[2]
        out = node.crictl("ps", "--label", f"io.kubernetes.pod.name={name}", "-o", "json").stdout
        listed = json.loads(out)
        assert [c["id"] for c in listed["containers"]] == [cid], listed
        yield Target(namespace, name, cid, Arrivals(release.slack, release.rsyslog))
    finally:
        node.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
