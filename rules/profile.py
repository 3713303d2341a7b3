"""What each rule costs: evaluations after the gate, matches and CPU time, rule by rule.

The worker's ruleset fuses every rule of an event type into one generated function behind one C
gate, so the hot path has no per-rule seam to time, and adding one would slow every event. A
`RuleProfiler` instead compiles each enabled rule on its own (all-matches, with its own gate) and
runs a batch through every one of them: the gate's kept count is the rule's evaluations, the
matches are its own, and the thread CPU time around the call is its cost. It is an estimate of
the fused engine's split (one gate per rule costs more than a shared one), good for ranking rules,
which is what "most expensive rules" asks. Offline (`peregrine rules profile`) it sees every
event; the worker (`streams.rulecost`) feeds it a sample of batches and exports its totals: they
say what the sample cost, unscaled.

Memory is what the per-rule rulesets hold (their code and gate memos); nothing grows with the
events fed.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from rules.loaded import LoadResult
from rules.priority import Priority
from rules.record import EVENT_TYPE_IDS, Event
from rules.ruleset import Ruleset, compile_rules


@dataclass(frozen=True, slots=True)
class RuleCost:
    rule: str
    priority: Priority
    events: int  # events of the rule's event types that were fed
    evaluations: int  # of those, the ones its gate passed to its generated code
    matches: int
    cpu_ns: int  # thread CPU time spent in its gate and code


@dataclass(slots=True)
class _Entry:
    name: str
    priority: Priority
    type_ids: frozenset[int]
    ruleset: Ruleset
    events: int = 0
    matches: int = 0
    cpu_ns: int = 0


class RuleProfiler:
    """Per-rule rulesets over one `LoadResult`; `feed` batches, read `costs`. Not thread-safe."""

    __slots__ = ("_entries",)

    def __init__(
        self,
        result: LoadResult,
        *,
        ip_names: Mapping[str, str] | None = None,
        min_priority: Priority = Priority.DEBUG,
    ) -> None:
        self._entries: list[_Entry] = []
        for loaded in result.rules:
            if not loaded.enabled or loaded.priority > min_priority:
                continue
            alone = compile_rules(
                replace(result, rules=(loaded,)), all_matches=True, ip_names=ip_names
            )
            if not alone.rules:  # skipped with a warning (skip-if-unknown-filter)
                continue
            (compiled,) = alone.rules
            type_ids = frozenset(EVENT_TYPE_IDS[name] for name in compiled.event_types)
            self._entries.append(_Entry(compiled.name, compiled.priority, type_ids, alone))

    def __len__(self) -> int:
        return len(self._entries)

    def feed(self, events: Sequence[Event]) -> None:
        """Evaluate one batch with every rule on its own, adding to each rule's counts."""
        clock = time.thread_time_ns
        by_type: dict[int, list[Event]] = {}
        for ev in events:
            by_type.setdefault(ev[0], []).append(ev)
        for entry in self._entries:
            mine = [ev for type_id in entry.type_ids & by_type.keys() for ev in by_type[type_id]]
            if not mine:
                continue
            evaluate = entry.ruleset.evaluate
            start = clock()
            matched = evaluate(mine)
            entry.cpu_ns += clock() - start
            entry.events += len(mine)
            entry.matches += len(matched)

    def costs(self) -> list[RuleCost]:
        """Every profiled rule's totals, most CPU time first (definition order breaks ties)."""
        return sorted((_totals(e) for e in self._entries), key=lambda row: -row.cpu_ns)


def _totals(entry: _Entry) -> RuleCost:
    # no C compiler, no gate: every event of the rule's types reaches its code
    evaluations = entry.ruleset.gate_counts()[1] if entry.ruleset.gated else entry.events
    return RuleCost(entry.name, entry.priority, entry.events, evaluations, entry.matches, entry.cpu_ns)


def render_table(costs: Sequence[RuleCost], *, top: int | None = None) -> str:
    """The profile as an aligned text table, the way `peregrine rules profile` prints it."""
    total = sum(row.cpu_ns for row in costs) or 1
    shown = costs if top is None else costs[:top]
    lines = [
        f"{'cpu ms':>9} {'share':>6} {'ns/eval':>8} {'events':>9} {'evaluated':>9} {'matches':>8}  rule"
    ]
    for row in shown:
        per_eval = row.cpu_ns // row.evaluations if row.evaluations else 0
        lines.append(
            f"{row.cpu_ns / 1e6:9.2f} {100 * row.cpu_ns / total:5.1f}% {per_eval:8d} {row.events:9d}"
            f" {row.evaluations:9d} {row.matches:8d}  {row.rule}"
        )
    return "\n".join(lines) + "\n"
