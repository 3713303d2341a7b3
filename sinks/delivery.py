"""Delivering one batch of payloads to one destination: bounded retries, backoff, Retry-After.

Kept apart from Kafka so it runs against any destination and receiver in tests. Backoff is
exponential with "equal jitter" (half the step fixed, half random) so a fleet of sinks does not
retry in lockstep; a receiver's ``Retry-After`` replaces the computed delay, capped by
``max_retry_after_s``. Only the payloads that failed are sent again.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from sinks.base import Destination, Outcome
from sinks.config import RetryConfig
from sinks.errors import PermanentError, RetryableError
from sinks.metrics import SinkMetrics

log = logging.getLogger("peregrine.sink")

Wait = Callable[[float], bool]  # sleeps up to the delay; False means "stop requested"


# Not a SinkError: a control-flow signal that unwinds the runner's batch loop on shutdown, caught by
# `sinks.runner` alone; nothing went wrong, so `except SinkError` handlers must not see it.
class Stopped(Exception):
    """Shutdown was requested while a batch waited for a retry; nothing may be committed."""


REJECTED = "rejected by destination"
EXHAUSTED = "retries exhausted"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    index: int  # payload index in the batch
    reason: str  # short and stable: REJECTED or EXHAUSTED
    detail: str  # what the destination said
    attempts: int


@dataclass(slots=True)
class DeliveryReport:
    accepted: list[int] = field(default_factory=list)  # payload indexes, in acceptance order
    dead: list[DeadLetter] = field(default_factory=list)


def backoff_delay(attempt: int, retry: RetryConfig, retry_after: float | None, rng: random.Random) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
    if retry_after is not None:
        return min(max(retry_after, 0.0), retry.max_retry_after_s)
    step = min(retry.max_backoff_s, retry.initial_backoff_s * 2.0 ** (attempt - 1))
    return step / 2 + rng.uniform(0, step / 2)


def deliver(
    destination: Destination,
    payloads: Sequence[bytes],
    retry: RetryConfig,
    wait: Wait,
    rng: random.Random,
    metrics: SinkMetrics,
    attributes: dict[str, str],
    max_bytes: int | None = None,
    between: Callable[[], None] | None = None,
) -> DeliveryReport:
    """Send ``payloads`` in order, in chunks of at most ``destination.max_batch`` payloads and
    ``max_bytes`` bytes; ``between`` runs after each chunk (the runner keeps its consumer alive
    there); raises `Stopped` on shutdown."""
    report = DeliveryReport()
    for chunk in chunks([len(p) for p in payloads], max(1, destination.max_batch), max_bytes):
        _deliver_chunk(destination, payloads, chunk, retry, wait, rng, metrics, attributes, report)
        if between is not None:
            between()
    return report


def chunks(sizes: Sequence[int], max_count: int, max_bytes: int | None) -> list[list[int]]:
    """Indexes grouped in order so no group exceeds either limit; an oversized payload goes alone."""
    groups: list[list[int]] = []
    current: list[int] = []
    used = 0
    for i, size in enumerate(sizes):
        if current and (len(current) >= max_count or (max_bytes is not None and used + size > max_bytes)):
            groups.append(current)
            current, used = [], 0
        current.append(i)
        used += size
    if current:
        groups.append(current)
    return groups


def _deliver_chunk(
    destination: Destination,
    payloads: Sequence[bytes],
    pending: list[int],
    retry: RetryConfig,
    wait: Wait,
    rng: random.Random,
    metrics: SinkMetrics,
    attributes: dict[str, str],
    report: DeliveryReport,
) -> None:
    attempt = 0
    while pending:
        attempt += 1
        outcome = _attempt(destination, [payloads[i] for i in pending], metrics, attributes)
        if isinstance(outcome, PermanentError):
            report.dead += [DeadLetter(i, REJECTED, outcome.reason, attempt) for i in pending]
            metrics.failed.add(len(pending), attributes)
            return
        report.dead += [DeadLetter(pending[j], REJECTED, reason, attempt) for j, reason in outcome.rejected]
        failed = set(outcome.retry) | {j for j, _ in outcome.rejected}
        report.accepted += [i for j, i in enumerate(pending) if j not in failed]
        again = [pending[j] for j in outcome.retry]
        if outcome.rejected or again:
            metrics.failed.add(len(outcome.rejected) + len(again), attributes)
        if not again:
            return
        if attempt >= retry.max_attempts:
            report.dead += [DeadLetter(i, EXHAUSTED, outcome.reason, attempt) for i in again]
            return
        delay = backoff_delay(attempt, retry, outcome.retry_after, rng)
        log.warning("%s: attempt %d failed for %d alert(s) (%s); retrying in %.2fs",
                    attributes["destination"], attempt, len(again), outcome.reason, delay)
        metrics.retried.add(len(again), attributes)
        if not wait(delay):
            raise Stopped
        pending = again


def _attempt(
    destination: Destination, chunk: list[bytes], metrics: SinkMetrics, attributes: dict[str, str]
) -> Outcome | PermanentError:
    started = time.monotonic()
    try:
        return destination.send(chunk)
    except RetryableError as exc:
        return Outcome(retry=tuple(range(len(chunk))), reason=exc.reason, retry_after=exc.retry_after)
    except PermanentError as exc:
        return exc
    except Exception as exc:  # a defect in a destination must not kill the loop: bounded retries, then DLQ
        log.exception("%s: unexpected error in send", attributes["destination"])
        return Outcome(retry=tuple(range(len(chunk))), reason=f"unexpected {type(exc).__name__}: {exc}")
    finally:
        metrics.send_duration.record(time.monotonic() - started, attributes)
