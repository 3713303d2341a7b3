"""The contract between the runner and a destination.

A destination turns one alert into one payload with a pure `build` (so every format is tested
without a network) and hands a batch of payloads to its receiver with `send`. `send` reports what
happened per payload in an `Outcome`, or raises `RetryableError` / `PermanentError` when the whole
batch shared one fate. The runner owns everything else: routing, retries with backoff, the
dead-letter topic, offset commits and metrics, once for every destination.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from sinks.alert import Alert


@dataclass(frozen=True, slots=True)
class Outcome:
    """The fate of a batch: payloads not listed in ``retry`` or ``rejected`` were accepted."""

    retry: tuple[int, ...] = ()  # indexes worth another attempt
    reason: str = ""  # why the ``retry`` payloads failed
    retry_after: float | None = None  # seconds the receiver asked us to wait
    rejected: tuple[tuple[int, str], ...] = ()  # (index, reason): permanent, to the dead-letter topic


ACCEPTED = Outcome()


class Destination(Protocol):
    """One configured receiver. Implementations live one per module (`slack.py`, `splunk.py`...)."""

    @property
    def max_batch(self) -> int:
        """How many payloads one `send` may carry (1 for APIs that take one alert per request)."""
        ...

    def build(self, alert: Alert) -> bytes:
        """The alert in this destination's wire format, escaped. Pure: no I/O, no clock."""
        ...

    def send(self, payloads: Sequence[bytes]) -> Outcome:
        """Deliver payloads; raise RetryableError or PermanentError if the whole batch failed alike."""
        ...

    def close(self) -> None: ...
