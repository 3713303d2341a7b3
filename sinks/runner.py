"""One destination's loop: consume, route, build, deliver with retries, dead-letter, commit.

Each destination has its own consumer group (``<group_prefix>-<name>``) and its own loop, so a
slow or failing destination only holds back its own offsets. Offsets are committed after every
record of a batch is settled: accepted by the destination, not selected by the route, or written
to the dead-letter topic (and acknowledged by the broker). A crash or shutdown in between means
the batch is consumed again: delivery is at-least-once, and destinations that key documents by
the alert uuid (Elasticsearch ``_id``) absorb the duplicates.

Consumers read with ``isolation.level=read_committed``, so alerts of aborted worker transactions
never leave the pipeline.

Liveness: a batch can take long to settle (200 one-alert requests to a slow Slack, retries with
backoff, Retry-After), and a consumer that does not poll within ``max.poll.interval.ms`` is evicted
from its group, which hands the batch to another member: delivered twice. So while a batch is
delivered, the runner pauses its partitions and polls after every request and during every wait
between attempts (a paused consumer returns no records; one that arrives anyway, after a
rebalance, is sought back and read again later). What must fit between two polls is then one
attempt, and ``max.poll.interval.ms`` is computed from the destination's own attempt time limit.
Fetch buffers are bounded (a few MB per destination, not librdkafka's 64 MB and 100,000 queued
records), so a storm on the topic cannot grow the sink's memory with it.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from alerts.errors import AlertDecodeError
from bus import dlq
from bus.clients import librdkafka_config
from sinks import escape
from sinks.alert import Alert, decode_alert
from sinks.base import Destination
from sinks.config import DestinationConfig, KafkaConfig
from sinks.delivery import Stopped, deliver
from sinks.metrics import SinkMetrics
from sinks.registry import KINDS

log = logging.getLogger("peregrine.sink")

MAX_POLL_INTERVAL_MS = 86_400_000  # librdkafka's ceiling
MIN_POLL_INTERVAL_MS = 300_000  # librdkafka's default: never below it
POLL_MARGIN_S = 60.0  # for building payloads and the DLQ write between two polls
# librdkafka tuning defaults for the fetch buffers (a YAML `properties` entry overrides them)
FETCH_BOUNDS = {
    "queued.max.messages.kbytes": 8192,
    "fetch.max.bytes": 4 * 1024 * 1024,
    "max.partition.fetch.bytes": 1024 * 1024,
}
DLQ_DETAIL_LIMIT = 1024
UNDECODABLE = "undecodable alert"
BUILD_FAILED = "build failed"


def connection_properties(kafka: KafkaConfig) -> dict[str, Any]:
    return {**librdkafka_config(kafka.connection), **dict(kafka.properties)}


def attempt_limit_s(settings: Any) -> float:
    """The longest one `send` of this destination can take: its request timeout (HTTP destinations
    bound the whole exchange by it; syslog each write and acknowledgement), plus Splunk's wait for
    indexer acknowledgements. 30 s for destinations without a timeout (file, stdout)."""
    http = getattr(settings, "http", None)
    timeout = getattr(settings, "timeout_s", None) or getattr(http, "timeout_s", None)
    return float(timeout or 30.0) + float(getattr(settings, "ack_timeout_s", 0.0))


def consumer_properties(kafka: KafkaConfig, destination: DestinationConfig) -> dict[str, Any]:
    # between two polls: one attempt (see the module docstring), with room to spare
    work_ms = int((2 * attempt_limit_s(destination.settings) + POLL_MARGIN_S) * 1000)
    return {
        "queued.min.messages": 2 * destination.batch.max_alerts,
        **FETCH_BOUNDS,
        **connection_properties(kafka),
        "group.id": kafka.group_id(destination.name),
        "client.id": f"peregrine-sink-{destination.name}",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "isolation.level": "read_committed",
        "auto.offset.reset": kafka.auto_offset_reset,
        "max.poll.interval.ms": max(MIN_POLL_INTERVAL_MS, min(work_ms, MAX_POLL_INTERVAL_MS)),
    }


def producer_properties(kafka: KafkaConfig, destination: DestinationConfig) -> dict[str, Any]:
    return {
        **connection_properties(kafka),
        "client.id": f"peregrine-sink-{destination.name}-dlq",
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
    }


@dataclass(frozen=True, slots=True)
class Failed:
    """A record bound for the dead-letter topic."""

    message: Message
    reason: str  # short and stable, for grouping: "undecodable alert", "retries exhausted"...
    detail: str  # the error text, secrets already redacted
    attempts: int


def dlq_headers(failed: Failed, destination: str) -> list[tuple[str, str | bytes | None]]:
    """Why and where from, as headers: the value stays the original alert bytes, replayable as is.

    Header names follow `peregrine.events.dlq` (``peregrine.dlq.*``), plus destination and attempts.
    """
    message = failed.message
    return [
        (dlq.REASON, failed.reason.encode()),
        (dlq.DETAIL, escape.clean(failed.detail, DLQ_DETAIL_LIMIT).encode()),
        (dlq.DESTINATION, destination.encode()),
        (dlq.ATTEMPTS, str(failed.attempts).encode()),
        (dlq.TOPIC, (message.topic() or "").encode()),
        (dlq.PARTITION, str(message.partition()).encode()),
        (dlq.OFFSET, str(message.offset()).encode()),
    ]


class Runner:
    """Runs one destination until ``stop`` is set. Not thread-safe: one thread per runner."""

    def __init__(
        self,
        kafka: KafkaConfig,
        config: DestinationConfig,
        metrics: SinkMetrics,
        stop: threading.Event,
        destination: Destination | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._kafka = kafka
        self._config = config
        self._metrics = metrics
        self._stop = stop
        kind = KINDS[config.kind]
        max_batch = config.batch.max_alerts if kind.batches else 1
        self._destination = destination or kind.open(config.settings, config.value_limit, max_batch)
        self._rng = rng or random.Random()
        self._attributes = {"destination": config.name}
        self._committed: dict[tuple[str, int], int] = {}  # (topic, partition) -> offset we committed

    def run(self) -> None:
        consumer = Consumer(consumer_properties(self._kafka, self._config))
        producer = Producer(producer_properties(self._kafka, self._config))
        consumer.subscribe([self._kafka.topic])
        log.info("%s: consuming %s as group %s", self._config.name, self._kafka.topic,
                 self._kafka.group_id(self._config.name))
        try:
            while not self._stop.is_set():
                messages = consumer.consume(self._config.batch.max_alerts, self._config.batch.max_wait_s)
                if messages:
                    self._handle_paused(consumer, producer, messages)
                self._commit(consumer)
        except Stopped:
            log.info("%s: stopping with a batch in retry; it will be consumed again", self._config.name)
        finally:
            self._destination.close()
            consumer.close()
            producer.flush(10)

    def _handle_paused(self, consumer: Consumer, producer: Producer, messages: Sequence[Message]) -> None:
        """`_handle` with the assignment paused and the consumer polled whenever the batch waits."""
        assignment = consumer.assignment()
        consumer.pause(assignment)

        def keep_alive() -> None:
            message = consumer.poll(0)
            if message is None or message.error() is not None:
                return
            # a rebalance gave us partitions afresh, unpaused: read this record again later
            topic, partition, offset = message.topic(), message.partition(), message.offset()
            if topic is not None and partition is not None and offset is not None:
                consumer.seek(TopicPartition(topic, partition, offset))
            consumer.pause(consumer.assignment())

        def wait(delay: float) -> bool:
            deadline = time.monotonic() + delay
            while True:
                keep_alive()
                left = deadline - time.monotonic()
                if left <= 0:
                    return True
                if self._stop.wait(min(left, 1.0)):
                    return False

        try:
            self._handle(producer, messages, wait, keep_alive)
        finally:
            consumer.resume(consumer.assignment())

    def _handle(
        self,
        producer: Producer,
        messages: Sequence[Message],
        wait: Callable[[float], bool] | None = None,
        between: Callable[[], None] | None = None,
    ) -> None:
        """Settle every record: delivered, filtered out, or acknowledged by the dead-letter topic."""
        sent: list[tuple[Message, Alert]] = []  # parallel to payloads
        payloads: list[bytes] = []
        dead: list[Failed] = []
        filtered = 0
        for message in messages:
            error = message.error()
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    log.warning("%s: consumer error: %s", self._config.name, error)
                continue
            try:
                alert = decode_alert(message.value() or b"")
            except AlertDecodeError as exc:
                dead.append(Failed(message, UNDECODABLE, str(exc), 0))
                continue
            except Exception as exc:  # a decoder defect on one record must not stop the destination
                log.exception("%s: decoder failed on %s[%d]@%d", self._config.name, message.topic(),
                              message.partition(), message.offset())
                dead.append(Failed(message, UNDECODABLE, f"{type(exc).__name__}: {exc}", 0))
                continue
            if not self._config.route.accepts(alert):
                filtered += 1
                continue
            try:
                payloads.append(self._destination.build(alert))
            except Exception as exc:  # a builder defect must not stall the partition
                log.exception("%s: cannot build alert %s", self._config.name, alert.uuid)
                dead.append(Failed(message, BUILD_FAILED, f"{type(exc).__name__}: {exc}", 0))
                continue
            sent.append((message, alert))
        report = deliver(self._destination, payloads, self._config.retry, wait or self._stop_aware_wait,
                         self._rng, self._metrics, self._attributes, self._config.batch.max_bytes, between)
        now_ns = time.time_ns()
        for i in report.accepted:
            self._metrics.latency.record(max(0, now_ns - sent[i][1].time_ns) / 1e9, self._attributes)
        self._metrics.delivered.add(len(report.accepted), self._attributes)
        if filtered:
            self._metrics.filtered.add(filtered, self._attributes)
        dead += [Failed(sent[d.index][0], d.reason, d.detail, d.attempts) for d in report.dead]
        if dead and not self._dead_letter(producer, dead):
            raise Stopped

    def _stop_aware_wait(self, delay: float) -> bool:
        return not self._stop.wait(delay)

    def _dead_letter(self, producer: Producer, dead: list[Failed]) -> bool:
        """Write to the DLQ until the broker acknowledges every record; False if stopped first."""
        pending = dead
        attempt = 0
        while True:
            failures: list[Failed] = []
            first = pending[0]
            log.warning("%s: %d alert(s) to %s (first: %s[%d]@%d after %d attempt(s): %s: %s)",
                        self._config.name, len(pending), self._kafka.dlq_topic, first.message.topic(),
                        first.message.partition(), first.message.offset(), first.attempts, first.reason,
                        escape.clean(first.detail, DLQ_DETAIL_LIMIT))
            for entry in pending:
                message = entry.message

                def on_delivery(
                    err: KafkaError | None, _msg: Message, entry: Any = entry, failures: list[Any] = failures
                ) -> None:
                    if err is not None:
                        failures.append(entry)

                producer.produce(self._kafka.dlq_topic, value=message.value(), key=message.key(),
                                 headers=dlq_headers(entry, self._config.name),
                                 on_delivery=on_delivery)
            while producer.flush(1.0) > 0:
                if self._stop.is_set():
                    return False
            self._metrics.dlq.add(len(pending) - len(failures), self._attributes)
            if not failures:
                return True
            attempt += 1
            log.error("%s: dead-letter write failed for %d record(s); retrying",
                      self._config.name, len(failures))
            if self._stop.wait(min(30.0, 0.5 * 2**attempt)):
                return False
            pending = failures

    def _commit(self, consumer: Consumer) -> None:
        """Commit the consumer's position on every assigned partition that moved.

        Called only when every record returned so far is settled, so the position (last returned
        offset + 1, or past transaction markers that are never returned) is safe to commit; using
        it rather than the last record's offset lets the group's lag reach zero on partitions
        that end with a transaction marker.
        """
        try:
            positions = consumer.position(consumer.assignment())
        except KafkaException as exc:
            log.warning("%s: cannot read positions: %s", self._config.name, exc)
            return
        moved = [tp for tp in positions
                 if tp.offset >= 0 and self._committed.get((tp.topic, tp.partition)) != tp.offset]
        if not moved:
            return
        try:
            consumer.commit(offsets=moved, asynchronous=False)
        except KafkaException as exc:
            # Typically a rebalance: the new owner consumes these records again (at-least-once).
            log.warning("%s: commit failed, records will be redelivered: %s", self._config.name, exc)
            return
        self._committed.update({(tp.topic, tp.partition): tp.offset for tp in moved})
