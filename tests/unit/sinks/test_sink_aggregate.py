"""Aggregation per destination: first at once, repeats folded into one summary, counts exact across a
restart rebuilt from the committed offsets and metadata alone."""

from __future__ import annotations

import random
import re

import pytest

from alerts.wire import decode, dropped, encode, with_drops
from rules.priority import Priority
from sinks.aggregate import (
    PARTITION_WINDOWS,
    AggregateConfig,
    Aggregator,
    KeyOverride,
    Partition,
    format_metadata,
    parse_metadata,
)
from sinks.alert import Alert
from sinks.config import parse_config
from sinks.errors import ConfigError
from sinks.pacing import PaceConfig, TokenBucket, round_robin
from sinks.slack import drops_line

S = 1_000_000_000
T0 = 1_787_307_330 * S
P0: Partition = ("alerts", 0)
P1: Partition = ("alerts", 1)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def alert(n: int, pod: str = "web-1", rule: str = "Terminal shell", at_s: float = 0.0) -> Alert:
    return Alert(
        time_ns=T0 + int(at_s * S),
        rule=rule,
        priority=Priority.WARNING,
        output=f"shell in {pod}",
        output_fields={"k8s.pod.name": pod, "proc.cmdline": f"bash -c {n % 3}", "container.id": "c1"},
        hostname="node-1",
        source="syscall",
        tags=("shell",),
        uuid=f"00000000-0000-4000-8000-{n:012d}",
    )


def counts(outputs: list[Alert]) -> int:
    """Alerts represented: a plain alert is one, a summary its count."""
    return sum(int(a.output_fields.get("peregrine.summary.count") or 0) or 1 for a in outputs)


def summaries(outputs: list[Alert]) -> list[Alert]:
    return [a for a in outputs if "peregrine.summary.count" in a.output_fields]


def test_the_first_is_delivered_at_once_and_repeats_become_one_summary_when_the_window_passes() -> None:
    agg = Aggregator("slack", AggregateConfig(window_s=60, sample_fields=("proc.cmdline",)), Clock())
    out = agg.offer(P0, 0, alert(0))
    assert [a.uuid for a in out] == [alert(0).uuid]
    for n in range(1, 1001):
        assert agg.offer(P0, n, alert(n, at_s=n * 0.05)) == []
    out = agg.offer(P0, 1001, alert(1001, at_s=61))  # event time past the window: summary, then itself
    assert len(out) == 2 and out[1].uuid == alert(1001).uuid
    summary = out[0]
    assert summary.output_fields["peregrine.summary.count"] == 1000
    assert "and 1,000 more like this in 60 s" in summary.output
    assert summary.output_fields["peregrine.summary.sample.proc.cmdline"] == "bash -c 1, bash -c 2, bash -c 0"
    assert summary.output_fields["peregrine.summary.of"] == alert(0).uuid
    assert summary.rule == "Terminal shell" and summary.priority is Priority.WARNING
    assert agg.take_counts() == (1000, 1)


def test_a_quiet_window_reports_after_its_wall_clock_time_and_other_keys_pass_through() -> None:
    clock = Clock()
    agg = Aggregator("slack", AggregateConfig(window_s=60), clock)
    agg.offer(P0, 0, alert(0))
    agg.offer(P0, 1, alert(1))
    other = agg.offer(P0, 2, alert(2, pod="db-1"))
    assert [a.uuid for a in other] == [alert(2).uuid]  # another key is not held behind the storm
    clock.now += 59.9
    assert agg.due(idle=True) == []
    clock.now += 0.2
    assert agg.due(idle=False) == []  # a backlog is being read: event time rules
    due = agg.due(idle=True)
    assert len(due) == 1 and due[0].output_fields["peregrine.summary.count"] == 1
    assert agg.open_keys == 0  # db-1 had no repeat: its window closed with no summary


