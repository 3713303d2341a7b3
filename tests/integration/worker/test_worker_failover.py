"""Two worker processes in one group split the partitions; ``kill -9`` of one in the middle of a
replay: the survivor takes over and a read_committed consumer sees every expected alert exactly once,
counted by uuid and by content.

It replays the 1,000,000 events the issue asks for (about 25 s here since the replay has one
producer; a 200,000-event run that existed for speed covered nothing this one does not). It uses the
stand-in rule (`worker_batches.StandInEngine`), so it tests the worker's plumbing, not the compiler.
"""

from __future__ import annotations

import re
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from worker_batches import expected_shells, make_batch
from worker_harness import WorkerProcs, WorkerSetup, consume_until, open_producer, send

pytestmark = pytest.mark.kafka

NODES = [f"node-{i}" for i in range(8)]
BATCH = 500
SHELL_EVERY = 1000


@pytest.fixture
def workers(kafka_bootstrap: str, tmp_path: Path) -> Iterator[WorkerProcs]:
    setup = WorkerSetup(kafka_bootstrap, tmp_path, partitions=6)
    setup.create_topics()
    procs = WorkerProcs(setup)
    yield procs
    procs.stop_all()


def _wait_for_log(procs: WorkerProcs, index: int, pattern: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if re.search(pattern, procs.log_text(index)):
            return
        assert procs.procs[index].poll() is None, f"worker {index} exited\n{procs.describe()}"
        time.sleep(0.2)
    raise AssertionError(f"worker {index}: no {pattern!r} after {timeout:.0f} s\n{procs.describe()}")


def _assigned_event_partitions(log: str, topic: str) -> str:
    """The events partitions of the worker's latest assignment, as Faust prints them ('{0-2}')."""
    found = re.findall(rf"\|\s*{re.escape(topic)}\s*\|\s*(\{{[^}}]*\}})\s*\|", log)
    return found[-1] if found else ""


def test_kill_9_of_one_worker_loses_and_duplicates_no_alert(workers: WorkerProcs, tmp_path: Path) -> None:
    n_events = 1_000_000
    setup = workers.setup
    rules = tmp_path / "rules.yaml"
    rules.write_text("# stand-in rules\n")
    events_topic, alerts_topic = setup.topic("events"), setup.topic("alerts")
    batches_per_node = n_events // BATCH // len(NODES)
    want = set().union(*(expected_shells(n, range(batches_per_node), BATCH, SHELL_EVERY) for n in NODES))

    workers.start([rules])
    workers.start([rules])
    for i in (0, 1):
        _wait_for_log(workers, i, r"Worker\]: Ready", 90)

    def replay() -> None:
        # One producer for the whole replay: a producer per round spent most of the 1M run connecting.
        # Paced, so the kill lands while batches are still arriving.
        p = open_producer(setup.bootstrap)
        for seq in range(batches_per_node):
            send(p, events_topic, [(n.encode(), make_batch(n, seq, BATCH, SHELL_EVERY)) for n in NODES])
            time.sleep(0.02)
        left = p.flush(60)
        assert left == 0, f"{left} batches not delivered"

    producer = threading.Thread(target=replay, name="replay")
    producer.start()
    try:
        consume_until(setup.bootstrap, alerts_topic, lambda r: len(r) >= len(want) // 3, 120,
                      on_timeout=workers.describe)
        split = [_assigned_event_partitions(workers.log_text(i), events_topic) for i in (0, 1)]
        assert all(s not in ("", "{}") for s in split), f"partitions not split between the workers: {split}"
        workers.procs[0].send_signal(signal.SIGKILL)
        workers.procs[0].wait(10)
    finally:
        producer.join(300)
    assert not producer.is_alive(), "replay did not finish"

    alerts = consume_until(setup.bootstrap, alerts_topic, lambda r: len(r) >= len(want), 240, settle=8,
                           on_timeout=workers.describe)
    docs = [a.json() for a in alerts]
    by_uuid = Counter(d["uuid"] for d in docs)
    by_content = Counter((d["hostname"], d["output_fields"]["evt.num"], d["rule"], d["output"]) for d in docs)
    duplicates = [u for u, c in by_uuid.items() if c > 1]
    assert not duplicates, f"{len(duplicates)} alerts seen more than once, e.g. {duplicates[:3]}"
    assert max(by_content.values()) == 1
    assert {(d["hostname"], d["output_fields"]["evt.num"]) for d in docs} == want
    assert len(docs) == len(want)
    assert workers.procs[1].poll() is None, f"the survivor died\n{workers.describe()}"
