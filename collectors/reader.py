"""Drains the probe's ring buffer into raw record bytes.

The probe submits with BPF_RB_NO_WAKEUP, so nothing wakes this reader: `drain()` is called on a
timer (10 ms) and `ring_buffer_consume()` empties what is there. The callback only copies bytes,
everything else happens in batches in the decoder. The kernel's per-CPU counters (`counters`) are
the only loss accounting a BPF ring buffer has; `kernel_counters()` sums them.
"""

from __future__ import annotations

import ctypes
from typing import Any

from collectors.header import PG_CNT_N


class Reader:
    def __init__(self, bpf: Any) -> None:
        self._bpf = bpf
        self._pending: list[bytes] = []
        append, string_at = self._pending.append, ctypes.string_at

        def on_record(_ctx: Any, data: Any, size: int) -> int:
            append(string_at(data, size))
            return 0

        self._callback = on_record  # bcc keeps only a weak handle
        bpf["events"].open_ring_buffer(on_record)
        self._counters = bpf["counters"]

    def drain(self) -> list[bytes]:
        self._bpf.ring_buffer_consume()
        out = self._pending[:]
        self._pending.clear()
        return out

    def kernel_counters(self) -> list[int]:
        """Per-category totals since load (PG_CNT_* order), summed over CPUs."""
        return [sum(self._counters[ctypes.c_int(i)]) for i in range(PG_CNT_N)]
