"""The HTTP sender's pure parts: Retry-After parsing and redaction of secrets."""

from __future__ import annotations

from datetime import UTC, datetime

from sinks.http import parse_retry_after, redact
from sinks.options import Secret


def test_retry_after_seconds_and_http_dates() -> None:
    now = datetime(2026, 8, 21, 10, 15, 30, tzinfo=UTC)
    assert parse_retry_after("30") == 30.0
    assert parse_retry_after("Fri, 21 Aug 2026 10:16:00 GMT", now) == 30.0
    assert parse_retry_after("Fri, 21 Aug 2026 10:00:00 GMT", now) == 0.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None


def test_redact_removes_every_secret_value() -> None:
    token = Secret("abc123")
    assert redact("bad token abc123 in https://x/abc123", [token]) == "bad token *** in https://x/***"