def test_the_streams_time_closes_the_windows_of_quiet_keys_and_the_wall_clock_bounds_them() -> None:
    clock = Clock()
    agg = Aggregator("slack", AggregateConfig(window_s=60), clock)
    agg.offer(P0, 0, alert(0, pod="quiet"))
    agg.offer(P0, 1, alert(1, pod="quiet"))
    agg.offer(P0, 2, alert(2, pod="busy", at_s=59))
    assert agg.due(idle=False) == []
    agg.offer(P0, 3, alert(3, pod="busy", at_s=61))
    assert [a.output_fields["peregrine.summary.count"] for a in agg.due(idle=False)] == [1]
    agg.offer(P0, 4, alert(4, pod="busy", at_s=62))
    clock.now += 119
    assert agg.due(idle=False) == []
    clock.now += 1  # twice the window: reported even while reading
    assert [a.output_fields["peregrine.summary.count"] for a in agg.due(idle=False)] == [2]


def test_the_key_is_configurable_and_overridable_per_rule_or_tag() -> None:
    by_host = AggregateConfig(key=("rule", "hostname"))
    agg = Aggregator("s", by_host, Clock())
    assert len(agg.offer(P0, 0, alert(0, pod="a"))) == 1
    assert agg.offer(P0, 1, alert(1, pod="b")) == []  # same host: same key
    override = AggregateConfig(overrides=(KeyOverride(tags=("shell",), key=("rule", "hostname")),))
    agg = Aggregator("s", override, Clock())
    agg.offer(P0, 0, alert(0, pod="a"))
    assert agg.offer(P0, 1, alert(1, pod="b")) == []


def test_the_state_is_bounded_and_an_evicted_window_reports_early() -> None:
    agg = Aggregator("s", AggregateConfig(max_open_keys=2), Clock())
    agg.offer(P0, 0, alert(0, pod="a"))
    agg.offer(P0, 1, alert(1, pod="a"))
    agg.offer(P0, 2, alert(2, pod="b"))
    out = agg.offer(P0, 3, alert(3, pod="c"))
    assert agg.open_keys == 2
    assert [a.output_fields.get("peregrine.summary.count") for a in out] == [1, None]


def test_the_summary_uuid_depends_on_destination_key_and_window_only() -> None:
    def summary_of(destination: str, offset: int) -> Alert:
        agg = Aggregator(destination, AggregateConfig(window_s=60), Clock())
        agg.offer(P0, offset, alert(0))
        agg.offer(P0, offset + 1, alert(1, at_s=1))
        return agg.offer(P0, offset + 2, alert(2, at_s=90))[0]

    assert summary_of("slack", 0).uuid == summary_of("slack", 500).uuid != summary_of("siem", 0).uuid


def run_stream(agg: Aggregator, stream: list[tuple[Partition, int, Alert]]) -> list[Alert]:
    out: list[Alert] = []
    for partition, offset, a in stream:
        out += agg.offer(partition, offset, a)
    return out


@pytest.mark.parametrize("crash_at", [1, 7, 150, 333, 599])
def test_a_restart_from_the_commits_loses_and_doubles_nothing(crash_at: int) -> None:
    """A random two-partition stream of three keys; the process dies after ``crash_at`` records
    (its last commit covered everything it had delivered), a fresh one restores from the commits."""
    rng = random.Random(crash_at)
    stream: list[tuple[Partition, int, Alert]] = []
    next_offset = {P0: 0, P1: 0}
    for n in range(600):
        pod = rng.choice(["a", "b", "c"])
        partition = P0 if pod != "c" else P1
        stream.append((partition, next_offset[partition], alert(n, pod=pod, at_s=n * 0.5)))
        next_offset[partition] += 1
    clock = Clock()
    config = AggregateConfig(window_s=30)
    before = Aggregator("slack", config, clock)
    delivered = run_stream(before, stream[:crash_at])
    positions = {p: max([o + 1 for q, o, _ in stream[:crash_at] if q == p], default=0) for p in (P0, P1)}
    commits = before.commits(positions.items())
    after = Aggregator("slack", config, clock)
    for partition, (_, metadata) in commits.items():
        after.restore(partition, metadata)
    resumed = [(p, o, a) for p, o, a in stream if o >= commits[p][0]]
    delivered += run_stream(after, resumed)
    clock.now += 31
    delivered += after.due(idle=True)
    assert counts(delivered) == 600
    assert len({a.uuid for a in delivered}) == len(delivered)  # nothing delivered twice


