"""``--since`` and ``--until`` values -> milliseconds since the epoch, as Kafka's timestamps count.

Either a duration back from now (``90m``, ``24h``, ``7d``, ``1h30m``, ``45s``) or an ISO 8601 time
(``2026-12-06T07:00:00Z``; without a zone it is UTC, as every Peregrine time is).
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Final

from backtest.errors import UsageError

_UNIT_MS: Final = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_DURATION: Final = re.compile(r"(?:\d+[smhd])+")
_PART: Final = re.compile(r"(\d+)([smhd])")


def parse_time(text: str, now_ms: int, option: str = "--since") -> int:
    """Epoch milliseconds for `text`, read as a duration before `now_ms` or as an ISO time."""
    value = text.strip()
    if _DURATION.fullmatch(value):
        return now_ms - sum(int(n) * _UNIT_MS[unit] for n, unit in _PART.findall(value))
    try:
        when = dt.datetime.fromisoformat(value)
    except ValueError:
        raise UsageError(
            f"{option} {text!r}: not a duration (90m, 24h, 7d, 1h30m) nor an ISO time (2026-12-06T07:00Z)"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return int(when.timestamp() * 1000)


def iso(ms: int) -> str:
    """Epoch milliseconds as an ISO 8601 UTC time, for reports."""
    when = dt.datetime.fromtimestamp(ms / 1000, dt.UTC)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")
