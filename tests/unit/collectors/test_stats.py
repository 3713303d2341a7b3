"""peregrine.stats: round trips, per-interval deltas, and StatsError for anything malformed."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from collectors.stats import CATEGORIES, Stats, StatsCounter, StatsError, decode_stats, encode_stats


def test_round_trip_and_lost_events() -> None:
    s = Stats("node-a", "boot", 10, 1_000_000_000, 120, 100,
              {"ring_full": 15, "inflight_full": 1, "page_fault_reads": 7, "userspace_queue_full": 4,
               "delivery_failed": 0})
    back = decode_stats(encode_stats(s))
    assert back == s
    assert back.n_drops == 20  # page-fault reads lose a field, not an event


def test_counter_turns_totals_into_deltas() -> None:
    c = StatsCounter("n", "b", start_ns=1_000)
    first = c.delta(2_000, {"n_evts": 10, "n_read": 8, "ring_full": 2})
    second = c.delta(3_500, {"n_evts": 25, "n_read": 20, "ring_full": 5})
    assert (first.n_evts, first.n_read, first.drops["ring_full"], first.interval_ns) == (10, 8, 2, 1_000)
    assert (second.n_evts, second.n_read, second.drops["ring_full"], second.interval_ns) == (15, 12, 3, 1_500)
    assert set(second.drops) == set(CATEGORIES)


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ([1, 2], "not a map"),
        ({"v": 2}, "unsupported stats version"),
        ({"v": 1, "node": "n"}, "missing field"),
        ({"v": 1, "node": 1, "boot_id": "b", "t": 1, "interval_ns": 1, "n_evts": 1, "n_read": 1, "drops": {}},
         "strings"),
        ({"v": 1, "node": "n", "boot_id": "b", "t": -1, "interval_ns": 1, "n_evts": 1, "n_read": 1,
          "drops": {}}, "t must be"),
        ({"v": 1, "node": "n", "boot_id": "b", "t": 1, "interval_ns": 1, "n_evts": 1, "n_read": 1,
          "drops": {"ring_full": "x"}}, "drops must map"),
    ],
)
def test_malformed_stats_name_the_problem(obj: object, message: str) -> None:
    with pytest.raises(StatsError, match=message):
        decode_stats(msgpack.packb(obj))


@given(st.binary(max_size=200))
def test_any_bytes_raise_only_stats_error(data: bytes) -> None:
    try:
        decode_stats(data)
    except StatsError:
        pass
