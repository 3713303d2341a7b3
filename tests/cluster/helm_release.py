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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devtools import localkafka
from devtools.localkube import Node

TESTS = Path(__file__).resolve().parents[1]
for _folder in ("integration/sinks", "integration/deploy", "integration/worker", "e2e", "ebpf"):
    if str(TESTS / _folder) not in sys.path:
        sys.path.insert(0, str(TESTS / _folder))

from deploy_tools import CHART, HELM  # noqa: E402 - needs the sys.path entries above
from e2e_pipeline import SLACK_URL_ENV  # noqa: E402
from receivers import SLACK_PATH, Receiver, Rsyslog, serve_rsyslog  # noqa: E402

__all__ = ["CHART", "HELM", "SLACK_PATH", "SLACK_URL_ENV", "UNINSTALL_TIMEOUT_S", "Receiver", "Release",
           "Rsyslog", "serve_rsyslog"]

VALUES = Path(__file__).with_name("values-test.yaml")
INSTALL_TIMEOUT_S = 300
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
        files = [a for v in (*self.values, *extra) for a in ("--values", str(v))]
        return self.helm(verb, self.name, str(CHART), *files, "--wait", f"--timeout={INSTALL_TIMEOUT_S}s")

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
