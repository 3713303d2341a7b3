"""Fixtures of the deployment tests: helm (built by scripts/setup.d/60-helm.sh), the session's
real kube-apiserver, and a real Prometheus server.

`kube_api` is the root conftest's session fixture (tests/kube_apiserver.py): one API server for
the k8s, deployment and end-to-end tests of a run.

`prometheus` starts the Debian ``prometheus`` binary with its own configuration and storage
directory on a free loopback port (never the system service), scraping the targets a test
gives it every second.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from deploy_tools import HELM, Helm, Prometheus


@pytest.fixture(scope="session")
def helm() -> Helm:
    if not HELM.exists():
        pytest.fail(f"no helm at {HELM}: run scripts/setup (setup.d/60-helm.sh)")
    return Helm(HELM)


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
