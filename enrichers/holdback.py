"""Hold a batch briefly when some of its containers are not in the table yet.

A container's first events can reach a worker before k8s-meta's record for it: the runtime starts
the container, the collector sees it at once, while the kubelet reports its id to the API server,
k8s-meta sees the change and Kafka carries the record. `Holdback` keeps such batches for at most
``hold_s`` seconds (and at most ``max_held`` of them), enriching them again on every call, and
releases each one as soon as it is complete or its time is up. A released batch may still have
unknown containers: it is evaluated with the ``k8s.*`` fields missing, never dropped.

Order is kept only among batches released together; batches are self-contained, so rules do not
depend on order across batches. Not thread-safe, like the table it reads.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Generic, TypeVar

from enrichers.table import K8sTable
from rules.record import Process

T = TypeVar("T")


class Holdback(Generic[T]):
    def __init__(self, table: K8sTable, hold_s: float, max_held: int = 1000) -> None:
        self._table = table
        self._hold_s = hold_s
        self._max_held = max_held
        self._held: deque[tuple[float, Sequence[Process], T]] = deque()
        self.released_incomplete = 0

    def __len__(self) -> int:
        return len(self._held)

    def submit(self, procs: Sequence[Process], item: T, now: float) -> list[T]:
        """Enrich ``procs``; returns the items ready to evaluate (earlier held ones first)."""
        ready = self.release(now)
        if self._table.enrich(procs) == 0 or self._hold_s <= 0:
            ready.append(item)
        else:
            self._held.append((now + self._hold_s, procs, item))
            while len(self._held) > self._max_held:
                self.released_incomplete += 1
                ready.append(self._held.popleft()[2])
        return ready

    def release(self, now: float) -> list[T]:
        """Items that became complete or whose hold expired; call it on every tick."""
        ready: list[T] = []
        keep: deque[tuple[float, Sequence[Process], T]] = deque()
        for deadline, procs, item in self._held:
            if self._table.enrich(procs) == 0:
                ready.append(item)
            elif deadline <= now:
                self.released_incomplete += 1
                ready.append(item)
            else:
                keep.append((deadline, procs, item))
        self._held = keep
        return ready