def test_a_restart_while_replaying_keeps_the_mark() -> None:
    clock = Clock()
    first = Aggregator("s", AggregateConfig(window_s=30), clock)
    delivered = run_stream(first, [(P0, n, alert(n, at_s=n)) for n in range(10)])
    committed = first.commits([(P0, 10)])[P0]
    second = Aggregator("s", AggregateConfig(window_s=30), clock)
    second.restore(P0, committed[1])
    delivered += run_stream(second, [(P0, n, alert(n, at_s=n)) for n in range(5)])
    again = second.commits([(P0, 5)])[P0]  # it dies half-way through the replay
    assert again == committed
    third = Aggregator("s", AggregateConfig(window_s=30), clock)
    third.restore(P0, again[1])
    delivered += run_stream(third, [(P0, n, alert(n, at_s=n)) for n in range(12)])
    clock.now += 31
    delivered += third.due(idle=True)
    assert counts(delivered) == 12 and len(delivered) == 2


def test_metadata_round_trips_and_fits_the_brokers_default_limit() -> None:
    agg = Aggregator("s", AggregateConfig(max_open_keys=10_000), Clock())
    for n in range(PARTITION_WINDOWS * 3):
        agg.offer(P0, 10**15 + n, alert(n, pod=f"pod-{n}", at_s=n))
    (offset, metadata), = agg.commits([(P0, 10**15 + 10**6)]).values()
    assert len(metadata.encode()) <= 4096
    replay = parse_metadata(metadata)
    assert replay is not None and len(replay.windows) <= PARTITION_WINDOWS
    assert offset == min(o for o, _, _ in replay.windows.values())
    assert format_metadata(replay) == metadata
    assert parse_metadata("not ours") is None and parse_metadata("a1;zz;broken.entry") is None


def test_round_robin_interleaves_keys_in_order_of_appearance() -> None:
    items = ["a1", "a2", "a3", "b1", "a4", "c1", "b2"]
    assert round_robin(items, lambda s: s[0]) == ["a1", "b1", "c1", "a2", "b2", "a3", "a4"]


