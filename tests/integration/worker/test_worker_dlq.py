"""Poison batches go to the dead-letter topic with their reason and origin; every valid batch is
still evaluated (one worker process, real broker, stand-in rule)."""

from __future__ import annotations

from pathlib import Path

import msgpack
import pytest
from worker_batches import expected_shells, make_batch
from worker_harness import Record, WorkerProcs, consume_until, produce

from bus import dlq

pytestmark = pytest.mark.kafka


POISON = [
    (b"\xc1\xc1\xc1", "malformed msgpack"),
    (msgpack.packb({"v": 99, "node": "n"}), "unsupported schema version"),
    (msgpack.packb([1, 2, 3]), "envelope is not a map"),
]


def test_poison_batches_are_dead_lettered_and_valid_ones_evaluated(
    workers: WorkerProcs, tmp_path: Path
) -> None:
    setup = workers.setup
    rules = tmp_path / "rules.yaml"
    rules.write_text("# stand-in rules\n")
    records: list[tuple[bytes, bytes]] = []
    for seq in range(30):
        records.append((b"node-a", make_batch("node-a", seq, 200, shell_every=50)))
        if seq % 10 == 5:
            poison, _ = POISON[seq // 10]
            records.append((b"node-a", poison))
    produce(setup.bootstrap, setup.topic("events"), records)
    workers.start([rules])

    want = expected_shells("node-a", range(30), 200, 50)
    alerts = consume_until(
        setup.bootstrap, setup.topic("alerts"), lambda r: len(r) >= len(want), 90, settle=2,
        on_timeout=workers.describe,
    )
    got = {(a.json()["hostname"], a.json()["output_fields"]["evt.num"]) for a in alerts}
    assert got == want
    assert len(alerts) == len(want)

    letters: list[Record] = consume_until(
        setup.bootstrap, setup.topic("dlq"), lambda r: len(r) >= len(POISON), 30, on_timeout=workers.describe
    )
    by_value = {r.value: dlq.parse_headers(r.headers) for r in letters}
    assert len(letters) == len(POISON)
    for poison, reason in POISON:
        letter = by_value[poison]
        assert letter.reason == reason
        assert letter.topic == setup.topic("events")
        assert letter.offset >= 0 and 0 <= letter.partition < setup.partitions
    assert all(r.key == b"node-a" for r in letters)
