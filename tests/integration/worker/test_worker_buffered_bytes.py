"""Issue #16: what a worker fetches and buffers is bounded by decompressed size, not by message count.

A node publishes valid batches of about 14 MB each that zstd makes a few KB on the wire (a shell's
argument list of 14,000 one-KiB strings). Faust buffers up to 256 messages per stream, so counted in
messages the worker would hold gigabytes before the agent caught up; the issue measured 945 MB for
250 such batches. Here the worker's peak resident memory (VmHWM) stays within the byte budget
(`streams.app` holds at most `BUFFER_BYTES` of fetched values) plus what one batch takes to decode,
and every batch is still evaluated: the marker batch after them raises its alert.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from confluent_kafka import Producer
from worker_batches import expected_shells, make_batch
from worker_harness import WorkerProcs, consume_until

from streams.app import BUFFER_BYTES

pytestmark = pytest.mark.kafka

HUGE = 60  # batches of ~14 MB: 840 MB counted whole
ARGS = ["x" * 1024] * 14_000


def _peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def test_buffered_batches_are_bounded_by_bytes(workers: WorkerProcs, tmp_path: Path) -> None:
    setup = workers.setup
    rules = tmp_path / "rules.yaml"
    rules.write_text("# stand-in rules\n")
    producer = Producer({"bootstrap.servers": setup.bootstrap, "compression.type": "zstd",
                         "message.max.bytes": 30_000_000, "enable.idempotence": True})  # fmt: skip
    huge = make_batch("node-a", 0, 1, shell_args=ARGS)
    assert len(huge) > 14_000_000
    for seq in range(HUGE):
        producer.produce(setup.topic("events"), make_batch("node-a", seq, 1, shell_args=ARGS), b"node-a",
                         partition=0)  # fmt: skip
        producer.poll(0)
    producer.produce(setup.topic("events"), make_batch("node-a", HUGE, 100, shell_every=50), b"node-a",
                     partition=0)  # fmt: skip
    assert producer.flush(120) == 0
    proc = workers.start([rules])
    want = expected_shells("node-a", [HUGE], 100, 50)
    alerts = consume_until(setup.bootstrap, setup.topic("alerts"), lambda r: len(r) >= len(want), 240,
                           settle=1, on_timeout=workers.describe)  # fmt: skip
    assert {(a.json()["hostname"], a.json()["output_fields"]["evt.num"]) for a in alerts} == want
    peak = _peak_rss(proc.pid)
    print(f"\nworker peak RSS {peak / 2**20:.0f} MiB for {HUGE} batches of {len(huge) / 2**20:.1f} MiB")
    assert peak < 300 * 2**20 + BUFFER_BYTES + 8 * len(huge), workers.describe()
    assert proc.poll() is None and "Traceback" not in workers.log_text(0), workers.describe()
