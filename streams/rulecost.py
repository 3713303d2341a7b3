"""What each rule costs in the running worker: a sample of batches replayed rule by rule.

Every `every`-th batch, up to `max_events` of its events go through `rules.profile.RuleProfiler`
(each enabled rule compiled alone, with its own gate), and the per-rule counts since the previous
sample are added to the ``peregrine.worker.rule.*`` counters: events of the rule's types, events
its gate passed to its code, matches and CPU seconds. They are a sample, unscaled: rank rules with
them ("most expensive rules" on the dashboard), do not add them to the worker's totals. The match
count of the real engine, exact, is ``peregrine.worker.rule.alerts``.

The label is the rule's name, which comes from the operator's rules files, never from a node; at
most `MAX_RULE_LABELS` rules are labelled, the rest share ``(other)``. The profiler is rebuilt from
the same files when the rules reload (in the loader's thread), and swapped in one assignment.
An engine without a profiler (the worker tests' stand-in) gets no per-rule sampling.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from opentelemetry.metrics import Counter

from rules.profile import RuleProfiler
from rules.record import Event
from streams.logsafe import shown

log = logging.getLogger("peregrine.worker.rulecost")

MAX_RULE_LABELS: Final = 1000
OTHER: Final = "(other)"


@dataclass(frozen=True, slots=True)
class RuleCounters:
    events: Counter
    evaluations: Counter
    matches: Counter
    cpu_time: Counter
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
        self._labels: dict[str, str] = {}  # the rule names labelled so far, at most MAX_RULE_LABELS
        self._profiler: RuleProfiler | None = None
        if every:
            self.rebuild()

    def rebuild(self) -> None:
        """Compile the rules again, rule by rule (run off the event loop: it takes a while)."""
        if self.build is None or not self.every:
            return
        try:
            profiler = self.build()
        except Exception as exc:  # the detection rules loaded; their profile must not stop the worker
            log.warning("per-rule cost sampling off until the next reload: %s", shown(exc, 2000))
            self._profiler = None
            return
        self._profiler = profiler

    def observe(self, events: Sequence[Event]) -> None:
        """Called once per batch: every `every`-th one is sampled."""
        profiler = self._profiler
        if profiler is None:
            return
        self._batches += 1
        if self._batches % self.every:
            return
        profiler.feed(events[: self.max_events])
        counters = self.counters
        for row in profiler.drain():
            label = {"rule": self._label(row.rule)}
            counters.events.add(row.events, label)
            counters.evaluations.add(row.evaluations, label)
            counters.matches.add(row.matches, label)
            counters.cpu_time.add(row.cpu_ns / 1e9, label)

    def alerted(self, rule_names: Sequence[str]) -> None:
        for name in rule_names:
            self.counters.alerts.add(1, {"rule": self._label(name)})

    def _label(self, rule: str) -> str:
        if rule in self._labels:
            return rule
        if len(self._labels) >= MAX_RULE_LABELS:
            return OTHER
        self._labels[rule] = rule
        return rule
