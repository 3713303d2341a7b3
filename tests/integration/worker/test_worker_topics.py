"""A worker started against a broker without its topics creates them (partitions, compaction for
`peregrine.k8s`, `peregrine.control` compacted with one partition) and then consumes them: batches
produced afterwards are evaluated."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource
from worker_batches import expected_shells, make_batch
from worker_harness import WorkerProcs, WorkerSetup, consume_until, produce

pytestmark = pytest.mark.kafka


@pytest.fixture
def workers(kafka_bootstrap: str, tmp_path: Path) -> Iterator[WorkerProcs]:
    procs = WorkerProcs(WorkerSetup(kafka_bootstrap, tmp_path, partitions=3))
    yield procs
    procs.stop_all()


def test_missing_topics_are_created_and_consumed(workers: WorkerProcs, tmp_path: Path) -> None:
    setup = workers.setup
    rules = tmp_path / "rules.yaml"
    rules.write_text("# stand-in rules\n")
    workers.start([rules])
    admin = AdminClient({"bootstrap.servers": setup.bootstrap})
    names = [setup.topic(n) for n in ("events", "stats", "alerts", "dlq", "k8s")]
    deadline = time.monotonic() + 60
    while not {*names, setup.topic("control")} <= set(admin.list_topics(timeout=10).topics):
        assert time.monotonic() < deadline, f"topics not created\n{workers.describe()}"
        time.sleep(0.5)
    meta = admin.list_topics(timeout=10).topics
    assert all(len(meta[n].partitions) == 3 for n in names)
    assert len(meta[setup.topic("control")].partitions) == 1
    for compacted in ("k8s", "control"):
        resource = ConfigResource(ConfigResource.Type.TOPIC, setup.topic(compacted))
        config = admin.describe_configs([resource])[resource].result(10)
        assert config["cleanup.policy"].value == "compact", compacted

    batches = [(b"node-a", make_batch("node-a", s, 100, 50)) for s in range(4)]
    produce(setup.bootstrap, setup.topic("events"), batches)
    want = expected_shells("node-a", range(4), 100, 50)
    alerts = consume_until(setup.bootstrap, setup.topic("alerts"), lambda r: len(r) >= len(want), 90,
                           on_timeout=workers.describe)
    assert {a.json()["output_fields"]["evt.num"] for a in alerts} == {num for _, num in want}
