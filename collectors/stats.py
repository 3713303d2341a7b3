"""The wire format of `peregrine.stats`: one msgpack map per node per interval (about a second).

    {"v": 1, "node": str, "boot_id": str, "t": int (ns since the epoch, end of the interval),
     "interval_ns": int, "n_evts": int, "n_read": int, "drops": {category: int, ...}}

Every count is a delta over the interval. `n_evts` counts the records the probe tried to emit,
dropped ones included (Falco's `n_evts` "always contains n_drops"), so the worker's drop alert
computes `sum(drops) / n_evts` as Falco does. `n_read` is what user space read from the ring
buffer. Drop categories: `ring_full` (kernel ring buffer), `inflight_full` (an enter/exit map
full; always 0 from this probe, which keeps none, but part of the format), `bug` (the probe found
no valid syscall registers and dropped the record; Falco's n_drops_bug),
`page_fault_reads` (a user-memory read failed: a field is empty, the event is kept),
`userspace_queue_full` (the Kafka producer's queue), `delivery_failed` (Kafka gave up on a batch).
The categories that lose whole events are `LOST_CATEGORIES`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

import msgpack

from collectors.errors import CollectorError
from collectors.wire import DROP_CAUSES, LOST_CAUSES, shown

STATS_VERSION: Final = 1
# One list of causes for both topics: a batch's ``drops`` (collectors.wire) counts the same ones.
CATEGORIES: Final = DROP_CAUSES
LOST_CATEGORIES: Final = LOST_CAUSES
_KEYS: Final = ("v", "node", "boot_id", "t", "interval_ns", "n_evts", "n_read", "drops")


# Also a ValueError, as it was before the package had a root: `streams.drops` catches ValueError.
class StatsError(CollectorError, ValueError):
    """A stats message that cannot be decoded; the message names the field."""


@dataclass(slots=True)
class Stats:
    node: str
    boot_id: str
    t: int
    interval_ns: int
    n_evts: int
    n_read: int
    drops: dict[str, int] = field(default_factory=dict)
    v: int = STATS_VERSION

    @property
    def n_drops(self) -> int:
        """Events lost (not counting fields lost to page faults)."""
        return sum(self.drops.get(c, 0) for c in LOST_CATEGORIES)


def encode_stats(s: Stats) -> bytes:
    packed: bytes = msgpack.packb(
        {
            "v": s.v,
            "node": s.node,
            "boot_id": s.boot_id,
            "t": s.t,
            "interval_ns": s.interval_ns,
            "n_evts": s.n_evts,
            "n_read": s.n_read,
            "drops": s.drops,
        },
        use_bin_type=True,
    )
    return packed


def decode_stats(data: bytes) -> Stats:
    """Unpack and validate; raises only StatsError."""
    try:
        obj: Any = msgpack.unpackb(data, raw=False)
    except (ValueError, TypeError, msgpack.UnpackException, RecursionError) as exc:
        raise StatsError(f"malformed msgpack: {type(exc).__name__}: {shown(str(exc))}") from None
    if not isinstance(obj, dict):
        raise StatsError(f"stats is not a map but {type(obj).__name__}")
    if obj.get("v") != STATS_VERSION:
        version = shown(obj.get("v"))
        raise StatsError(f"unsupported stats version v={version}, this build reads v={STATS_VERSION}")
    missing = [k for k in _KEYS if k not in obj]
    if missing:
        raise StatsError(f"missing field: {', '.join(missing)}")
    if not isinstance(obj["node"], str) or not isinstance(obj["boot_id"], str):
        raise StatsError("node and boot_id must be strings")
    for k in ("t", "interval_ns", "n_evts", "n_read"):
        if type(obj[k]) is not int or obj[k] < 0:
            raise StatsError(f"{k} must be a non-negative integer, got {shown(obj[k])}")
    drops = obj["drops"]
    if not isinstance(drops, dict) or not all(
        isinstance(k, str) and type(v) is int and v >= 0 for k, v in drops.items()
    ):
        raise StatsError("drops must map category names to non-negative integers")
    return Stats(
        obj["node"], obj["boot_id"], obj["t"], obj["interval_ns"], obj["n_evts"], obj["n_read"], drops
    )


class StatsCounter:
    """Turns cumulative counters into per-interval `Stats` deltas."""

    def __init__(self, node: str, boot_id: str, start_ns: int) -> None:
        self.node, self.boot_id = node, boot_id
        self._last_t = start_ns
        self._last: dict[str, int] = {}

    def delta(self, now_ns: int, totals: dict[str, int]) -> Stats:
        """totals: cumulative n_evts, n_read and every drop category."""
        d = {k: v - self._last.get(k, 0) for k, v in totals.items()}
        self._last = dict(totals)
        s = Stats(
            node=self.node,
            boot_id=self.boot_id,
            t=now_ns,
            interval_ns=now_ns - self._last_t,
            n_evts=d.pop("n_evts", 0),
            n_read=d.pop("n_read", 0),
            drops={c: d.get(c, 0) for c in CATEGORIES},
        )
        self._last_t = now_ns
        return s
