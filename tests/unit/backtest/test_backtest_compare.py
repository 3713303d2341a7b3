"""`backtest.compare`: per-rule added/removed/unchanged, bounded samples, merging split work."""

from __future__ import annotations

from dataclasses import dataclass

from backtest.compare import Diffs, Rendered, Where
from rules.record import Event


@dataclass(frozen=True)
class Rule:
    name: str


A, B, C = Rule("A"), Rule("B"), Rule("C")
rendered: list[str] = []


def render(ev: Event, rule: Rule) -> Rendered:
    rendered.append(rule.name)
    return Rendered("Warning", "t", f"{rule.name} on {ev[1]}")


def events(n: int) -> list[Event]:
    return [[0, i] for i in range(n)]  # type: ignore[misc]


def counts(diffs: Diffs) -> dict[str, tuple[int, int, int]]:
    return {name: (d.added, d.removed, d.unchanged) for name, d in diffs.rules.items()}


def test_alerts_are_added_removed_or_unchanged_per_rule() -> None:
    evs = events(4)
    diffs = Diffs(samples=2)
    new = [(evs[0], A), (evs[1], C), (evs[2], B)]
    base = [(evs[0], A), (evs[1], B), (evs[3], B)]
    diffs.add(Where(0, 10, "n"), evs, new, base, render)
    # evs[1] moved from B to C (first match after B changed): removed for B, added for C
    assert counts(diffs) == {"A": (0, 0, 1), "B": (1, 2, 0), "C": (1, 0, 0)}
    assert diffs.totals() == (2, 2, 1)


def test_the_same_rule_on_another_event_is_not_unchanged() -> None:
    evs = events(2)
    diffs = Diffs(samples=1)
    diffs.add(Where(0, 0, "n"), evs, [(evs[0], A)], [(evs[1], A)], render)
    assert counts(diffs) == {"A": (1, 1, 0)}


def test_samples_are_bounded_and_the_first_by_place() -> None:
    evs = events(10)
    diffs = Diffs(samples=3)
    rendered.clear()
    for offset in (7, 3, 5):
        diffs.add(Where(1, offset, "n"), evs, [(ev, A) for ev in evs], [], render)
    samples = diffs.rules["A"].added_samples
    assert [s.key for s in samples] == [(1, 3, 0), (1, 3, 1), (1, 3, 2)]
    assert samples[0].output == "A on 0" and samples[0].node == "n"
    assert diffs.rules["A"].added == 30
    # once full, a later batch renders nothing: the text of kept samples only
    rendered.clear()
    diffs.add(Where(1, 9, "n"), evs, [(ev, A) for ev in evs], [], render)
    assert rendered == []


def test_no_samples_wanted_renders_nothing() -> None:
    evs = events(3)
    diffs = Diffs(samples=0)
    rendered.clear()
    diffs.add(Where(0, 0, "n"), evs, [(evs[0], A)], [(evs[1], A)], render)
    assert rendered == [] and counts(diffs) == {"A": (1, 1, 0)}


def test_merging_split_work_gives_what_one_pass_gives() -> None:
    batches = [(Where(p, o, f"node{p}"), events(5)) for p in range(3) for o in range(4)]

    def diff(part: list[tuple[Where, list[Event]]]) -> Diffs:
        d = Diffs(samples=4)
        for where, evs in part:
            d.add(where, evs, [(ev, A) for ev in evs[::2]], [(ev, A) for ev in evs[:2]], render)
        return d

    whole = diff(batches)
    merged = Diffs(samples=4)
    for part in (batches[5:], batches[:5]):  # another split, merged in another order
        merged.merge(diff(part))
    assert merged == whole
    assert [s.key for s in merged.rules["A"].added_samples] == [(0, 0, 2), (0, 0, 4), (0, 1, 2), (0, 1, 4)]


def test_long_outputs_are_cut() -> None:
    evs = events(1)
    diffs = Diffs(samples=1)
    diffs.add(Where(0, 0, "n"), evs, [(evs[0], A)], [], lambda ev, rule: Rendered("p", "t", "x" * 5000))
    assert len(diffs.rules["A"].added_samples[0].output) == 1003
