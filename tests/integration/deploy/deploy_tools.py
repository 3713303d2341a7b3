"""What the deployment tests and their fixtures share: where helm, the chart and the CRDs are,
and a small helm runner. A module of its own, not the conftest, so test modules import it by a
name no other folder's conftest shadows."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

CACHE = Path(os.environ.get("PEREGRINE_CACHE", Path.home() / ".cache" / "peregrine"))
HELM = CACHE / "helm"
CHART = Path(__file__).resolve().parents[3] / "k8s" / "chart" / "peregrine"
SERVICE_MONITOR_CRD = CACHE / "crds" / "servicemonitors.yaml"  # also from 60-helm.sh
KUBE_VERSION = "1.37.2"  # the test API server's: what capability checks in templates see
READY_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Helm:
    binary: Path

    def run(self, *args: str) -> str:
        out = subprocess.run([str(self.binary), *args], capture_output=True, text=True, timeout=120)
        if out.returncode != 0:
            command = " ".join(args)
            raise AssertionError(f"helm {command} failed ({out.returncode}):\n{out.stderr}{out.stdout}")
        return out.stdout

    def lint(self, *values: Path) -> str:
        return self.run("lint", str(CHART), "--strict", "--kube-version", KUBE_VERSION,
                        *[a for v in values for a in ("--values", str(v))])

    def template(self, namespace: str, *values: Path, release: str = "pg") -> list[dict[str, Any]]:
        text = self.run("template", release, str(CHART), "--namespace", namespace, "--kube-version",
                        KUBE_VERSION, *[a for v in values for a in ("--values", str(v))])
        return [d for d in yaml.safe_load_all(text) if d]


