"""The worker's per-rule cost sampling (`streams.rulecost`): which batches are sampled, what reaches the
counters, bounded labels, and a profiler that cannot be built turning sampling off, not the worker."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from rules.cli import _capture_events
from rules.collect import load_files
from rules.profile import RuleProfiler
from rules.record import Event
from streams import rulecost
from streams.rulecost import RuleCosts, RuleCounters, RuleTotals

ROOT = Path(__file__).resolve().parents[3]
CAPTURE = ROOT / "devtools" / "data" / "attack_scenario.cap"
OURS = ROOT / "rules" / "data" / "peregrine_rules.yaml"


@pytest.fixture
def reader() -> InMemoryMetricReader:
    return InMemoryMetricReader()


def counters(reader: InMemoryMetricReader) -> RuleCounters:
    meter = MeterProvider(metric_readers=[reader]).get_meter("test")
    return RuleCounters(totals=RuleTotals(), alerts=meter.create_counter("c.alerts"))


def sums(reader: InMemoryMetricReader, name: str) -> dict[str, float]:
    data = reader.get_metrics_data()
    out: dict[str, float] = {}
    for resource in data.resource_metrics if data else ():
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == name:
                    for point in metric.data.data_points:
                        out[str(point.attributes["rule"])] = point.value  # type: ignore[index]
    return out


def column(counters: RuleCounters, index: int) -> dict[str, int]:
    return {rule: row[index] for rule, row in counters.totals.read().items()}


def batches() -> Iterator[list[Event]]:
    return _capture_events(str(CAPTURE))


def profiler() -> RuleProfiler:
    return RuleProfiler(load_files([OURS]))


def test_every_nth_batch_is_sampled_and_the_totals_add_up(reader: InMemoryMetricReader) -> None:
    rule_counters = counters(reader)
    costs = RuleCosts(profiler, rule_counters, every=2, max_events=10_000)
    costs.rebuild()
    fed = list(batches())
    for batch in fed:
        costs.observe(batch)
    reference = profiler()
    for batch in fed[1::2]:
        reference.feed(batch)
    expected = {row.rule: row for row in reference.costs()}
    assert column(rule_counters, 0) == {name: row.events for name, row in expected.items()}
    assert column(rule_counters, 1) == {name: row.evaluations for name, row in expected.items()}
    assert column(rule_counters, 2) == {name: row.matches for name, row in expected.items()}


def test_a_reload_carries_the_totals_over(reader: InMemoryMetricReader) -> None:
    rule_counters = counters(reader)
    costs = RuleCosts(profiler, rule_counters, every=1, max_events=10_000)
    costs.rebuild()
    for batch in batches():
        costs.observe(batch)
    before = column(rule_counters, 0)
    costs.rebuild()
    assert column(rule_counters, 0) == before
    for batch in batches():
        costs.observe(batch)
    assert column(rule_counters, 0) == {rule: 2 * n for rule, n in before.items()}


def test_alerts_by_rule_are_exact_and_labels_are_bounded(
    reader: InMemoryMetricReader, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rulecost, "MAX_RULE_LABELS", 2)
    costs = RuleCosts(None, counters(reader), every=1)
    costs.rebuild()
    costs.alerted(["a", "b", "a", "c", "d", "b"])
    assert sums(reader, "c.alerts") == {"a": 2, "b": 2, rulecost.OTHER: 2}


def test_no_profiler_no_sampling(reader: InMemoryMetricReader) -> None:
    rule_counters = counters(reader)
    costs = RuleCosts(None, rule_counters, every=1)
    costs.rebuild()
    for batch in batches():
        costs.observe(batch)
    assert rule_counters.totals.read() == {}


def test_a_profiler_that_fails_to_build_turns_sampling_off(
    reader: InMemoryMetricReader, caplog: pytest.LogCaptureFixture
) -> None:
    def broken() -> RuleProfiler:
        raise ValueError("rules file vanished\n" + "x" * 10_000)

    rule_counters = counters(reader)
    costs = RuleCosts(broken, rule_counters, every=1)
    costs.rebuild()
    for batch in batches():
        costs.observe(batch)
    assert rule_counters.totals.read() == {}
    (record,) = [r for r in caplog.records if r.name == "peregrine.worker.rulecost"]
    assert "sampling off" in record.getMessage() and len(record.getMessage()) < 2200
    assert "\n" not in record.getMessage()
