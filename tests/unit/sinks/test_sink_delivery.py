"""Retries, backoff with jitter, Retry-After, partial outcomes and bounded attempts.

The destination here is a scripted stand-in (it answers what the test says); the real HTTP and
syslog destinations are exercised against receivers in tests/integration/sinks.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from sinks.base import ACCEPTED, Outcome
from sinks.config import RetryConfig
from sinks.delivery import (
    EXHAUSTED,
    REJECTED,
    DeliveryReport,
    Stopped,
    backoff_delay,
    chunks,
    deliver,
)
from sinks.errors import PermanentError, RetryableError
from sinks.metrics import create_metrics

RETRY = RetryConfig(max_attempts=4, initial_backoff_s=1.0, max_backoff_s=8.0, max_retry_after_s=60.0)


class ScriptedDestination:
    """Answers each send with the next scripted result and records what it was sent."""

    def __init__(self, script: list[Outcome | Exception], max_batch: int = 100) -> None:
        self.script = script
        self.max_batch = max_batch
        self.sent: list[list[bytes]] = []

    def build(self, alert: object) -> bytes:
        raise NotImplementedError

    def send(self, payloads: Sequence[bytes]) -> Outcome:
        self.sent.append(list(payloads))
        result = self.script.pop(0) if self.script else ACCEPTED
        if isinstance(result, Exception):
            raise result
        return result

    def close(self) -> None:
        return None


class Waits:
    def __init__(self, stop_after: int | None = None) -> None:
        self.delays: list[float] = []
        self.stop_after = stop_after

    def __call__(self, delay: float) -> bool:
        self.delays.append(delay)
        return self.stop_after is None or len(self.delays) < self.stop_after


def run(
    destination: ScriptedDestination,
    payloads: list[bytes],
    waits: Waits,
    reader: InMemoryMetricReader | None = None,
) -> DeliveryReport:
    metrics = create_metrics(MeterProvider(metric_readers=[reader or InMemoryMetricReader()]))
    return deliver(destination, payloads, RETRY, waits, random.Random(7), metrics, {"destination": "t"})


def test_backoff_doubles_with_jitter_and_is_capped() -> None:
    rng = random.Random(1)
    for attempt, step in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (9, 8.0)]:
        delays = [backoff_delay(attempt, RETRY, None, rng) for _ in range(200)]
        assert all(step / 2 <= d <= step for d in delays)
        assert max(delays) - min(delays) > step / 4  # jitter actually spreads the retries


def test_retry_after_replaces_the_backoff_but_is_capped() -> None:
    rng = random.Random(1)
    assert backoff_delay(1, RETRY, 17.0, rng) == 17.0
    assert backoff_delay(1, RETRY, 3600.0, rng) == 60.0


def test_retryable_error_is_retried_with_the_servers_retry_after() -> None:
    destination = ScriptedDestination([RetryableError("HTTP 429", retry_after=5.0), ACCEPTED])
    waits = Waits()
    report = run(destination, [b"a", b"b"], waits)
    assert report.accepted == [0, 1] and report.dead == []
    assert waits.delays == [5.0]
    assert destination.sent == [[b"a", b"b"], [b"a", b"b"]]


def test_only_the_failed_items_are_sent_again() -> None:
    outcome = Outcome(retry=(1,), reason="item 429", rejected=((2, "mapping error"),))
    destination = ScriptedDestination([outcome])
    report = run(destination, [b"a", b"b", b"c"], Waits())
    assert destination.sent == [[b"a", b"b", b"c"], [b"b"]]
    assert sorted(report.accepted) == [0, 1]
    assert [(d.index, d.reason, d.detail) for d in report.dead] == [(2, REJECTED, "mapping error")]


def test_attempts_are_bounded_then_the_batch_is_dead() -> None:
    destination = ScriptedDestination([RetryableError("HTTP 503")] * 10)
    waits = Waits()
    report = run(destination, [b"a"], waits)
    assert len(destination.sent) == RETRY.max_attempts
    assert len(waits.delays) == RETRY.max_attempts - 1
    assert [(d.reason, d.detail, d.attempts) for d in report.dead] == [(EXHAUSTED, "HTTP 503", 4)]


def test_permanent_error_is_not_retried() -> None:
    destination = ScriptedDestination([PermanentError("HTTP 400: invalid_payload")])
    report = run(destination, [b"a", b"b"], Waits())
    assert len(destination.sent) == 1
    assert [(d.index, d.reason) for d in report.dead] == [(0, REJECTED), (1, REJECTED)]


def test_an_unexpected_exception_in_a_destination_is_retried_then_dead_lettered() -> None:
    destination = ScriptedDestination([ValueError("bug")] * 10)
    report = run(destination, [b"a"], Waits())
    assert report.dead[0].reason == EXHAUSTED and "ValueError: bug" in report.dead[0].detail


def test_payloads_are_chunked_by_max_batch_in_order() -> None:
    destination = ScriptedDestination([], max_batch=2)
    report = run(destination, [b"1", b"2", b"3", b"4", b"5"], Waits())
    assert destination.sent == [[b"1", b"2"], [b"3", b"4"], [b"5"]]
    assert report.accepted == [0, 1, 2, 3, 4]


def test_chunks_respect_count_and_bytes_and_keep_order() -> None:
    assert chunks([10, 10, 10, 10, 10], 2, None) == [[0, 1], [2, 3], [4]]
    assert chunks([400, 400, 400, 2000, 10], 100, 1000) == [[0, 1], [2], [3], [4]]
    assert chunks([], 5, 100) == []


def test_shutdown_during_a_retry_wait_stops_without_a_verdict() -> None:
    destination = ScriptedDestination([RetryableError("down")] * 10)
    with pytest.raises(Stopped):
        run(destination, [b"a"], Waits(stop_after=1))


def test_metrics_count_per_destination_only() -> None:
    reader = InMemoryMetricReader()
    destination = ScriptedDestination([RetryableError("HTTP 503"), ACCEPTED])
    run(destination, [b"a", b"b"], Waits(), reader)
    data = reader.get_metrics_data()
    points = {
        m.name: (m.unit, [(dict(p.attributes), getattr(p, "value", None)) for p in m.data.data_points])
        for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics
    }
    assert points["peregrine.sink.failed"] == ("{alert}", [({"destination": "t"}, 2)])
    assert points["peregrine.sink.retried"] == ("{alert}", [({"destination": "t"}, 2)])
    assert points["peregrine.sink.send.duration"][0] == "s"
