"""A syscall storm that overflows a small ring buffer: drops are counted exactly, the collector lives.

The collector runs with a 64 KiB ring and openat only; a child process opens a file as fast as it
can. The kernel counts every record it tried to emit (`n_evts`) and every one the full ring
refused (`ring_full`). After the programs are detached the collector reads those counters once
more; the test checks that the per-second stats it published add up to exactly those kernel
totals and that nothing is unaccounted for: n_evts == records read + ring_full.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from collector_actions import Collector, capture_contents

pytestmark = [pytest.mark.root, pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]

STORM = """
import os, time
end = time.time() + 4
while time.time() < end:
    for _ in range(1000):
        os.close(os.open("/etc/hostname", os.O_RDONLY))
"""


def test_ring_overflow_drops_are_counted_exactly_and_the_collector_stays_up(tmp_path: object) -> None:
    out = f"{tmp_path}/overflow.cap"
    collector = Collector(["record", "--out", out, "--event-types", "openat", "--ring-kb", "64"]).start()
    try:
        subprocess.run([sys.executable, "-c", STORM], check=True, timeout=60)
        assert collector.alive(), "the collector survived the storm"
    finally:
        final = collector.stop()
    events, stats = capture_contents(out)
    assert final["ring_full"] > 0, "the storm overflowed the ring"
    published = {
        "n_evts": sum(s.n_evts for s in stats),
        "n_read": sum(s.n_read for s in stats),
        "ring_full": sum(s.drops["ring_full"] for s in stats),
    }
    kernel = {k: final[k] for k in published}
    print(f"\nstorm: kernel {kernel}, published stats {published}, {len(stats)} stats messages")
    assert published == kernel
    assert final["n_evts"] == final["n_read"] + final["ring_full"]
    assert any(s.drops["ring_full"] > 0 for s in stats), "a per-second message shows the drops"
    assert len(events) == final["events_published"]
