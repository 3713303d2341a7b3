"""What each rule costs in the running worker: a sample of batches replayed rule by rule.

Every `every`-th batch, up to `max_events` of its events go through `rules.profile.RuleProfiler`
(each enabled rule compiled alone, with its own gate). The ``peregrine.worker.rule.*`` counters
report, per rule, the sample's totals: events of the rule's types, events its gate passed to its
code, matches and CPU seconds. They are a sample, unscaled: rank rules with them ("most expensive
rules" on the dashboard), do not add them to the worker's totals. The match count of the real
engine, exact, is ``peregrine.worker.rule.alerts``.

The sample's counters are observable: the exporter reads the totals when it collects, so a sample
costs no metric call (an OpenTelemetry ``add`` with attributes costs ~15 us, and a sample touches
every rule). A reload builds a new profiler (in the loader's thread); the old one's totals are
carried over so the counters stay monotonic, under a lock shared with the collecting thread.

The label is the rule's name, which comes from the operator's rules files, never from a node; at
most `MAX_RULE_LABELS` rules are labelled, the rest share ``(other)``. An engine without a
profiler (the worker tests' stand-in) gets no per-rule sampling.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter as Tally
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from opentelemetry.metrics import Counter

from rules.profile import RuleProfiler
from rules.record import Event
from streams.logsafe import shown

log = logging.getLogger("peregrine.worker.rulecost")

MAX_RULE_LABELS: Final = 1000
OTHER: Final = "(other)"

# per rule label: (events, evaluations, matches, cpu_ns) of the sampled batches, since start
Totals = Mapping[str, tuple[int, int, int, int]]


@dataclass(slots=True)
class RuleTotals:
    """Where the observable per-rule counters read their values; `RuleCosts` attaches itself."""

    read: Callable[[], Totals] = field(default=dict)


@dataclass(frozen=True, slots=True)
class RuleCounters:
    totals: RuleTotals
    alerts: Counter  # the real engine's matches, exact


class RuleCosts:
    """Samples batches into a per-rule profile; `every` = 0 turns sampling off."""

    def __init__(
        self,
        build: Callable[[], RuleProfiler] | None,
        counters: RuleCounters,
        *,
        every: int,
        max_events: int = 256,
    ) -> None:
        self.build = build
        self.counters = counters
        self.every = every if build is not None else 0
        self.max_events = max_events
        self._batches = 0
        self._labels: set[str] = set()  # the rule names labelled so far, at most MAX_RULE_LABELS
        self._lock = threading.Lock()
        self._carried: dict[str, tuple[int, int, int, int]] = {}
        self._profiler: RuleProfiler | None = None
        counters.totals.read = self.totals

    def rebuild(self) -> None:
        """Compile the rules, rule by rule: at start and after each reload, off the event loop (it
        takes seconds for Falco's files); until the first build is done nothing is sampled."""
        if self.build is None or not self.every:
            return
        try:
            profiler: RuleProfiler | None = self.build()
        except Exception as exc:  # the detection rules loaded; their profile must not stop the worker
            log.warning("per-rule cost sampling off until the next reload: %s", shown(exc, 2000))
            profiler = None
        with self._lock:
            self._carried = dict(self._sum())
            self._profiler = profiler

    def observe(self, events: Sequence[Event]) -> None:
        """Called once per batch: every `every`-th one is sampled."""
        profiler = self._profiler
        if profiler is None:
            return
        self._batches += 1
        if self._batches % self.every == 0:
            profiler.feed(events[: self.max_events])

    def alerted(self, rule_names: Sequence[str]) -> None:
        """Count one batch's alerts by rule: one metric call per rule that alerted, not per alert."""
        for name, count in Tally(rule_names).items():
            self.counters.alerts.add(count, {"rule": self._label(name)})

    def totals(self) -> Totals:
        with self._lock:
            return self._sum()

    def _sum(self) -> dict[str, tuple[int, int, int, int]]:
        out = dict(self._carried)
        if self._profiler is not None:
            for row in self._profiler.costs():
                label = self._label(row.rule)
                now = (row.events, row.evaluations, row.matches, row.cpu_ns)
                before = out.get(label, (0, 0, 0, 0))
                out[label] = (before[0] + now[0], before[1] + now[1], before[2] + now[2], before[3] + now[3])
        return out

    def _label(self, rule: str) -> str:
        if rule in self._labels:
            return rule
        if len(self._labels) >= MAX_RULE_LABELS:
            return OTHER
        self._labels.add(rule)
        return rule
