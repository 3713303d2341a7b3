"""Groups events into self-contained `collectors.wire.Batch`es, closed by size or by age.

An event's process record and up to `MAX_ANCESTORS` of its ancestors go into the batch once, so
`proc.pname`, `proc.aname[N]` and `proc.pcmdline` resolve from the batch alone. In-memory records
hold references (`P_PARENT` is a record); the batch holds copies with indexes. A parent is always
appended before its child, so parent indexes are smaller and the chain can never cycle.
"""

from __future__ import annotations

from typing import Final

from collectors.wire import Batch
from rules.record import EV_PROC, EV_TS, P_PARENT, Event, Process

MAX_ANCESTORS: Final = 8


class Batcher:
    def __init__(self, node: str, boot_id: str, max_events: int, max_age_ns: int, first_seq: int = 1) -> None:
        self.node = node
        self.boot_id = boot_id
        self.max_events = max_events
        self.max_age_ns = max_age_ns
        self.seq = first_seq
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
