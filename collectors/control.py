"""The collector's side of `peregrine.control`: follow what the workers' rules need of this node.

A thread reads the topic from its beginning (group-less: nothing is committed, so every start sees
the latest record of every key), keeps the latest good interest of each key, one per worker process
(`rules.interest_wire`), and computes the EFFECTIVE interest: the union over the records (`union`),
since a node must keep what any running worker's rules need, whatever its group and whether or not
its replicas agree (a rollout runs old and new rules side by side). Only once it has read to the
end of the topic does it hand the effective interest on, so a start never passes through one
worker's interest on its way to the union; after that every change goes on at once.
`on_interest` is called, in the follower's thread, only when the effective interest changes.

* No worker has a record (a collector started before any worker, or every record withdrawn): the
  fallback, the interest of the collector's own ``--rules`` files (None: every event of the traced
  types).
* A record that does not decode is counted (`rejected`, peregrine.collector.control.rejected) and
  logged (bounded), and its key keeps its last good interest: garbage never narrows the capture.
  (Compaction may in time leave only the garbage of a key; a follower started after that has no
  record of that worker.)
* A tombstone removes its record (a worker that stopped, or one its group's leader found gone); a
  key of another kind (not ``interest/``) is not this module's.
* The topic missing, the broker away, a read failing: the effective interest stays as it is and
  the follower tries again every few seconds, from the beginning of the topic.

The consumer's fetches wait up to `FETCH_WAIT_MS` at the broker, which answers as soon as a record
arrives: an update reaches the node at once, and 10,000 idle nodes cost the partition's leader
about 1,000 fetches a second.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Final

from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, TopicPartition

from bus.acls import CONTROL_READER_GROUP
from bus.clients import librdkafka_config
from bus.connection import KafkaConnection
from collectors.config import CollectorConfig
from collectors.metrics import ControlMetrics, control_metrics
from rules.errors import InterestRecordError
from rules.interest import MAX_VALUES, Alternative, FieldInterest, TypeInterest, narrowed
from rules.interest_wire import InterestRecord, decode, is_interest_key

log = logging.getLogger("peregrine.collector.control")

Interest = Mapping[str, TypeInterest]
OnInterest = Callable[[Interest | None], None]

RETRY_S: Final = 5.0
FETCH_WAIT_MS: Final = 10_000
_POLL_S: Final = 0.5  # how soon `stop` is noticed
_REQUEST_S: Final = 2.0  # per metadata or offsets request, so that `stop` is not kept waiting either
_WARN_EVERY_S: Final = 60.0
_SHOWN_CHARS: Final = 300


def union(interests: Iterable[Interest]) -> dict[str, TypeInterest]:
    """What passes any one of `interests`: every type any names; per type, only the fields each
    interest naming it constrains, with all their values (a field past MAX_VALUES is freed, as
    `rules.interest` does), and, when every interest naming it has alternatives, all of them, each
    with the fields of the interest it came from (`narrowed` merges them down to MAX_ALTERNATIVES);
    one without alternatives leaves the type none. One interest alone is its own union."""
    out: dict[str, TypeInterest] = {}
    for interest in interests:
        for name, wanted in interest.items():
            have = out.get(name)
            out[name] = wanted if have is None else _either(have, wanted)
    return out


def _folded(wanted: TypeInterest) -> tuple[Alternative, ...]:
    """The type's alternatives, each also requiring the type's fields it does not constrain itself:
    once the fields are widened by a union, an alternative still carries what its interest
    required."""
    out = []
    for alt in wanted.alternatives:
        named = {f.field for f in alt.fields}
        fields = (*alt.fields, *(f for f in wanted.fields if f.field not in named))
        out.append(Alternative(tuple(sorted(fields, key=lambda f: f.field)), alt.accmodes, alt.succeeded))
    return narrowed(out)


def _either(a: TypeInterest, b: TypeInterest) -> TypeInterest:
    theirs = {f.field: f for f in b.fields}
    fields = []
    for mine in a.fields:
        other = theirs.get(mine.field)
        if other is None:
            continue
        merged = FieldInterest(mine.field, mine.exact | other.exact, mine.prefixes | other.prefixes,
                               mine.suffixes | other.suffixes, mine.contains | other.contains)  # fmt: skip
        kinds = (merged.exact, merged.prefixes, merged.suffixes, merged.contains)
        if sum(len(k) for k in kinds) <= MAX_VALUES:
            fields.append(merged)
    left, right = _folded(a), _folded(b)  # () when one has none, or one requiring nothing
    alternatives = narrowed((*left, *right)) if left and right else ()
    return TypeInterest(a.event_type, tuple(fields), alternatives, a.fd_table or b.fd_table)


class Handover:
    """The newest interest the follower's thread handed over, for the capture loop to apply: bcc's
    objects are not thread-safe. An older one not yet taken is replaced (the newest is what the
    workers want now)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting = False
        self._interest: Interest | None = None

    def put(self, interest: Interest | None) -> None:
        with self._lock:
            self._interest, self._waiting = interest, True

    def ready(self) -> bool:
        return self._waiting

    def take(self) -> Interest | None:
        with self._lock:
            interest, self._interest, self._waiting = self._interest, None, False
        return interest