def test_the_token_bucket_allows_a_burst_then_the_rate() -> None:
    clock = Clock()
    bucket = TokenBucket(PaceConfig(per_s=1.0, burst=3), clock)
    assert [bucket.delay() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.delay() == pytest.approx(1.0)
    assert bucket.delay() == pytest.approx(2.0)
    clock.now += 10
    assert bucket.delay() == 0.0


BASE = {"kafka": {"bootstrap_servers": "k:9092"}}


def destination(**extra: object) -> dict[str, object]:
    return {**BASE, "destinations": [{"name": "f", "type": "file", "path": "/tmp/x", **extra}]}


def test_aggregate_and_pace_are_parsed_with_their_defaults() -> None:
    config = parse_config(destination(), "t", {}).destinations[0]
    assert config.aggregate is None and config.pace is None
    doc = destination(aggregate={"window_s": 10, "key": ["rule", "hostname"], "sample_fields": ["proc.name"],
                                 "overrides": [{"rules": ["Drop*"], "window_s": 300}]},
                      pace={"per_s": 2, "burst": 4})
    config = parse_config(doc, "t", {}).destinations[0]
    assert config.aggregate == AggregateConfig(
        window_s=10, key=("rule", "hostname"), sample_fields=("proc.name",),
        overrides=(KeyOverride(rules=("Drop*",), window_s=300.0),))
    assert config.pace == PaceConfig(2.0, 4)
    slack = {**BASE, "destinations": [{"name": "s", "type": "slack", "webhook_url_env": "U"}]}
    parsed = parse_config(slack, "t", {"U": "https://hooks.slack.com/services/a/b/c"}).destinations[0]
    assert parsed.pace == PaceConfig(1.0, 5)
    slack["destinations"][0]["pace"] = {"per_s": 0}  # type: ignore[index]  # turns Slack's default off
    off = parse_config(slack, "t", {"U": "https://hooks.slack.com/services/a/b/c"}).destinations[0]
    assert off.pace is None


@pytest.mark.parametrize(
    ("aggregate", "message"),
    [
        ({"window_s": 0}, "destinations[0].aggregate.window_s: must be >="),
        ({"keys": ["rule"]}, "destinations[0].aggregate: unknown key(s): keys"),
        ({"overrides": [{"window_s": 5}]}, "destinations[0].aggregate.overrides[0].rules: an override needs"),
        ({"overrides": [{"rules": ["x"], "wndow_s": 5}]}, "aggregate.overrides[0]: unknown key(s): wndow_s"),
    ],
)
def test_aggregate_errors_name_the_key(aggregate: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_config(destination(aggregate=aggregate), "t", {})


def test_suppressed_alerts_are_counted_into_the_next_summary_of_their_key() -> None:
    clock = Clock()
    agg = Aggregator("s", AggregateConfig(window_s=60), clock)
    agg.suppress(P0, 0, alert(0))
    agg.suppress(P0, 1, alert(1))
    agg.offer(P0, 2, alert(2))  # the suppression ended: a window opens, carrying the two
    agg.suppress(P0, 3, alert(3))
    clock.now += 61
    (summary,) = agg.due(idle=True)
    assert summary.output_fields["peregrine.summary.suppressed"] == 3
    assert summary.output_fields["peregrine.summary.count"] == 0
    assert ", and 3 suppressed" in summary.output


def test_a_window_whose_records_are_gone_stops_holding_the_commit() -> None:
    clock = Clock()
    first = Aggregator("s", AggregateConfig(window_s=30), clock)
    run_stream(first, [(P0, 100 + n, alert(n)) for n in range(3)])
    (_, metadata), = first.commits([(P0, 103)]).values()
    second = Aggregator("s", AggregateConfig(window_s=30), clock)
    second.restore(P0, metadata)
    assert second.commits([(P0, 200)])[P0][0] == 100
    clock.now += 60
    assert second.due(idle=True) == [] and second.open_keys == 0
    assert second.commits([(P0, 200)])[P0][0] == 200


def test_a_summary_is_flagged_when_any_repeat_it_folds_was_raised_while_events_were_lost() -> None:
    agg = Aggregator("slack", AggregateConfig(window_s=60), Clock())
    agg.offer(P0, 0, alert(0))
    for n in range(1, 10):
        repeat = alert(n, at_s=n)
        if n == 3:
            repeat = with_drops(repeat, 10, 20, {"ring_full": 5}, 5)
        elif n == 7:
            repeat = with_drops(repeat, 15, 30, {"ring_full": 3, "page_fault_reads": 2}, 3)
        agg.offer(P0, n, repeat)
    flagged = summaries(agg.offer(P0, 10, alert(10, at_s=61)))[0]
    assert dropped(flagged) == 5  # the largest loss reported, not a sum of overlapping windows
    fields = flagged.output_fields
    assert (fields["peregrine.drops.first_ns"], fields["peregrine.drops.last_ns"]) == (10, 30)
    assert (fields["peregrine.drops.ring_full"], fields["peregrine.drops.page_fault_reads"]) == (5, 2)
    assert fields["peregrine.summary.incomplete"] == 2
    assert "2 of them while the node lost events" in flagged.output
    assert drops_line(flagged) == "⚠ events were dropped on this node around this alert: 5"
    assert decode(encode(flagged)).output_fields == fields  # still a valid record of the contract

    agg.offer(P0, 11, alert(11, at_s=62))
    clean = summaries(agg.offer(P0, 12, alert(12, at_s=130)))[0]
    assert dropped(clean) is None and not any(k.startswith("peregrine.drops.") for k in clean.output_fields)
    assert "peregrine.summary.incomplete" not in clean.output_fields
