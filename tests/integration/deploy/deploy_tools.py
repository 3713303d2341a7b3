"""What the deployment tests and their fixtures share: where helm, the chart and the CRDs are,
a small helm runner, and a real Prometheus (tests/cluster scrapes the release's pods with it). A
module of its own, not the conftest, so test modules import it by a name no other folder's
conftest shadows."""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from kube_apiserver import free_port

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


@dataclass
class Prometheus:
    """A running Prometheus and its HTTP API."""

    root: Path
    targets: list[str]
    port: int = field(default_factory=lambda: free_port())
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [{"job_name": "peregrine", "static_configs": [{"targets": self.targets}]}]
            if self.targets else [],
        }
        (self.root / "prometheus.yml").write_text(yaml.safe_dump(config))
        log = self.root / "prometheus.log"
        self.proc = subprocess.Popen(
            ["prometheus", f"--config.file={self.root / 'prometheus.yml'}",
             f"--storage.tsdb.path={self.root / 'data'}", f"--web.listen-address=127.0.0.1:{self.port}",
             "--web.enable-lifecycle"],
            stdout=log.open("ab"), stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = log.read_text()[-3000:]
                raise RuntimeError(f"prometheus exited with {self.proc.returncode}:\n{tail}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"prometheus not ready in {READY_TIMEOUT_S}s; log: {log}")

    def api(self, path: str, **params: str) -> Any:
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as resp:
                doc = json.loads(resp.read())
        except urllib.error.HTTPError as exc:  # 400 for a query Prometheus cannot parse
            raise AssertionError(f"prometheus {path} {params}: {exc.code} {exc.read().decode()}") from None
        assert doc["status"] == "success", doc
        return doc["data"]

    def series(self, match: str) -> list[dict[str, str]]:
        result: list[dict[str, str]] = self.api("series", **{"match[]": match})
        return result

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
