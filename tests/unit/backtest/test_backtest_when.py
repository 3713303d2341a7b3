"""`backtest.when`: --since/--until as durations back from now or ISO times; `job.split` of partitions."""

from __future__ import annotations

import pytest

from backtest.errors import UsageError
from backtest.job import split
from backtest.read import Span
from backtest.when import iso, parse_time

NOW = 1_800_000_000_000


@pytest.mark.parametrize(
    ("text", "back_ms"),
    [("90m", 90 * 60_000), ("24h", 24 * 3_600_000), ("7d", 7 * 86_400_000), ("1h30m", 90 * 60_000),
     ("45s", 45_000), (" 2h ", 7_200_000)],
)  # fmt: skip
def test_durations_count_back_from_now(text: str, back_ms: int) -> None:
    assert parse_time(text, NOW) == NOW - back_ms


def test_iso_times_with_and_without_a_zone() -> None:
    assert parse_time("2026-12-06T07:00:00Z", NOW) == 1_796_540_400_000
    assert parse_time("2026-12-06T07:00:00", NOW) == 1_796_540_400_000  # UTC without a zone
    assert parse_time("2026-12-06T08:00:00+01:00", NOW) == 1_796_540_400_000
    assert iso(1_796_540_400_123) == "2026-12-06T07:00:00.123Z"


@pytest.mark.parametrize("text", ["", "24", "h", "yesterday", "1.5h", "-2h", "24h ago"])
def test_what_does_not_parse_names_the_option(text: str) -> None:
    with pytest.raises(UsageError, match="--until"):
        parse_time(text, NOW, "--until")


def test_partitions_are_split_by_size_and_empty_ones_left_out() -> None:
    spans = [Span(0, 0, 100), Span(1, 0, 10), Span(2, 5, 5), Span(3, 0, 60), Span(4, 0, 50)]
    shares = split(spans, 2)
    assert shares == [[Span(0, 0, 100), Span(1, 0, 10)], [Span(3, 0, 60), Span(4, 0, 50)]]  # 110 each
    assert split(spans, 8) == [[Span(0, 0, 100)], [Span(3, 0, 60)], [Span(4, 0, 50)], [Span(1, 0, 10)]]
    assert split([Span(0, 3, 3)], 4) == []
