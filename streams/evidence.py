"""The worker's recent history per node, from which `rules.evidence` picks an alert's evidence.

The alert's own batch is always searched. Earlier batches are kept whole, decoded, as the
detection agent already made them, only when `depth` > 0: keeping one costs a reference, but not
nothing. With one alert per 850 events (`benchmarks/bench_evidence`), the detection step ran at
0.79 of its evidence-off speed keeping 2 earlier batches per node and 0.74 keeping 8 (a kept batch's
memory is not reused while warm, and it is indexed when an alert reads it), against 0.91 searching
the alert's own batch only. So the default keeps none (depth 0) and a deployment that wants the
lead-up across batch boundaries sets the depth and pays for it; `bench_worker` measures the cost
end to end. An index of a batch's events by pid is built on the first alert that reads it.

Bounds (configuration, `streams.config`): at most `depth` batches per (node, boot) and at most
`max_events` events across all nodes; past either, the oldest batches go first, the least
recently seen node's before the others'. The history lives in the worker's memory, per partition
owner: after a rebalance or a restart the new owner starts with none, so the first alerts of a
node it took over carry the evidence of their own batch only. The uuid does not depend on it, so
a replay after a crash still deduplicates.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Final

from rules import evidence
from rules.alert import Evidence
from rules.record import EV_NUM, EV_PROC, P_PID, Event

DEFAULT_DEPTH: Final = 0
DEFAULT_MAX_EVENTS: Final = 100_000  # ~100 MB at worst (1 KB per decoded event); see streams.config


@dataclass(slots=True)
class KeptBatch:
    events: list[Event]
    by_pid: dict[int, list[Event]] | None = None  # built on the first alert that reads it

    def index(self) -> dict[int, list[Event]]:
        if self.by_pid is None:
            by_pid: dict[int, list[Event]] = {}
            get = by_pid.get
            for ev in self.events:  # one pass, no list made per event (setdefault's default would be)
                pid = ev[EV_PROC][P_PID]
                found = get(pid)
                if found is None:
                    by_pid[pid] = [ev]
                else:
                    found.append(ev)
            self.by_pid = by_pid
        return self.by_pid


@dataclass(slots=True)
class History:
    """Recent batches per (node, boot id), bounded; `evidence` reads them for one alert."""

    events_per_alert: int = evidence.MAX_EVIDENCE_EVENTS
    depth: int = DEFAULT_DEPTH
    max_events: int = DEFAULT_MAX_EVENTS
    _nodes: OrderedDict[tuple[str, str], deque[KeptBatch]] = field(default_factory=OrderedDict)
    _events: int = 0

    @property
    def enabled(self) -> bool:
        return self.events_per_alert > 0

    @property
    def kept_events(self) -> int:
        return self._events

    def __len__(self) -> int:
        return len(self._nodes)

    def keep(self, node: str, boot_id: str, batch: KeptBatch) -> None:
        """Remember one batch (`view`) after its alerts were built, with the index they made."""
        events = batch.events
        if not self.enabled or not events or self.depth <= 0:
            return
        key = (node, boot_id)
        kept = self._nodes.pop(key, None)
        if kept is None:
            kept = deque()
        self._nodes[key] = kept  # most recently seen last
        kept.append(batch)
        self._events += len(events)
        while len(kept) > self.depth:
            self._events -= len(kept.popleft().events)
        while self._events > self.max_events and self._nodes:
            oldest_key = next(iter(self._nodes))
            oldest = self._nodes[oldest_key]
            self._events -= len(oldest.popleft().events)
            if not oldest:
                del self._nodes[oldest_key]

    def evidence(self, node: str, boot_id: str, current: KeptBatch, trigger: Event) -> Evidence:
        """The trigger's evidence from `current` (its batch, as `view` made it) and the kept
        batches of its node, newest first."""
        if not self.enabled:
            return ()
        chain = evidence.lineage(trigger)
        older = self._nodes.get((node, boot_id), ())
        runs = _runs(chain, current, reversed(older))
        return evidence.render(evidence.select(trigger, runs, self.events_per_alert, chain))

    @staticmethod
    def view(events: list[Event]) -> KeptBatch:
        """The current batch, indexed lazily like a kept one (pass it to `evidence`, then `keep`)."""
        return KeptBatch(events)


def _runs(
    chain: dict[int, int | None], current: KeptBatch, older: Iterator[KeptBatch]
) -> Iterator[Sequence[Event]]:
    """The lineage's events batch by batch, newest batch first, merged in event order per batch."""
    for kept in (current, *older):
        index = kept.index()
        lists = [index[pid] for pid in chain if pid in index]
        if len(lists) == 1:
            yield lists[0]
        elif lists:
            yield sorted((ev for run in lists for ev in run), key=_num)


def _num(ev: Event) -> int:
    return int(ev[EV_NUM])
