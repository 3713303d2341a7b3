"""Falco's syscall event drop alert: the threshold, the per-node token bucket, the record format."""

from __future__ import annotations

import json

import pytest

from alerts import wire
from streams.drops import (
    BAD_NODE,
    BAD_TIME,
    DROP_FIELDS,
    RULE,
    DropMonitor,
    DropSample,
    StatsRefused,
    build_drop_alert,
    check_sample,
)

S = 1_000_000_000
T0 = 1_780_000_000 * S


def sample(node: str = "n1", t: int = T0, n_evts: int = 1000, n_drops: int = 200) -> DropSample:
    return DropSample(node, t, n_evts, n_drops, {"n_drops_buffer_total": n_drops})


def test_alerts_only_above_a_tenth_of_the_events_dropped() -> None:
    assert DropMonitor().observe(sample(n_drops=0)) is None
    assert DropMonitor().observe(sample(n_drops=100)) is None  # exactly 0.1 is not above
    assert DropMonitor().observe(sample(n_drops=101)) is not None


def test_drops_with_no_delivered_events_alert() -> None:
    assert DropMonitor().observe(sample(n_evts=0, n_drops=5)) is not None


def test_at_most_one_alert_per_30_seconds_per_node() -> None:
    m = DropMonitor()
    seconds = [s for s in range(95) if m.observe(sample(t=T0 + s * S)) is not None]
    assert seconds == [0, 30, 60, 90]


def test_nodes_have_their_own_bucket() -> None:
    m = DropMonitor()
    assert m.observe(sample("n1")) is not None
    assert m.observe(sample("n2")) is not None
    assert m.observe(sample("n1", t=T0 + S)) is None


def test_record_is_falcos_internal_alert() -> None:
    drops = DropSample("node-7", T0 + 123, 1000, 300, {"n_drops_buffer_total": 250})
    alert = json.loads(wire.encode(build_drop_alert(drops)))
    keys = ["uuid", "hostname", "output", "output_fields", "priority", "rule", "source", "time"]
    assert list(alert) == keys  # uuid, then Falco's order; an internal alert has no tags
    assert alert["rule"] == RULE == "Falco internal: syscall event drop"
    assert alert["output"] == "Falco internal: syscall event drop. 300 system calls dropped in last second."
    assert alert["priority"] == "Debug"
    assert alert["source"] == "internal"
    assert alert["hostname"] == "node-7"
    assert alert["time"] == "2026-05-28T20:26:40.000000123Z"
    fields = alert["output_fields"]
    assert list(fields) == ["n_evts", "n_drops", *DROP_FIELDS, "ebpf_enabled"]
    assert all(isinstance(v, str) for v in fields.values())
    assert (fields["n_drops"], fields["n_drops_buffer_total"], fields["ebpf_enabled"]) == ("300", "250", "1")


def test_record_decodes_as_the_alert_it_was_built_from() -> None:
    alert = build_drop_alert(sample())
    assert wire.decode(wire.encode(alert)) == alert


def test_uuid_is_stable_per_node_and_second() -> None:
    a, b = build_drop_alert(sample()), build_drop_alert(sample())
    assert a.uuid == b.uuid != build_drop_alert(sample("n2")).uuid != build_drop_alert(sample(t=T0 + S)).uuid


def test_buckets_are_bounded_and_evict_the_least_recently_seen_node() -> None:
    m = DropMonitor(max_nodes=2)
    assert m.observe(sample("n1")) is not None
    assert m.observe(sample("n2")) is not None
    assert m.observe(sample("n3")) is not None  # n1 evicted
    assert len(m) == 2
    assert m.observe(sample("n1", t=T0 + S)) is not None  # a fresh bucket


@pytest.mark.parametrize("t", [2**64 - 1, T0 + 301 * S, 0, 1_500_000_000 * S])
def test_a_stats_time_outside_the_sane_window_is_refused(t: int) -> None:
    with pytest.raises(StatsRefused) as info:
        check_sample(sample("victim", t=t), now_ns=T0)
    assert info.value.reason == BAD_TIME


def test_a_stats_node_that_is_not_a_dns_name_is_refused() -> None:
    with pytest.raises(StatsRefused) as info:
        check_sample(sample("evil\nline" + "x" * 10_000), now_ns=T0)
    assert info.value.reason == BAD_NODE and len(str(info.value)) < 300 and "\n" not in str(info.value)
    check_sample(sample("node-1.example", t=T0 + 299 * S), now_ns=T0)  # in the window: accepted
