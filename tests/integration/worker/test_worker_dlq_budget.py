"""Issue #16, item 6: one node's garbage cannot fill the brokers' disks through the dead-letter topic.

A node sends 100 undecodable batches, another one; the dead-letter topic gets the noisy node's burst
(`streams.letters.BURST`) and the quiet node's letter, and the noisy node's next letter, once its
budget refilled, counts every letter refused meanwhile. Before, all 101 were written, each kept for
14 days against an hour for events.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from worker_harness import Record, WorkerProcs, consume_until, produce

from bus import dlq
from streams.letters import BURST, RATE_PER_S

pytestmark = pytest.mark.kafka

GARBAGE = b"\xc1 not msgpack"


def _suppressed(r: Record) -> int:
    return sum(int(v) for k, v in r.headers if k == dlq.SUPPRESSED)


def test_a_noisy_node_gets_its_burst_and_a_count(workers: WorkerProcs, tmp_path: Path) -> None:
    setup = workers.setup
    rules = tmp_path / "rules.yaml"
    rules.write_text("# stand-in rules\n")
    produce(setup.bootstrap, setup.topic("events"), [(b"noisy", GARBAGE)] * 100 + [(b"quiet", GARBAGE)])
    workers.start([rules])

    def noisy(records: list[Record]) -> list[Record]:
        return [r for r in records if r.key == b"noisy"]

    first = consume_until(setup.bootstrap, setup.topic("dlq"),
                          lambda r: len(noisy(r)) >= BURST and len(r) > len(noisy(r)), 90,
                          settle=2, on_timeout=workers.describe)
    # a refill may add a letter or two while the 100 are read; never the 100
    assert BURST <= len(noisy(first)) <= BURST + 3
    assert [r.key for r in first if r.key != b"noisy"] == [b"quiet"]

    time.sleep(2 / RATE_PER_S)  # the budget refills on the worker's clock: wait for one letter's worth
    produce(setup.bootstrap, setup.topic("events"), [(b"noisy", GARBAGE)])
    counted = consume_until(setup.bootstrap, setup.topic("dlq"), lambda r: any(map(_suppressed, r)), 60,
                            settle=1, on_timeout=workers.describe)
    letters = noisy(counted)
    assert len(letters) + sum(map(_suppressed, letters)) == 101
    assert all(dlq.parse_headers(r.headers).reason == "malformed msgpack" for r in letters)
