"""The worker tests' default fixture: fresh topics and a `WorkerProcs` that kills its workers at teardown.
Modules that need other partitions define their own `workers`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from worker_harness import WorkerProcs, WorkerSetup


@pytest.fixture
def workers(kafka_bootstrap: str, tmp_path: Path) -> Iterator[WorkerProcs]:
    setup = WorkerSetup(kafka_bootstrap, tmp_path)
    setup.create_topics()
    procs = WorkerProcs(setup)
    yield procs
    procs.stop_all()