class ControlFollower:
    """Follows `topic` in a thread of its own from `start` to `stop`."""

    def __init__(
        self,
        connection: KafkaConnection,
        topic: str,
        fallback: Interest | None,
        on_interest: OnInterest,
        metrics: ControlMetrics | None = None,
    ) -> None:
        self.topic = topic
        self.fallback = fallback
        self.effective: Interest | None = fallback  # what on_interest was last given (or the fallback)
        self.rejected = 0  # records that did not decode
        self.caught_up = threading.Event()  # set once the topic was read to its end
        self._connection = connection
        self._on_interest = on_interest
        self._metrics = metrics
        self._stop = threading.Event()
        self._refallback = threading.Event()
        self._thread = threading.Thread(target=self._run, name="peregrine-control", daemon=True)
        self._warned_at = -_WARN_EVERY_S

    def start(self) -> ControlFollower:
        self._thread.start()
        return self

    def replace_fallback(self, fallback: Interest | None) -> None:
        """A new fallback (the collector's rules files read again), handed on when no worker has a
        record."""
        self.fallback = fallback
        self._refallback.set()

    def stop(self, timeout_s: float = 10.0) -> None:
        """End the thread and close its consumer (its threads must end before the process does)."""
        self._stop.set()
        self._thread.join(timeout_s)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._follow()
            except Exception as exc:  # any failure: capture goes on with the interest it has
                self._warn("following %s failed, again from its beginning in %.0f s: %s", self.topic, RETRY_S,
                           _shown(f"{type(exc).__name__}: {exc}"))  # fmt: skip
                self._stop.wait(RETRY_S)

    def _follow(self) -> None:
        consumer = Consumer({
            **librdkafka_config(self._connection),
            # librdkafka wants a group id even for assign(); nothing joins or commits it
            "group.id": CONTROL_READER_GROUP,
            "enable.auto.commit": False,
            "fetch.wait.max.ms": FETCH_WAIT_MS,
            # Kafka away: said once a minute here (the publisher says it too), not by librdkafka's
            # own lines on every reconnect
            "error_cb": lambda error: self._warn("%s: %s", self.topic, _shown(error.str())),
            "log_level": 2,
        })  # fmt: skip
        try:
            partitions = self._partitions(consumer)
            # the end offsets now, not an end-of-partition event: that comes only with a fetch that
            # found nothing, i.e. after the whole FETCH_WAIT_MS
            pending = self._ends(consumer, partitions)
            consumer.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in partitions])
            records: dict[bytes, InterestRecord] = {}  # by key: one per worker process
            dirty = True
            while not self._stop.is_set():
                for message in consumer.consume(500, timeout=_POLL_S):
                    dirty = self._read(message, records) or dirty
                if self._refallback.is_set():
                    self._refallback.clear()
                    dirty = True
                if pending:
                    self._advance(consumer, pending)
                if dirty and not pending:
                    dirty = not self._settle(records)
        finally:
            consumer.close()

    def _ends(self, consumer: Consumer, partitions: list[int]) -> dict[int, int]:
        """partition -> its end offset, for the partitions that hold records."""
        ends = {}
        for p in partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(self.topic, p), timeout=_REQUEST_S)
            if high > low:
                ends[p] = high
        return ends

    def _advance(self, consumer: Consumer, pending: dict[int, int]) -> None:
        """Forget the partitions read to the end they had at start. Positions, not the last offsets
        seen: compaction may have removed the last records."""
        for tp in consumer.position([TopicPartition(self.topic, p) for p in pending]):
            if tp.offset >= pending[tp.partition]:
                del pending[tp.partition]

    def _partitions(self, consumer: Consumer) -> list[int]:
        """The topic's partitions, once it exists (empty when stopped meanwhile)."""
        while not self._stop.is_set():
            meta = consumer.list_topics(self.topic, timeout=_REQUEST_S).topics.get(self.topic)
            if meta is not None and meta.error is None and meta.partitions:
                return sorted(meta.partitions)
            why = "no metadata" if meta is None else (meta.error.str() if meta.error else "no partitions")
            self._warn("%s cannot be read yet (%s); keeping the capture interest as it is", self.topic, why)
            self._stop.wait(RETRY_S)
        return []

    def _read(self, message: Message, records: dict[bytes, InterestRecord]) -> bool:
        """Fold one message in; whether the records changed."""
        error = message.error()
        if error is not None:
            self._warn("reading %s: %s", self.topic, _shown(error.str()))
            return False
        key = message.key() or b""
        value = message.value()
        if not is_interest_key(key):  # another kind of control record
            return False
        if value is None:  # a tombstone: the worker is gone
            return records.pop(key, None) is not None
        try:
            records[key] = decode(key, value)
        except InterestRecordError as exc:
            self._reject(message, exc)
            return False
        return True

    def _settle(self, records: Mapping[bytes, InterestRecord]) -> bool:
        """Hand the effective interest on if it changed; False when `on_interest` failed (tried again
        at the next poll)."""
        # replicas with the same rules carry the same digest: one union per distinct interest
        distinct = {r.digest: r.interest for r in records.values()}
        effective = union(distinct.values()) if records else self.fallback
        if effective != self.effective:
            try:
                self._on_interest(effective)
            except Exception as exc:  # whatever applies it: the follower must outlive it
                self._warn("applying the interest from %s failed: %s", self.topic,
                           _shown(f"{type(exc).__name__}: {exc}"))  # fmt: skip
                return False
            self.effective = effective
        if not self.caught_up.is_set():
            groups = {r.group for r in records.values()}
            log.info("%s read to its end: %d worker groups, %d worker records", self.topic, len(groups),
                     len(records))  # fmt: skip
            self.caught_up.set()
        return True

    def _reject(self, message: Message, exc: InterestRecordError) -> None:
        self.rejected += 1
        if self._metrics is not None:
            self._metrics.rejected.add(1)
        if self.rejected == 1 or self.rejected % 100 == 0:
            log.warning("%s: record at offset %d rejected (%d so far), its key keeps its last interest: %s",
                        self.topic, message.offset() or 0, self.rejected, _shown(str(exc)))  # fmt: skip

    def _warn(self, text: str, *args: object) -> None:
        """A warning at most once a minute: a broker away must not flood the node's log."""
        now = time.monotonic()
        if now - self._warned_at >= _WARN_EVERY_S:
            self._warned_at = now
            log.warning(text, *args)


