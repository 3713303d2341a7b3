"""Two rule sets' alerts on the same events -> per rule: alerts added, removed, unchanged, with samples.

Pure: no Kafka, no clock, no I/O. An alert is a (event, rule name) pair: "added" when only the new
rules raise it, "removed" when only the baseline does, "unchanged" when both do. In first-match mode
a disabled rule can hand its events to a later rule: that shows as removed for one rule and added
for the other, which is exactly what the change does to the alert stream.

Samples are bounded: at most `samples` added and `samples` removed per rule, the ones first in
(partition, offset, event index) order, so the same data gives the same samples however it was
split across processes (`Diffs.merge`). A sample's text is rendered only when it is kept. Keys of
`Diffs.rules` are rule names from the loaded rules files, never event data: their number is bounded
by the rules, whatever the events hold.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final, NamedTuple, Protocol, TypeVar

from rules.record import Event

MAX_OUTPUT_CHARS: Final = 1000  # an alert's output can carry a whole command line: samples stay small


class Named(Protocol):
    @property
    def name(self) -> str: ...


R = TypeVar("R", bound=Named)


class Rendered(NamedTuple):
    """What a sample shows of its alert (as `rules.build_alert` gives it)."""

    priority: str
    time: str
    output: str


Render = Callable[[Event, R], Rendered]


@dataclass(frozen=True, slots=True)
class Where:
    """The batch being compared: its place in the topic and its node."""

    partition: int
    offset: int
    node: str


@dataclass(frozen=True, slots=True, order=True)
class Sample:
    partition: int
    offset: int
    index: int  # the event's position in its batch
    node: str
    priority: str
    time: str
    output: str

    @property
    def key(self) -> tuple[int, int, int]:
        return self.partition, self.offset, self.index


@dataclass(slots=True)
class RuleDiff:
    added: int = 0
    removed: int = 0
    unchanged: int = 0
    added_samples: list[Sample] = field(default_factory=list)
    removed_samples: list[Sample] = field(default_factory=list)


@dataclass(slots=True)
class Diffs:
    """Per-rule differences accumulated over batches; `merge` adds another process's."""

    samples: int
    rules: dict[str, RuleDiff] = field(default_factory=dict)

    def add(
        self,
        where: Where,
        events: Sequence[Event],
        new: Sequence[tuple[Event, R]],
        base: Sequence[tuple[Event, R]],
        render: Render[R],
    ) -> None:
        """Compare one batch: `new` and `base` are the two rule sets' (event, rule) matches on `events`."""
        if not new and not base:
            return  # almost every batch
        new_keys = {(id(ev), rule.name): (ev, rule) for ev, rule in new}
        base_keys = {(id(ev), rule.name): (ev, rule) for ev, rule in base}
        positions: dict[int, int] | None = None
        for key, (ev, rule) in new_keys.items():
            diff = self._diff(rule.name)
            if key in base_keys:
                diff.unchanged += 1
                continue
            diff.added += 1
            positions = self._sample(diff.added_samples, where, events, positions, ev, rule, render)
        for key, (ev, rule) in base_keys.items():
            if key not in new_keys:
                diff = self._diff(rule.name)
                diff.removed += 1
                positions = self._sample(diff.removed_samples, where, events, positions, ev, rule, render)

    def merge(self, other: Diffs) -> None:
        for name, theirs in other.rules.items():
            mine = self._diff(name)
            mine.added += theirs.added
            mine.removed += theirs.removed
            mine.unchanged += theirs.unchanged
            for sample in theirs.added_samples:
                _keep(mine.added_samples, sample, self.samples)
            for sample in theirs.removed_samples:
                _keep(mine.removed_samples, sample, self.samples)

    def totals(self) -> tuple[int, int, int]:
        """(added, removed, unchanged) over every rule."""
        diffs = self.rules.values()
        return sum(d.added for d in diffs), sum(d.removed for d in diffs), sum(d.unchanged for d in diffs)

    def _diff(self, name: str) -> RuleDiff:
        diff = self.rules.get(name)
        if diff is None:
            diff = self.rules[name] = RuleDiff()
        return diff

    def _sample(
        self,
        kept: list[Sample],
        where: Where,
        events: Sequence[Event],
        positions: dict[int, int] | None,
        ev: Event,
        rule: R,
        render: Render[R],
    ) -> dict[int, int] | None:
        """Keep a sample of this alert if it is among the first `samples`; returns the batch's event
        positions (built at the first sample of a batch, reused for the next)."""
        full = len(kept) >= self.samples
        if self.samples <= 0 or (full and (where.partition, where.offset) > kept[-1].key[:2]):
            return positions
        if positions is None:
            positions = {id(e): i for i, e in enumerate(events)}
        text = render(ev, rule)
        output = text.output
        if len(output) > MAX_OUTPUT_CHARS:
            output = output[:MAX_OUTPUT_CHARS] + "..."
        sample = Sample(where.partition, where.offset, positions.get(id(ev), -1), where.node, text.priority,
                        text.time, output)  # fmt: skip
        _keep(kept, sample, self.samples)
        return positions


def _keep(kept: list[Sample], sample: Sample, limit: int) -> None:
    """Insert in key order, keeping the first `limit`."""
    keys = [s.key for s in kept]
    at = bisect.bisect(keys, sample.key)
    if at < limit:
        kept.insert(at, sample)
        del kept[limit:]
