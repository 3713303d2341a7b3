"""Session-wide real Kafka brokers for the tests, and the markers' policy.

* `kafka_bootstrap`: one real single-node KRaft broker for the whole session.
* `kafka_cluster`: three real KRaft nodes (replication 3, min.insync.replicas 2) for failure tests,
  one per module; the fixture hands out the `devtools.localkafka.Cluster`, so tests can kill and
  restart nodes.
* `unique_topic`: random topic (and group) names, so tests never see each other's data.

Logs of a broker are kept (their directory is printed) when any test of the session failed.
`--require=kafka,root,...` turns skips for those markers into failures, which CI uses so that a
missing broker or missing root can never pass silently.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from devtools import localkafka

REPO = Path(__file__).resolve().parents[1]
# Falco's own rules files live in shared/, beside the repository (CI lays it out the same way);
# tests load them from there and never copy them into the project.
FALCO_RULES_DIR = Path(os.environ.get("PEREGRINE_FALCO_RULES", REPO.parent / "shared" / "falco-rules"))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--require",
        default=os.environ.get("PEREGRINE_REQUIRE", ""),
        help="comma-separated markers whose skips must fail instead (e.g. kafka,root)",
    )


def _required(config: pytest.Config) -> set[str]:
    return {m.strip() for m in str(config.getoption("--require")).split(",") if m.strip()}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    required = _required(item.config)
    # an expected failure (pytest.xfail) reports as skipped too: it ran, so it is not a skip
    if report.skipped and required and not hasattr(report, "wasxfail"):
        marks = {m.name for m in item.iter_markers()} & required
        if marks:
            report.outcome = "failed"
            reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
            report.longrepr = f"required marker(s) {sorted(marks)} but the test was skipped: {reason}"
    if report.failed:
        item.session.peregrine_failed = True  # type: ignore[attr-defined]


def _session_failed(request: pytest.FixtureRequest) -> bool:
    return bool(getattr(request.session, "peregrine_failed", False))


def _broker_root(name: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=f"peregrine-{name}-"))


def _start_or_skip(root: Path, n: int) -> localkafka.Cluster:
    try:
        return localkafka.start(root, n=n)
    except localkafka.KafkaError as exc:
        if "run ./scripts/setup" in str(exc) or "java not found" in str(exc):
            pytest.skip(f"no Kafka here: {exc}")
        raise


def _brokers(request: pytest.FixtureRequest, name: str, n: int) -> Iterator[localkafka.Cluster]:
    root = _broker_root(name)
    cluster = _start_or_skip(root, n)
    yield cluster
    # the data is thrown away (or kept only for its logs): a controlled shutdown took ~10 s of
    # every run for nothing
    localkafka.kill(cluster)
    if _session_failed(request):
        print(f"\nKafka {name} logs kept in {root}")
    else:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def kafka_broker(request: pytest.FixtureRequest) -> Iterator[localkafka.Cluster]:
    yield from _brokers(request, "kafka", 1)


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_broker: localkafka.Cluster) -> str:
    return kafka_broker.bootstrap


@pytest.fixture(scope="module")
def kafka_cluster(request: pytest.FixtureRequest) -> Iterator[localkafka.Cluster]:
    # per module: three idle nodes took 18% of a core (3.6 s of CPU per 20 s, measured) for the
    # rest of the session, which the tests after the failover module need
    yield from _brokers(request, "cluster", 3)


@pytest.fixture(scope="session")
def falco_rules_dir() -> Path:
    """Directory of Falco's falco_rules.yaml, falco-incubating_rules.yaml, falco-sandbox_rules.yaml."""
    if not (FALCO_RULES_DIR / "falco_rules.yaml").exists():
        pytest.fail(f"Falco rules not found in {FALCO_RULES_DIR} (set PEREGRINE_FALCO_RULES)")
    return FALCO_RULES_DIR


@pytest.fixture
def unique_topic() -> Callable[[str], str]:
    """`unique_topic("events")` -> "events-3f2a9c1e"; also good for consumer group ids."""

    def make(prefix: str = "t") -> str:
        return f"{prefix}-{uuid.uuid4().hex[:8]}"

    return make


@pytest.fixture(scope="session")
def kube_api(request: pytest.FixtureRequest) -> Iterator[Any]:
    """One real kube-apiserver with etcd for the session (tests/kube_apiserver.py), shared by the
    k8s and end-to-end tests; started on first use."""
    from kube_apiserver import serve

    yield from serve(request)


@pytest.fixture(scope="session")
def image_archive() -> Path:
    """The project's OCI image archive for HEAD (tests/image runs it under podman, tests/cluster
    on the kubelet). scripts/image builds it from HEAD's committed tree unless ~/.cache/peregrine/image
    already holds it (scripts/setup.d/70-image.sh builds it on a fresh machine, so here it is
    normally a cache hit)."""
    if os.geteuid() != 0:
        pytest.skip("scripts/image needs root (mmdebstrap, mount, chroot)")
    missing = [t for t in ("mmdebstrap", "podman", "skopeo") if shutil.which(t) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed: run ./scripts/setup (scripts/apt-packages.txt)")
    done = subprocess.run([str(REPO / "scripts" / "image")], capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, f"scripts/image failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    path = Path(done.stdout.strip().splitlines()[-1])
    assert path.is_file(), path
    print(f"\nimage archive {path}: {path.stat().st_size / 1e6:.1f} MB")
    return path
