"""Dead-letter headers carry the reason and origin, and read back."""

from __future__ import annotations

import pytest

from bus import dlq


def test_headers_round_trip() -> None:
    letter = dlq.DeadLetter("malformed msgpack", "ValueError: truncated", "peregrine.events", 3, 1234)
    assert dlq.parse_headers(letter.headers()) == letter


def test_detail_is_bounded() -> None:
    letter = dlq.DeadLetter("bad event record", "x" * 5000, "t", 0, 0)
    assert len(dict(letter.headers())[dlq.DETAIL]) == 1024


def test_missing_header_is_named() -> None:
    with pytest.raises(KeyError, match="peregrine.dlq.reason"):
        dlq.parse_headers([(dlq.TOPIC, b"t")])
