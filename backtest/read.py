"""Reading `peregrine.events` by time, without a trace on the bus.

`plan` turns a time window into one offset span per partition: the start is the first offset whose
timestamp is at or after ``since`` (Kafka's ``offsets_for_times``), the end is the partition's end
offset when the plan is made, or the first offset at or after ``until``. Spans are read with
`assign()` (no group membership, no rebalance), ``enable.auto.commit=false`` and no commit call,
under a fresh group id that librdkafka wants but the broker never hears of: the worker's group, and
every other, is left exactly as it was. Batches produced after the plan are not read.

The window is what the broker's timestamp index says: record timestamps are the producers' clocks
(CreateTime), so a batch stamped out of order within a partition is counted by its offset's place.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final

from confluent_kafka import Consumer, KafkaException, TopicPartition

from backtest.errors import ReadError
from bus import topics
from bus.clients import librdkafka_config
from bus.connection import KafkaConnection

_CONSUME_BATCH: Final = 500
_POLL_S: Final = 0.5


@dataclass(frozen=True, slots=True, order=True)
class Span:
    """Offsets [start, end) of one partition."""

    partition: int
    start: int
    end: int

    @property
    def size(self) -> int:
        return max(0, self.end - self.start)


@dataclass(frozen=True, slots=True)
class Record:
    partition: int
    offset: int
    value: bytes


def consumer(connection: KafkaConnection) -> Any:  # confluent_kafka.Consumer (untyped)
    """A consumer that can only read: never subscribes, never commits, never stores offsets."""
    return Consumer(
        {
            **librdkafka_config(connection),
            # assign() needs no group; librdkafka insists on an id: a fresh one, never committed
            "group.id": f"peregrine-backtest-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "enable.partition.eof": False,
            "auto.offset.reset": "earliest",  # a start deleted by retention meanwhile: the earliest left
            "max.partition.fetch.bytes": 8 * 1024 * 1024,
            "fetch.max.bytes": 64 * 1024 * 1024,
        }
    )


def plan(
    connection: KafkaConnection, topic: str, since_ms: int, until_ms: int | None, timeout_s: float = 30.0
) -> list[Span]:
    """One span per partition of `topic` for the window [since, until) (until None: to the end now)."""
    c = consumer(connection)
    try:
        partitions = _partitions(c, topic, timeout_s)
        ends = {p: _high(c, topic, p, timeout_s) for p in partitions}
        starts = _offsets_at(c, topic, partitions, since_ms, ends, timeout_s)
        stops = ends if until_ms is None else _offsets_at(c, topic, partitions, until_ms, ends, timeout_s)
        return [Span(p, starts[p], min(stops[p], ends[p])) for p in partitions]
    finally:
        c.close()


def read(
    connection: KafkaConnection, topic: str, spans: Sequence[Span], stall_s: float = 60.0
) -> Iterator[Record]:
    """Every record of the spans, in offset order per partition (partitions interleaved). ReadError
    when nothing arrives for `stall_s` seconds while spans are unfinished."""
    todo = {s.partition: s for s in spans if s.size}
    if not todo:
        return
    c = consumer(connection)
    try:
        c.assign([TopicPartition(topic, s.partition, s.start) for s in todo.values()])
        last_progress = time.monotonic()
        while todo:
            messages = c.consume(_CONSUME_BATCH, _POLL_S)
            for m in messages:
                error = m.error()
                if error is not None:
                    if topics.transient(error):
                        continue  # librdkafka retries these itself
                    raise ReadError(f"topic {topic}: read failed: {error.str()}")
                span = todo.get(m.partition())
                offset = m.offset()
                if span is None or offset >= span.end:
                    continue  # produced after the plan, or a partition already done
                value = m.value()
                if value is not None:
                    yield Record(span.partition, offset, value)
            if messages:
                last_progress = time.monotonic()
            # Positions, not the last offsets seen: a transaction marker can be a span's last offset.
            done = [tp.partition for tp in c.position([TopicPartition(topic, p) for p in todo])
                    if tp.offset >= todo[tp.partition].end]  # fmt: skip
            if done:
                c.incremental_unassign([TopicPartition(topic, p) for p in done])
                for p in done:
                    del todo[p]
            elif time.monotonic() - last_progress > stall_s:
                left = ", ".join(f"{p}@{s.start}..{s.end}" for p, s in sorted(todo.items()))
                raise ReadError(f"topic {topic}: nothing read for {stall_s:.0f}s with spans left ({left})")
    finally:
        c.close()


def _partitions(c: Any, topic: str, timeout_s: float) -> list[int]:
    meta = _retry(lambda: c.list_topics(topic, timeout=timeout_s), topic, timeout_s).topics.get(topic)
    if meta is None or meta.error is not None or not meta.partitions:
        why = meta.error.str() if meta is not None and meta.error is not None else "no partitions"
        raise ReadError(f"topic {topic}: not found ({why})")
    return sorted(meta.partitions)


def _high(c: Any, topic: str, partition: int, timeout_s: float) -> int:
    tp = TopicPartition(topic, partition)
    _, high = _retry(lambda: c.get_watermark_offsets(tp, timeout=timeout_s), topic, timeout_s)
    return int(high)


def _offsets_at(
    c: Any, topic: str, partitions: list[int], ms: int, ends: dict[int, int], timeout_s: float
) -> dict[int, int]:
    """The first offset at or after `ms` per partition; the end when no record is that recent."""
    asked = [TopicPartition(topic, p, ms) for p in partitions]
    found = _retry(lambda: c.offsets_for_times(asked, timeout=timeout_s), topic, timeout_s)
    return {tp.partition: ends[tp.partition] if tp.offset < 0 else tp.offset for tp in found}


def _retry(call: Any, topic: str, timeout_s: float) -> Any:
    """A topic created a moment ago may have no leader yet: transient errors are retried a while."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return call()
        except KafkaException as exc:
            error = exc.args[0]
            if not topics.transient(error) or time.monotonic() > deadline:
                raise ReadError(f"topic {topic}: cannot read its offsets: {error.str()}") from None
            time.sleep(0.2)
