"""Attacker values in log lines and error texts: one line, bounded, escaped (issue #16, item 5)."""

from __future__ import annotations

import msgpack
import pytest

from collectors.stats import StatsError, decode_stats
from collectors.wire import WireError, decode_batch
from streams.logsafe import MAX_SHOWN, shown


def test_shown_escapes_control_characters_and_bounds_length() -> None:
    assert shown("evil\nrules reloaded") == "evil\\nrules reloaded"
    assert "\x1b" not in shown("\x1b[31mred") and "\u2028" not in shown("a\u2028b")
    long = shown("x" * 1_000_000)
    assert len(long) < 3 * MAX_SHOWN and long.endswith(f"(+{1_000_000 - MAX_SHOWN} chars)")
    assert shown(b"\x00\xff" * 10) == shown(b"\x00\xff" * 10).encode("ascii").decode()


@pytest.mark.parametrize(
    "batch",
    [
        {"v": "x" * 1_000_000},
        {"v": "1\nrules reloaded (generation 9)"},
    ],
)
def test_wire_error_texts_quote_a_bounded_escaped_value(batch: dict[str, object]) -> None:
    with pytest.raises(WireError) as info:
        decode_batch(msgpack.packb(batch))
    text = str(info.value)
    assert len(text) < 200 and "\n" not in text


def test_stats_error_texts_quote_a_bounded_escaped_value() -> None:
    with pytest.raises(StatsError) as info:
        decode_stats(msgpack.packb({"v": "y" * 1_000_000}))
    assert len(str(info.value)) < 200
    with pytest.raises(StatsError) as info:
        decode_stats(msgpack.packb({"v": 1, "node": "n", "boot_id": "b", "t": "z\n" * 10**5,
                                    "interval_ns": 1, "n_evts": 1, "n_read": 1, "drops": {}}))
    assert len(str(info.value)) < 200 and "\n" not in str(info.value)