def _shown(text: str) -> str:
    """A value from the broker or a record, for a log line: one line, bounded."""
    flat = " ".join(text.split())
    return flat if len(flat) <= _SHOWN_CHARS else flat[:_SHOWN_CHARS] + "…"


def announcer(metrics: ControlMetrics) -> OnInterest:
    """The callback that says what changed: a log line (counts, not the values) and the metric."""

    def announce(interest: Interest | None) -> None:
        metrics.updates.add(1)
        if interest is None:
            log.info("capture interest: every event of the traced types (no worker has a record)")
            return
        fields = [f for t in interest.values() for f in t.fields]
        values = sum(len(f.exact) + len(f.prefixes) + len(f.suffixes) + len(f.contains) for f in fields)
        alternatives = sum(len(t.alternatives) for t in interest.values())
        names = sorted(interest)
        shown = ", ".join(names[:20]) + (f" and {len(names) - 20} more" if len(names) > 20 else "")
        log.info("capture interest changed: %d event types (%s), %d constrained fields, %d values, "
                 "%d alternatives", len(names), shown, len(fields), values, alternatives,
                 extra={"event_types": len(names), "fields": len(fields), "values": values,
                        "alternatives": alternatives})  # fmt: skip

    return announce


def follow(config: CollectorConfig, apply: OnInterest | None = None) -> ControlFollower | None:
    """Start following `config.control_topic` (None when the collector does not follow it): each
    change is given to `apply`, then announced (`announcer`)."""
    if config.control_topic is None:
        return None
    metrics = control_metrics()
    announce = announcer(metrics)

    def on_interest(interest: Interest | None) -> None:
        if apply is not None:
            apply(interest)
        announce(interest)

    return ControlFollower(config.kafka, config.control_topic, config.interest, on_interest, metrics).start()
