"""Issue #16, item 1: a record Kafka refuses is never lost, and takes no one else's alerts with it.

The alerts topic here accepts at most 16 KiB per record batch (a broker or topic stricter than the
256 KiB alerts are bounded to); one node's shell has 40 KB of incompressible arguments, so its alert
is refused by the broker. Before, the worker logged "Future exception was never retrieved",
committed the batch anyway (that alert gone) and the partition's transactional producer then failed
later sends with OutOfOrderSequenceNumber, losing alerts of innocent nodes on the same partition.
Now the commit waits for every send, and redoes the transaction with the refused batch's dead letter
in place of its alerts; every other alert arrives exactly once.
"""

from __future__ import annotations

import base64
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from worker_batches import expected_shells, make_batch
from worker_harness import WorkerProcs, WorkerSetup, consume_until, produce

from bus import dlq
from streams.letters import REFUSED

pytestmark = pytest.mark.kafka

NODES = [f"node-{i:02d}" for i in range(40)]
SMALL = 16 * 1024


@pytest.fixture
def strict_workers(kafka_bootstrap: str, tmp_path: Path) -> Iterator[WorkerProcs]:
    strict = {"alerts": {"max.message.bytes": str(SMALL)}}
    setup = WorkerSetup(kafka_bootstrap, tmp_path, topic_configs=strict)
    setup.create_topics()
    procs = WorkerProcs(setup)
    yield procs
    procs.stop_all()


def test_a_refused_alert_is_dead_lettered_and_no_other_alert_is_lost(
    strict_workers: WorkerProcs, tmp_path: Path
) -> None:
    workers, setup = strict_workers, strict_workers.setup
    rules = tmp_path / "rules.yaml"
    rules.write_text("# stand-in rules\n")
    noise = base64.b64encode(random.Random(16).randbytes(30_000)).decode()  # lz4 cannot shrink it
    poison = make_batch("node-poison", 0, 100, shell_every=50, shell_args=["-c", noise])
    records = [(b"node-poison", poison)]
    for seq in range(3):
        records += [(n.encode(), make_batch(n, seq, 100, shell_every=50)) for n in NODES]
    produce(setup.bootstrap, setup.topic("events"), records)
    workers.start([rules])

    want = set().union(*(expected_shells(n, range(3), 100, 50) for n in NODES))
    alerts = consume_until(
        setup.bootstrap, setup.topic("alerts"), lambda r: len(r) >= len(want), 120, settle=3,
        on_timeout=workers.describe,
    )
    got = [(a.json()["hostname"], a.json()["output_fields"]["evt.num"]) for a in alerts]
    assert set(got) == want
    assert len(got) == len(want), "an alert was committed twice"

    letters = consume_until(setup.bootstrap, setup.topic("dlq"), lambda r: len(r) >= 1, 60,
                            settle=2, on_timeout=workers.describe)
    assert len(letters) == 1
    letter = dlq.parse_headers(letters[0].headers)
    assert (letter.reason, letter.topic) == (REFUSED, setup.topic("events"))
    assert "MessageSizeTooLarge" in letter.detail
    assert letters[0].value == poison
    log = workers.log_text(0)
    assert "Future exception was never retrieved" not in log
    assert "OutOfOrderSequence" not in log
    assert workers.procs[0].poll() is None, workers.describe()
