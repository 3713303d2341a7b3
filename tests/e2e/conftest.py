"""Fixtures of the end-to-end tests, borrowed from the stages' own integration tests.

The receivers (Slack stand-in, the real rsyslogd) and the worker harness belong to other test
folders. Pytest no longer accepts ``pytest_plugins`` outside the root conftest, so the sinks'
conftest is imported here by path under a private module name and its fixtures re-exported (the
kube-apiserver is the root conftest's session fixture `kube_api`, so there is one per run).
Helper modules are made importable by adding their folders to ``sys.path`` (what pytest's
default import mode does for every test folder it collects).

`pipeline` hands out an `e2e_pipeline.Pipeline` with test-unique topics, groups and app ids, and
kills every process it started at teardown.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from kubernetes import client as k8s_client

TESTS = Path(__file__).resolve().parents[1]
for _folder in ("e2e", "integration/sinks", "integration/worker", "integration/k8s", "ebpf"):
    if str(TESTS / _folder) not in sys.path:
        sys.path.insert(0, str(TESTS / _folder))


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


_sinks = _load("e2e_borrowed_sink_fixtures", TESTS / "integration" / "sinks" / "conftest.py")

receiver = _sinks.receiver
rsyslog = _sinks.rsyslog

from e2e_pipeline import Pipeline  # noqa: E402 - needs the sys.path entries above


@pytest.fixture
def core(kube_api: Any) -> Iterator[k8s_client.CoreV1Api]:
    """An API client of the session's kube-apiserver (`kube_api`, tests/conftest.py)."""
    api = kube_api.client()
    yield k8s_client.CoreV1Api(api)
    api.close()


@pytest.fixture
def pipeline(kafka_bootstrap: str, tmp_path: Path) -> Iterator[Pipeline]:
    p = Pipeline(kafka_bootstrap, tmp_path)
    try:
        yield p
    finally:
        p.stop_all()
