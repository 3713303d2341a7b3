"""Suppressions: silence alerts matching a key until a time, from the file or the control topic.

A suppression matches an alert when every ``match`` entry's glob matches the alert's value (names
as aggregation keys: ``rule``, ``hostname``, ``priority``, ``source`` or an output field), it has not
expired, and it names the destination (or names none: every destination). A suppressed alert is not
delivered; it is counted (``peregrine.sink.suppressed``) and, on an aggregating destination,
reported in the next summary of its key ("and 12 suppressed").

Two sources, merged: the YAML file's ``suppress`` list, and the compacted control topic
``peregrine.sink.suppressions`` (key = the suppression's id, a hash of what it matches and where;
value = JSON), which `peregrine sink suppress --match rule=... --for 2h` appends to. Every sink reads
the topic from its beginning at start, before delivering anything, then follows it; a record with
the same id replaces the previous one, so ``--for 0`` lifts a suppression.

The metric is exact per process; the count a summary reports is not rebuilt after a restart (a
suppression depends on the wall clock, so re-reading cannot tell what it silenced then): alerts
suppressed while their key's window was open before a kill -9 are missing from that summary.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Final

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, TopicPartition

from bus.clients import librdkafka_config
from bus.connection import KafkaConnection
from sinks.aggregate import field_value
from sinks.alert import Alert
from sinks.errors import ConfigError

log = logging.getLogger("peregrine.sink")

READY_TIMEOUT_S: Final = 30.0  # longest a sink waits to read the topic before it starts anyway


@dataclass(frozen=True, slots=True)
class Suppression:
    match: tuple[tuple[str, str], ...]  # (name, glob), all must match
    until_ns: int  # epoch nanoseconds
    destinations: tuple[str, ...] = ()  # empty: every destination
    reason: str = ""

    @property
    def id(self) -> str:
        what = "\x1f".join([*(f"{n}={g}" for n, g in self.match), "@", *self.destinations])
        return hashlib.blake2b(what.encode(), digest_size=8).hexdigest()

    def applies(self, alert: Alert, destination: str, now_ns: int) -> bool:
        if now_ns >= self.until_ns or (self.destinations and destination not in self.destinations):
            return False
        return all(fnmatchcase(str(field_value(alert, name)), glob) for name, glob in self.match)


def encode_record(suppression: Suppression) -> tuple[bytes, bytes]:
    """(key, value) of the control topic record."""
    value = {"match": dict(suppression.match), "until_ns": suppression.until_ns,
             "destinations": list(suppression.destinations), "reason": suppression.reason}
    return suppression.id.encode(), json.dumps(value, sort_keys=True).encode()


def decode_record(value: bytes) -> Suppression:
    """The suppression a control record holds; ConfigError naming the problem otherwise."""
    try:
        doc = json.loads(value)
        match = doc["match"]
        destinations = doc.get("destinations", [])
        if not (isinstance(match, dict) and match and all(isinstance(v, str) for v in match.values())):
            raise ValueError("match must map names to globs")
        if not (isinstance(destinations, list) and all(isinstance(d, str) for d in destinations)):
            raise ValueError("destinations must be a list of names")
        return Suppression(tuple(sorted(match.items())), int(doc["until_ns"]), tuple(destinations),
                           str(doc.get("reason", ""))[:200])
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"suppression record: {exc}") from None


class Suppressions:
    """The suppressions in force: the file's, and the control topic's by id. Thread-safe."""

    def __init__(self, static: Iterable[Suppression] = ()) -> None:
        self._static = tuple(static)
        self._followed: dict[str, Suppression] = {}
        self._lock = threading.Lock()
        self.ready = threading.Event()  # set once the topic was read to its end (or given up on)

    def put(self, key: str, suppression: Suppression | None) -> None:
        with self._lock:
            if suppression is None:
                self._followed.pop(key, None)
            else:
                self._followed[key] = suppression

    def matches(self, alert: Alert, destination: str, now_ns: int) -> bool:
        with self._lock:
            followed = tuple(self._followed.values())
        return any(s.applies(alert, destination, now_ns) for s in (*self._static, *followed))


def follow(connection: KafkaConnection, topic: str, into: Suppressions, stop: threading.Event) -> None:
    """Read ``topic`` from its beginning into ``into`` until ``stop``; ``into.ready`` at its end."""
    consumer = Consumer({**librdkafka_config(connection), "group.id": "peregrine-sink-suppressions",
                         "enable.auto.commit": False, "enable.partition.eof": True})
    try:
        try:
            partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        except KafkaException as exc:
            log.warning("suppressions: cannot read %s (%s); only the file's apply", topic, exc)
            into.ready.set()
            return
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        pending = set(partitions)
        if not pending:
            into.ready.set()
        while not stop.is_set():
            message = consumer.poll(0.5)
            if message is not None:
                _apply(message, into, pending)
    finally:
        consumer.close()


def _apply(message: Message, into: Suppressions, pending: set[int]) -> None:
    error = message.error()
    if error is not None:
        if error.code() == KafkaError._PARTITION_EOF:
            pending.discard(message.partition() or 0)
            if not pending:
                into.ready.set()
        else:
            log.warning("suppressions: %s", error)
        return
    key = (message.key() or b"").decode("utf-8", "replace")
    value = message.value()
    if value is None:  # a tombstone
        into.put(key, None)
        return
    try:
        into.put(key, decode_record(value))
    except ConfigError as exc:
        log.warning("suppressions: record %s@%d skipped: %s", key[:40], message.offset(), exc)
