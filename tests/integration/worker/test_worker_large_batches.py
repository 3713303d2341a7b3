"""Issue #16, item 2: a batch that cannot be dead-lettered whole is dead-lettered as a reference.

Two batches too large for the worker: a 20 MB one that zstd makes a few KB on the wire (larger than
`streams.fetchbound.MAX_BATCH_DECOMPRESSED`, so it is refused while being decompressed), and 5 MB of
garbage. Before, the dead letter of
either was refused by the worker's producer (MessageSizeTooLargeError raised into the agent), the agent
crashed, Faust acked the batch and it was in no topic. Now each is a reference letter (the first KiB,
its size, its reason), and the valid batch after them is still evaluated.
"""

from __future__ import annotations

import random
from pathlib import Path

import msgpack
import pytest
from confluent_kafka import Producer
from worker_batches import expected_shells, make_batch
from worker_harness import WorkerProcs, consume_until

from bus import dlq
from streams import fetchbound

pytestmark = pytest.mark.kafka

BOMB = msgpack.packb({"v": 1, "node": "node-a", "pad": b"\x00" * 20_000_000})
GARBAGE = random.Random(2).randbytes(5_000_000)


def test_oversized_batches_are_dead_lettered_as_references(workers: WorkerProcs, tmp_path: Path) -> None:
    setup = workers.setup
    rules = tmp_path / "rules.yaml"
    rules.write_text("# stand-in rules\n")
    producer = Producer({"bootstrap.servers": setup.bootstrap, "compression.type": "zstd",
                         "message.max.bytes": 30_000_000, "enable.idempotence": True})
    for value in (BOMB, make_batch("node-a", 0, 100, shell_every=50), GARBAGE,
                  make_batch("node-a", 1, 100, shell_every=50)):
        producer.produce(setup.topic("events"), value, b"node-a", partition=0)
    assert producer.flush(60) == 0
    workers.start([rules])

    want = expected_shells("node-a", range(2), 100, 50)
    alerts = consume_until(setup.bootstrap, setup.topic("alerts"), lambda r: len(r) >= len(want), 90,
                           settle=2, on_timeout=workers.describe)
    assert {(a.json()["hostname"], a.json()["output_fields"]["evt.num"]) for a in alerts} == want
    letters = consume_until(setup.bootstrap, setup.topic("dlq"), lambda r: len(r) >= 2, 60,
                            settle=2, on_timeout=workers.describe)
    assert len(letters) == 2
    bomb_letter, garbage_letter = sorted(letters, key=lambda r: dlq.parse_headers(r.headers).offset)
    for record in letters:
        assert dict(record.headers)[dlq.REFERENCE] == b"1"
    # the bomb is refused while aiokafka decompresses it (streams.fetchbound), before it is whole in
    # memory: its letter names it and its codec, and holds none of it
    bomb = dlq.parse_headers(bomb_letter.headers)
    assert bomb.reason == fetchbound.REFUSED_REASON
    assert "zstd" in bomb.detail and str(fetchbound.MAX_BATCH_DECOMPRESSED) in bomb.detail
    assert bomb_letter.value == b""
    # the garbage arrives whole from Kafka, so its reference holds its size and first KiB
    assert int(dict(garbage_letter.headers)[dlq.SIZE]) == len(GARBAGE)
    assert garbage_letter.value == GARBAGE[: dlq.REFERENCE_BYTES]
    assert workers.procs[0].poll() is None
    assert "Traceback" not in workers.log_text(0), workers.describe()
