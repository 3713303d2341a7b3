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
from its group, which hands the batch to another member: delivered twice. So once a batch has
taken a tenth of the poll interval (at most `KEEP_ALIVE_AFTER_S`), the runner pauses its partitions
and polls after every request and during every wait between attempts (a paused consumer returns no
records; one that arrives anyway, after a rebalance, is sought back and read again later). A
quicker batch neither pauses nor polls: pausing purges the prefetched records. What must fit
between two polls is then one attempt plus that tenth, and ``max.poll.interval.ms`` is computed
from the destination's own attempt time limit.
Fetch buffers are bounded (a few MB per destination, not librdkafka's 64 MB and 100,000 queued
records), so a storm on the topic cannot grow the sink's memory with it.

A destination with ``aggregate`` passes each routed alert through its `Aggregator` (first of a key
at once, repeats folded into one summary per window) and commits what the aggregator says: up to
the oldest record an open window holds, with the windows in the commit metadata, so a restart
rebuilds them (`sinks.aggregate`). Within a batch, alerts are sent round-robin across keys, and a
paced destination (Slack by default) takes a token per request (`sinks.pacing`).
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
from alerts.wire import encode
from bus import dlq
from bus.clients import IDEMPOTENT_PRODUCER, librdkafka_config
from sinks import escape
from sinks.aggregate import Aggregator, key_values
from sinks.alert import Alert, decode_alert
from sinks.base import Destination
from sinks.config import DestinationConfig, KafkaConfig
from sinks.delivery import Stopped, deliver
from sinks.metrics import SinkMetrics
from sinks.pacing import Paced, TokenBucket, round_robin
from sinks.registry import KINDS
from sinks.suppress import Suppressions
from telemetry.health import Health

log = logging.getLogger("peregrine.sink")

MAX_POLL_INTERVAL_MS = 86_400_000  # librdkafka's ceiling
MIN_POLL_INTERVAL_MS = 300_000  # librdkafka's default: never below it
POLL_MARGIN_S = 60.0  # for building payloads and the DLQ write between two polls
KEEP_ALIVE_AFTER_S = 5.0  # a batch taking longer starts polling (paused) to stay in its group
# librdkafka tuning defaults for the fetch buffers (a YAML `properties` entry overrides them)
FETCH_BOUNDS = {
    "queued.max.messages.kbytes": 8192,
    "fetch.max.bytes": 4 * 1024 * 1024,
    "max.partition.fetch.bytes": 1024 * 1024,
}
# librdkafka's 45 s default kept a restarted sink from its partitions for 45 s after a kill -9 (the
# group waits for the dead member's session to expire): alerts stood still that long. Heartbeats come
# from librdkafka's own thread every 3 s, so a slow destination never costs the session; overridable
# in `properties` like the fetch bounds.
SESSION_TIMEOUT_MS = 10_000
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
        "session.timeout.ms": SESSION_TIMEOUT_MS,
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
        **IDEMPOTENT_PRODUCER,
        "linger.ms": 5,
    }


@dataclass(frozen=True, slots=True)
class Failed:
    """A record bound for the dead-letter topic: a consumed record, or a summary the sink made."""

    message: Message | None  # None: an aggregation summary, written as ``summary``
    reason: str  # short and stable, for grouping: "undecodable alert", "retries exhausted"...
    detail: str  # the error text, secrets already redacted
    attempts: int
    summary: Alert | None = None

    def value(self) -> bytes:
        if self.summary is not None:
            return encode(self.summary)
        return (self.message.value() if self.message is not None else None) or b""


