"""Per-destination pacing and fairness: a token bucket in front of `send`, round-robin between keys.

Slack's incoming webhooks accept about one message per second per webhook, tolerate short bursts
and answer 429 with ``Retry-After`` beyond (https://api.slack.com/apis/rate-limits). Sending
faster only buys 429s and their waits, so a paced destination takes a token per request: ``per_s``
tokens a second, at most ``burst`` saved up. A 429 still waits its ``Retry-After`` in
`sinks.delivery`. The wait for a token goes through the runner's keep-alive wait, so the consumer
keeps polling while it waits.

Fairness: within a polled batch the alerts are delivered in round-robin order across keys (one of
each key, then the second of each...), so a storm of one key does not hold a different alert behind
the whole storm in that batch. Across batches, aggregation (`sinks.aggregate`) is what collapses
a storm: a destination that cannot afford every alert should aggregate.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from sinks.alert import Alert
from sinks.base import Destination, Outcome
from sinks.errors import RetryableError

T = TypeVar("T")
Wait = Callable[[float], bool]  # as `sinks.delivery.Wait`: False means "stop requested"


@dataclass(frozen=True, slots=True)
class PaceConfig:
    per_s: float  # requests per second, sustained
    burst: int  # requests allowed back to back after a quiet spell


SLACK_PACE = PaceConfig(per_s=1.0, burst=5)  # the default of `type: slack`


class TokenBucket:
    def __init__(self, config: PaceConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self._config = config
        self._clock = clock
        self._tokens = float(config.burst)
        self._at = clock()

    def delay(self) -> float:
        """Take a token: 0 if one was there, else the seconds until it is (it is taken already)."""
        now = self._clock()
        self._tokens = min(float(self._config.burst), self._tokens + (now - self._at) * self._config.per_s)
        self._at = now
        self._tokens -= 1.0
        return 0.0 if self._tokens >= 0 else -self._tokens / self._config.per_s


class Paced:
    """A `Destination` whose `send` waits for a token first (through ``wait``, set by the runner)."""

    def __init__(self, inner: Destination, bucket: TokenBucket) -> None:
        self._inner = inner
        self._bucket = bucket
        self.wait: Wait = _sleep

    @property
    def max_batch(self) -> int:
        return self._inner.max_batch

    def build(self, alert: Alert) -> bytes:
        return self._inner.build(alert)

    def send(self, payloads: Sequence[bytes]) -> Outcome:
        delay = self._bucket.delay()
        if delay > 0 and not self.wait(delay):
            # stopping: the delivery loop's own wait sees the stop and ends the batch uncommitted
            raise RetryableError("stopping while paced")
        return self._inner.send(payloads)

    def close(self) -> None:
        self._inner.close()


def _sleep(delay: float) -> bool:
    time.sleep(delay)
    return True


def round_robin(items: Sequence[T], key: Callable[[T], Hashable]) -> list[T]:
    """``items`` reordered: the first of every key in order of appearance, then every second..."""
    rank: dict[Hashable, int] = {}
    ranked: list[tuple[int, int, T]] = []
    for i, item in enumerate(items):
        k = key(item)
        r = rank.get(k, 0)
        rank[k] = r + 1
        ranked.append((r, i, item))
    ranked.sort(key=lambda entry: (entry[0], entry[1]))
    return [item for _, _, item in ranked]
