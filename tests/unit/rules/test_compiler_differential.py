"""The optimiser changes the order and sharing of checks, never a result: Falco's rules compiled
into shared per-event-type functions agree, on many varied events, with each rule's condition
evaluated on its own, unoptimised (lowered tree, no simplification, factoring or merging)."""

from __future__ import annotations

import re

import pytest
from falco_compiled import API_SERVER_NAMES, FalcoCompiled

from benchmarks.workload import rule_hitting_events
from rules import compiler as cc
from rules import record as R
from rules.fields import HELPERS
from rules.ruleset import Ruleset
from rules.transformers import HELPERS as TRANSFORMER_HELPERS


def _reference(ruleset: Ruleset, conditions: dict[str, object]) -> dict[tuple[str, int], object]:
    """One plain function per (rule, event type): the lowered condition as written."""
    functions: dict[tuple[str, int], object] = {}
    for rule in ruleset.rules:
        for name in rule.event_types:
            type_id = R.EVENT_TYPE_IDS[name]
            ctx = cc.Context(rule.location, cc.Constants(), type_id)
            module = cc.condition_function("check", cc.lower(conditions[rule.name], ctx), ctx.values)  # type: ignore[arg-type]
            namespace = {**HELPERS, **ctx.constants.values, "_UNSET": cc.UNSET, "_any": cc.any_present,
                         "_ipn": API_SERVER_NAMES}
            namespace.update(TRANSFORMER_HELPERS)
            exec(compile(module, rule.name, "exec"), namespace)
            functions[(rule.name, type_id)] = namespace["check"]
    return functions


@pytest.mark.parametrize("all_matches", [False, True])
def test_shared_functions_agree_with_each_rule_alone(
    falco_compiled: FalcoCompiled, all_matches: bool
) -> None:
    result, ruleset = falco_compiled(all_matches)
    reference = _reference(ruleset, {r.name: r.condition for r in result.rules})
    literals = sorted(set(re.findall(r"'([^'\\]{1,60})'", ruleset.source())))
    order = {rule.name: i for i, rule in enumerate(ruleset.rules)}
    checked = matched = 0
    distinct: set[str] = set()
    for ev in rule_hitting_events(literals, 3000, seed=7):
        expected = sorted(
            (rule for rule in ruleset.rules
             if (rule.name, ev[R.EV_TYPE]) in reference and reference[(rule.name, ev[R.EV_TYPE])](ev)),  # type: ignore[operator]
            key=lambda rule: order[rule.name],
        )
        got = ruleset.match_all(ev) if all_matches else [r for r in [ruleset.match(ev)] if r is not None]
        want = expected if all_matches else expected[:1]
        assert [r.name for r in got] == [r.name for r in want], ruleset.source(ev[R.EV_TYPE])
        checked += 1
        matched += bool(want)
        distinct.update(r.name for r in want)
    # the variation reaches deep into the rules: many events and many different rules match
    assert checked == 3000 and matched > 100 and len(distinct) >= 15, (matched, len(distinct))


@pytest.mark.parametrize("all_matches", [False, True])
def test_batch_loop_agrees_with_match(falco_compiled: FalcoCompiled, all_matches: bool) -> None:
    """`evaluate` (list dispatch, with its fallback for ids outside the table) gives per event
    what `match`/`match_all` give, on lists, iterators and odd event type ids."""
    ruleset = falco_compiled(all_matches)[1]
    literals = sorted(set(re.findall(r"'([^'\\]{1,60})'", ruleset.source())))
    events = rule_hitting_events(literals, 1500, seed=11)
    for i, type_id in enumerate((-1, -len(R.EVENT_TYPES), len(R.EVENT_TYPES), 10**6, -(10**6))):
        odd = list(events[i])
        odd[R.EV_TYPE] = type_id
        events.insert(700 + i, odd)
    def one_by_one(batch: list[list[object]]) -> list[tuple[int, str]]:
        pairs = []
        for ev in batch:
            first = ruleset.match(ev)
            found = ruleset.match_all(ev) if all_matches else [] if first is None else [first]
            pairs += [(id(ev), rule.name) for rule in found]
        return pairs

    for batch, given in ((events, events), (events, iter(events)), (events[:600], events[:600])):
        expected = one_by_one(batch)
        assert [(id(ev), rule.name) for ev, rule in ruleset.evaluate(given)] == expected
        assert expected