def dlq_headers(failed: Failed, destination: str) -> list[tuple[str, str | bytes | None]]:
    """Why and where from, as headers: the value stays the original alert bytes, replayable as is.

    Header names follow `peregrine.events.dlq` (``peregrine.dlq.*``), plus destination and attempts.
    """
    message = failed.message
    headers: list[tuple[str, str | bytes | None]] = [
        (dlq.REASON, failed.reason.encode()),
        (dlq.DETAIL, escape.clean(failed.detail, DLQ_DETAIL_LIMIT).encode()),
        (dlq.DESTINATION, destination.encode()),
        (dlq.ATTEMPTS, str(failed.attempts).encode()),
    ]
    if message is None:  # a summary has no source record
        return headers
    return headers + [
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
        suppressions: Suppressions | None = None,
        health: Health | None = None,
    ) -> None:
        self._kafka = kafka
        self._config = config
        self._metrics = metrics
        self._stop = stop
        kind = KINDS[config.kind]
        max_batch = config.batch.max_alerts if kind.batches else 1
        opened = destination or kind.open(config.settings, config.value_limit, max_batch)
        self._paced = Paced(opened, TokenBucket(config.pace)) if config.pace is not None else None
        self._destination: Destination = self._paced or opened
        self._rng = rng or random.Random()
        self._attributes = {"destination": config.name}
        self._consumer_config = consumer_properties(kafka, config)
        # (topic, partition) -> (offset, metadata) we committed
        self._committed: dict[tuple[str, int], tuple[int, str]] = {}
        self._aggregator = Aggregator(config.name, config.aggregate) if config.aggregate else None
        self._suppressions = suppressions
        self._health = health or Health()
        # a loop that has not polled within the poll interval has lost its partitions anyway
        self._silence_s = self._consumer_config["max.poll.interval.ms"] / 1000
        self._joined = f"destination {config.name}: consumer group"
        self._loop = f"destination {config.name}: poll loop"
        self._health.waiting(self._joined, "no partitions assigned yet")

    def run(self) -> None:
        consumer = Consumer(self._consumer_config)
        producer = Producer(producer_properties(self._kafka, self._config))
        consumer.subscribe([self._kafka.topic], on_assign=self._assigned, on_revoke=self._revoked)
        log.info("%s: consuming %s as group %s", self._config.name, self._kafka.topic,
                 self._kafka.group_id(self._config.name))
        try:
            while not self._stop.is_set():
                self._health.beat(self._loop, self._silence_s)
                messages = consumer.consume(self._config.batch.max_alerts, self._config.batch.max_wait_s)
                due = self._aggregator.due(idle=not messages) if self._aggregator is not None else []
                if messages or due:
                    self._handle_paused(consumer, producer, messages, due)
                self._commit(consumer)
        except Stopped:
            log.info("%s: stopping with a batch in retry; it will be consumed again", self._config.name)
        finally:
            self._destination.close()
            consumer.close()
            producer.flush(10)

    def _assigned(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Joined (probes); when aggregating, rebuild the open windows from the committed metadata
        (the consumer resumes there)."""
        self._health.holds(self._joined)
        if self._aggregator is None:
            return
        self._committed.clear()
        for tp in consumer.committed(partitions, timeout=30):
            self._aggregator.restore((tp.topic, tp.partition), tp.metadata)
        self._report_open_keys()

    def _revoked(self, _consumer: Consumer, _partitions: list[TopicPartition]) -> None:
        if self._aggregator is None:
            return
        self._aggregator.revoke()
        self._committed.clear()
        self._report_open_keys()

    def _report_open_keys(self) -> None:
        if self._aggregator is not None:
            self._metrics.open_keys.set(self._aggregator.open_keys, self._attributes)

    def _handle_paused(
        self, consumer: Consumer, producer: Producer, messages: Sequence[Message], due: Sequence[Alert] = ()
    ) -> None:
        """`_handle` with the consumer polled whenever the batch waits, its assignment paused from the
        first poll on. Pausing purges librdkafka's prefetched records (a fetch round trip per batch:
        about 200 alerts/s to a file), so a batch that settles within `KEEP_ALIVE_AFTER_S`, far below
        ``max.poll.interval.ms``, neither pauses nor polls."""
        paused = False
        started = time.monotonic()
        # a tenth of the poll interval: what follows still has nine tenths before eviction
        poll_interval_s = self._consumer_config["max.poll.interval.ms"] / 1000
        quiet_s = min(KEEP_ALIVE_AFTER_S, poll_interval_s / 10)

        def keep_alive() -> None:
            nonlocal paused
            if not paused and time.monotonic() - started < quiet_s:
                return
            if not paused:
                consumer.pause(consumer.assignment())
                paused = True
            self._health.beat(self._loop, self._silence_s)
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
            self._handle(producer, messages, wait, keep_alive, due)
        finally:
            if paused:
                consumer.resume(consumer.assignment())

    def _handle(
        self,
        producer: Producer,
        messages: Sequence[Message],
        wait: Callable[[float], bool] | None = None,
        between: Callable[[], None] | None = None,
        due: Sequence[Alert] = (),
    ) -> None:
        """Settle every record: delivered, folded, filtered out, or acknowledged by the dead-letter
        topic; ``due`` are summaries of windows whose time is up, sent first."""
        routed: list[tuple[Message | None, Alert]] = [(None, summary) for summary in due]
        dead: list[Failed] = []
        filtered = suppressed = 0
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
            where = (message.topic() or "", message.partition() or 0)
            offset = message.offset() or 0
            if self._suppressions is not None and self._suppressions.matches(alert, self._config.name,
                                                                             time.time_ns()):
                suppressed += 1
                if self._aggregator is not None:
                    self._aggregator.suppress(where, offset, alert)
                continue
            if self._aggregator is None:
                routed.append((message, alert))
                continue
            routed += [(message if out is alert else None, out)
                       for out in self._aggregator.offer(where, offset, alert)]
        sent: list[tuple[Message | None, Alert]] = []  # parallel to payloads
        payloads: list[bytes] = []
        names = self._config.aggregate.key if self._config.aggregate is not None else ()
        for source, alert in round_robin(routed, lambda entry: key_values(entry[1], names)):
            try:
                payloads.append(self._destination.build(alert))
            except Exception as exc:  # a builder defect must not stall the partition
                log.exception("%s: cannot build alert %s", self._config.name, alert.uuid)
                dead.append(Failed(source, BUILD_FAILED, f"{type(exc).__name__}: {exc}", 0,
                                   alert if source is None else None))
                continue
            sent.append((source, alert))
        if self._aggregator is not None:
            folded, summaries = self._aggregator.take_counts()
            if folded:
                self._metrics.folded.add(folded, self._attributes)
            if summaries:
                self._metrics.summaries.add(summaries, self._attributes)
            self._report_open_keys()
        if self._paced is not None:
            self._paced.wait = wait or self._stop_aware_wait
        report = deliver(self._destination, payloads, self._config.retry, wait or self._stop_aware_wait,
                         self._rng, self._metrics, self._attributes, self._config.batch.max_bytes, between)
        now_ns = time.time_ns()
        for i in report.accepted:
            self._metrics.latency.record(max(0, now_ns - sent[i][1].time_ns) / 1e9, self._attributes)
        self._metrics.delivered.add(len(report.accepted), self._attributes)
        if filtered:
            self._metrics.filtered.add(filtered, self._attributes)
        if suppressed:
            self._metrics.suppressed.add(suppressed, self._attributes)
        dead += [Failed(sent[d.index][0], d.reason, d.detail, d.attempts,
                        sent[d.index][1] if sent[d.index][0] is None else None) for d in report.dead]
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
            origin = (f"{first.message.topic()}[{first.message.partition()}]@{first.message.offset()}"
                      if first.message is not None else "a summary")
            log.warning("%s: %d alert(s) to %s (first: %s after %d attempt(s): %s: %s)",
                        self._config.name, len(pending), self._kafka.dlq_topic, origin, first.attempts,
                        first.reason, escape.clean(first.detail, DLQ_DETAIL_LIMIT))
            for entry in pending:
                message = entry.message

                def on_delivery(
                    err: KafkaError | None, _msg: Message, entry: Any = entry, failures: list[Any] = failures
                ) -> None:
                    if err is not None:
                        failures.append(entry)

                producer.produce(self._kafka.dlq_topic, value=entry.value(),
                                 key=message.key() if message is not None else None,
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
        wanted = {(tp.topic, tp.partition): (tp.offset, "") for tp in positions if tp.offset >= 0}
        if self._aggregator is not None:  # hold back what open windows hold; windows in the metadata
            wanted = self._aggregator.commits((key, offset) for key, (offset, _) in wanted.items())
        moved = [TopicPartition(topic, partition, offset, metadata=metadata)
                 for (topic, partition), (offset, metadata) in wanted.items()
                 if self._committed.get((topic, partition)) != (offset, metadata)]
        if not moved:
            return
        try:
            consumer.commit(offsets=moved, asynchronous=False)
        except KafkaException as exc:
            # Typically a rebalance: the new owner consumes these records again (at-least-once).
            log.warning("%s: commit failed, records will be redelivered: %s", self._config.name, exc)
            return
        self._committed.update({(tp.topic, tp.partition): (tp.offset, tp.metadata or "") for tp in moved})
