"""Groups events into self-contained `collectors.wire.Batch`es, closed by size or by age.

An event's process record and up to `MAX_ANCESTORS` of its ancestors go into the batch once, so
`proc.pname`, `proc.aname[N]` and `proc.pcmdline` resolve from the batch alone. In-memory records
hold references (`P_PARENT` is a record); the batch holds copies with indexes. A parent is always
appended before its child, so parent indexes are smaller and the chain can never cycle.

What the node lost around a batch travels in it (`collectors.wire` ``drops``), chosen by
`DropWindow` so that an alert from a batch knows of every loss among its events; the reasoning is
there. It travels in the batch rather than being joined on the worker with `peregrine.stats`
because Kafka orders nothing between the two topics: a worker evaluating a batch cannot know
whether the stats covering its time have arrived, and a replay would not see the same ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from collectors.wire import DROP_CAUSES, MAX_DROP_COUNT, Batch, Drops
from rules.record import EV_PROC, EV_TS, P_PARENT, Event, Process

MAX_ANCESTORS: Final = 8


class DropWindow:
    """The node's drop counters, read after every drain, attributed to the batches they may concern.

    The collector reads the counters (every cause of `DROP_CAUSES`, cumulative) right after each
    drain of the ring, at times R1, R2, ...; the delta of read k counts losses in (R(k-1), Rk].
    Which events were written around a loss? The ring is read in order; a drain empties what was
    committed before its last look, so the events of drain k were written after drain k-1 last
    looked (itself after R(k-2)) and before drain k ended (before Rk): within (R(k-2), Rk]. A
    loss between two events of drain k therefore counts in read k-1 or read k. A batch holding
    events of drains a..b carries the deltas of reads a-1..b, all known when it closes (it closes
    after read b). Adjacent batches share reads, so the counts are "around this batch", not a
    partition of the node's losses (`peregrine.stats` has the exact per-second totals).

    Losses after the ring are counted where the collector learns of them: a batch the producer's
    queue refused counts in the next read (so in a later batch than its own: the lost batch is the
    one just before, and the worker's sequence check sees the gap too); one Kafka gave up on, when
    librdkafka reports it. Cost when nothing is lost: one read per drain (three counter lookups)
    and an empty list; a batch without losses carries no ``drops`` at all.
    """

    def __init__(self, now_ns: int, totals: Sequence[int] | None = None) -> None:
        self._last = tuple(totals) if totals is not None else (0,) * len(DROP_CAUSES)
        self._last_ns = now_ns
        self._read = 0  # reads so far; the current drain's events are of read `_read`
        self._opened: int | None = None  # the read of the open batch's first drain
        self._deltas: list[tuple[int, int, int, tuple[int, ...]]] = []  # (read, from_ns, to_ns, counts)

    def read(self, now_ns: int, totals: Sequence[int]) -> None:
        """Cumulative counters, in `DROP_CAUSES` order, read right after a drain (before batching it)."""
        self._read += 1
        totals = tuple(totals)
        if totals != self._last:
            # a counter that went backwards (reloaded probe) is a fresh start, not a negative loss
            counts = tuple(max(0, t - last) for t, last in zip(totals, self._last, strict=True))
            if any(counts):
                self._deltas.append((self._read, self._last_ns, now_ns, counts))
            self._last = totals
        self._last_ns = now_ns
        # the open batch needs reads from one before its first; a batch opened by this drain, this one's
        oldest = (self._opened if self._opened is not None else self._read) - 1
        if self._deltas and self._deltas[0][0] < oldest:
            self._deltas = [d for d in self._deltas if d[0] >= oldest]

    def opened(self) -> None:
        """A batch took its first event from the current drain."""
        self._opened = self._read

    def closed(self) -> Drops | None:
        """What the batch closing now carries: reads from one before its first drain to now."""
        opened, self._opened = self._opened, None
        if not self._deltas or opened is None:
            return None
        mine = [d for d in self._deltas if d[0] >= opened - 1]
        if not mine:
            return None
        counts = tuple(min(MAX_DROP_COUNT, sum(c)) for c in zip(*(d[3] for d in mine), strict=True))
        # the wall clock may step back between reads: the window must still be first <= last
        last = max(d[2] for d in mine)
        return Drops(min(last, *(d[1] for d in mine)), last, counts)


class Batcher:
    def __init__(
        self,
        node: str,
        boot_id: str,
        max_events: int,
        max_age_ns: int,
        first_seq: int = 1,
        drops: DropWindow | None = None,
    ) -> None:
        self.node = node
        self.boot_id = boot_id
        self.max_events = max_events
        self.max_age_ns = max_age_ns
        self.seq = first_seq
        self.drops = drops
        self._reset()

    def _reset(self) -> None:
        self.events: list[Event] = []
        self.procs: list[Process] = []
        self._index: dict[int, int] = {}
        self._keep: list[Process] = []  # the records indexed by id(): alive, so ids stay unique
        self._opened_ns = 0

    def __len__(self) -> int:
        return len(self.events)

    def add(self, ev: Event, now_ns: int) -> Batch | None:
        """Add one event (its EV_PROC a record); returns the batch it closed, if any."""
        closed = self.extend([ev], now_ns)
        return closed[0] if closed else None

    def extend(self, events: list[Event], now_ns: int) -> list[Batch]:
        """`add` for each event, in one call (the collector's hot loop); returns the batches closed."""
        closed: list[Batch] = []
        index, add_proc, max_events = self._index, self._add_proc, self.max_events
        for ev in events:
            if not self.events:
                self._opened_ns = now_ns
                if self.drops is not None:
                    self.drops.opened()
                index = self._index  # close() made new ones
            proc = ev[EV_PROC]
            idx = index.get(id(proc))
            if idx is None:
                idx = add_proc(proc, 0)
            ev[EV_PROC] = idx
            self.events.append(ev)
            if len(self.events) >= max_events:
                b = self.close()
                assert b is not None
                closed.append(b)
        return closed

    def due(self, now_ns: int) -> bool:
        return bool(self.events) and now_ns - self._opened_ns >= self.max_age_ns

    def close(self) -> Batch | None:
        if not self.events:
            return None
        b = Batch(
            node=self.node,
            boot_id=self.boot_id,
            seq=self.seq,
            t_first=self.events[0][EV_TS],
            t_last=self.events[-1][EV_TS],
            procs=self.procs,
            events=self.events,
            drops=self.drops.closed() if self.drops is not None else None,
        )
        self.seq += 1
        self._reset()
        return b

    def _add_proc(self, proc: Process, depth: int) -> int:
        parent = proc[P_PARENT]
        pidx = -1
        if parent is not None and depth < MAX_ANCESTORS:
            pidx = self._index.get(id(parent), -1)
            if pidx == -1:
                pidx = self._add_proc(parent, depth + 1)
        wire = list(proc)
        wire[P_PARENT] = pidx
        self.procs.append(wire)
        idx = len(self.procs) - 1
        self._index[id(proc)] = idx
        self._keep.append(proc)
        return idx
