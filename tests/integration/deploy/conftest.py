"""Fixtures of the deployment tests: helm (built by scripts/setup.d/60-helm.sh), the session's
real kube-apiserver, and a real Prometheus server.

`kube_api` is the root conftest's session fixture (tests/kube_apiserver.py): one API server for
the k8s, deployment and end-to-end tests of a run.

`prometheus` starts the Debian ``prometheus`` binary with its own configuration and storage
directory on a free loopback port (never the system service), scraping the targets a test
gives it every second.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy_tools import HELM, READY_TIMEOUT_S, Helm
from kube_apiserver import free_port


@pytest.fixture(scope="session")
def helm() -> Helm:
    if not HELM.exists():
        pytest.fail(f"no helm at {HELM}: run scripts/setup (setup.d/60-helm.sh)")
    return Helm(HELM)


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


@pytest.fixture(scope="session")
def prometheus(request: pytest.FixtureRequest) -> Iterator[Any]:
    """``prometheus(["127.0.0.1:PORT", ...])``: a started Prometheus scraping those targets."""
    if shutil.which("prometheus") is None:
        pytest.fail("no prometheus binary: apt-get install prometheus (scripts/apt-packages.txt)")
    started: list[Prometheus] = []

    def start(targets: list[str]) -> Prometheus:
        p = Prometheus(Path(tempfile.mkdtemp(prefix="peregrine-prometheus-")), targets)
        started.append(p)
        p.start()
        return p

    yield start
    for p in started:
        p.stop()
        if getattr(request.session, "peregrine_failed", False):
            print(f"\nprometheus data and log kept in {p.root}")
        else:
            shutil.rmtree(p.root, ignore_errors=True)
