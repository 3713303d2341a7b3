"""Drains the probe's ring buffer into parsed records.

The probe submits with BPF_RB_NO_WAKEUP, so nothing wakes this reader: `drain()` is called on a
timer (10 ms) and empties what is there. The ring is read in place through its mmapped pages by
the C extension `ringread` (collectors/native.py builds it): one call returns every committed
record already split into header fields and payload items (`collectors.decode.parse` is the same
thing in Python), with no per-record callback. The kernel's per-CPU counters (`counters`) are the
only loss accounting a BPF ring buffer has; `kernel_counters()` sums them.
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from typing import Any

from collectors import native
from collectors.decode import DecodeError, Record
from collectors.header import PG_CNT_N

_ALL = tuple(range(PG_CNT_N))


class Reader:
    def __init__(self, bpf: Any) -> None:
        ring = bpf["events"]
        self._ring = native.load().Ring(ring.map_fd, ring.max_entries, DecodeError)
        self._counters = bpf["counters"]

    def drain(self) -> list[Record]:
        records: list[Record] = self._ring.drain()
        return records

    def close(self) -> None:
        self._ring.close()

    def kernel_counters(self, which: Sequence[int] = _ALL) -> list[int]:
        """Per-category totals since load, summed over CPUs: the PG_CNT_* ids in `which` (all of them,
        in PG_CNT_* order, by default), in that order."""
        return [sum(self._counters[ctypes.c_int(i)]) for i in which]
