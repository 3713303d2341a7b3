"""Issue #17 section 3 on the real kernel: batches say what their node lost around them.

The collector runs with a 64 KiB ring and openat only (as test_collector_ring_overflow does); first
a quiet second with a few opens, then a child opens a file as fast as it can, so the full ring
refuses records. Every batch of the capture is decoded by the worker's decoder (the C pass and the
reference alike): the quiet second's batches carry no ``drops`` (their bytes are the envelope of
before), storm batches do, with the ring's losses; and no loss is left out: each counter read that
saw ring losses reaches at least one batch, so the batches' ``ring_full`` add up to at least the
kernel's total (they may add up to more: adjacent batches share reads).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import msgpack
import pytest
from collector_actions import Collector

from collectors.capture import read_capture
from collectors.wire import DROP_CAUSES, Batch, Decoder, decode_batch

pytestmark = [pytest.mark.root, pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]

STORM = """
import os, time
end = time.time() + 3
while time.time() < end:
    for _ in range(1000):
        os.close(os.open("/etc/hostname", os.O_RDONLY))
"""
RING_FULL = DROP_CAUSES.index("ring_full")


def test_storm_batches_carry_the_ring_losses_and_quiet_ones_nothing(tmp_path: object) -> None:
    out = f"{tmp_path}/drops.cap"
    collector = Collector(["record", "--out", out, "--event-types", "openat", "--ring-kb", "64"]).start()
    try:
        for _ in range(20):  # the quiet second: a few opens the ring takes easily
            os.close(os.open("/etc/hostname", os.O_RDONLY))
            time.sleep(0.05)
        time.sleep(0.5)
        storm_ns = time.time_ns()
        subprocess.run([sys.executable, "-c", STORM], check=True, timeout=60)
        assert collector.alive()
    finally:
        final = collector.stop()
    assert final["ring_full"] > 0, "the storm overflowed the ring"

    decoder = Decoder()
    batches: list[Batch] = []
    for frame in read_capture(out):
        if frame.kind == "events":
            batch = decoder.decode(frame.value)
            assert batch == decode_batch(frame.value)
            assert ("drops" in msgpack.unpackb(frame.value, raw=False)) == (batch.drops is not None)
            batches.append(batch)
    quiet = [b for b in batches if b.t_last < storm_ns]
    flagged = [b for b in batches if b.drops is not None]
    print(f"\n{len(batches)} batches, {len(quiet)} before the storm, {len(flagged)} flagged; kernel "
          f"ring_full {final['ring_full']}, batches' sum {sum(b.drops.counts[RING_FULL] for b in flagged)}")
    assert quiet and all(b.drops is None for b in quiet), "nothing lost: no drops key"
    assert flagged and all(b.t_first >= storm_ns - 10**9 for b in flagged)
    for b in flagged:
        assert b.drops is not None and b.drops.first_ns <= b.drops.last_ns
        assert b.drops.counts[RING_FULL] <= final["ring_full"]
        assert b.drops.lost >= b.drops.counts[RING_FULL]
    assert sum(b.drops.counts[RING_FULL] for b in flagged if b.drops) >= final["ring_full"]
