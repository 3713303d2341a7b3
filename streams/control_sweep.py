"""The group leader's sweep of `peregrine.control`: remove the records of its group's workers that
are gone.

A worker withdraws its own record when it stops (`streams.control`); one killed outright (kill -9,
out of memory, its node lost) cannot, and its rules' interest would keep every node's capture wide
for good. So every quarter of `grace` the group's leader (the member holding partition 0 of the
events topic: Faust's own leader topic is off, `streams.app`) reads the topic, asks the broker who
the group's members are (each worker's Kafka client id names its replica, `client_id`), and writes
a tombstone for each record of its group whose replica has not been a member for `grace` seconds:
time for a worker that has written its record but not yet joined (a start, a rebalance), short
enough that a dead worker's rules do not keep the nodes wide all day. A record from before
replicas (version 2: the group's one key) goes once every member writes its own.

Nothing is swept while the group is not Stable (its member list is in flux during a rebalance), nor
when a read fails: only the workers' presence narrows the capture, never an error. A group killed
whole has no leader left, so its records stay and its events keep being captured.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from bus.clients import aiokafka_kwargs
from bus.connection import KafkaConnection
from rules.errors import InterestRecordError
from rules.interest_wire import decode, is_interest_key
from streams.control import CONTROL_PARTITION, write_record
from streams.logsafe import shown

log = logging.getLogger("peregrine.worker.control")

CLIENT_PREFIX: Final = "peregrine-worker/"  # a worker's Kafka client id: this and its replica
_REQUEST_S: Final = 30.0
_GAP_S: Final = 60.0  # the longest a read of the topic may go without a record before it gives up


def client_id(replica: str) -> str:
    """The Kafka client id a worker process uses (Faust's consumer and producers): the broker
    reports it for each member of the group, so the leader can tell whose records are live."""
    return CLIENT_PREFIX + replica


@dataclass
class Absences:
    """Since when (monotonic seconds) each record's writer has been missing from the group, as the
    leader saw it; forgotten when the writer is back, its record gone, or another worker leads."""

    since: dict[bytes, float] = field(default_factory=dict)

    def gone(self, records: Mapping[bytes, str | None], members: Iterable[str], now: float,
             grace: float) -> list[bytes]:  # fmt: skip
        """The keys of `records` (key -> the replica that wrote it, None for a version-2 record)
        whose writer has been missing for `grace` seconds by `now`, given the group's members'
        client ids."""
        clients = set(members)
        out = []
        for key in list(self.since):
            if key not in records:
                del self.since[key]
        for key, replica in records.items():
            if _present(replica, clients):
                self.since.pop(key, None)
                continue
            first = self.since.setdefault(key, now)
            if now - first >= grace:
                out.append(key)
        return out


def _present(replica: str | None, clients: set[str]) -> bool:
    """Whether the writer of a record is a member (None, a version-2 record: whether some member is
    a worker from before replicas)."""
    if replica is None:
        return any(not c.startswith(CLIENT_PREFIX) for c in clients)
    return client_id(replica) in clients


@dataclass
class Sweeper:
    connection: KafkaConnection
    topic: str
    group: str
    grace: float
    is_leader: Callable[[], bool]
    on_swept: Callable[[int], None] = lambda n: None
    absences: Absences = field(default_factory=Absences)

    async def run(self) -> None:
        """Sweep every quarter of `grace`, forever, while this worker leads its group."""
        while True:
            await asyncio.sleep(self.grace / 4)
            if not self.is_leader():
                self.absences = Absences()  # another worker's view now; start afresh if it comes back
                continue
            try:
                await self.sweep()
            except Exception as exc:  # any failure: nothing swept, tried again next time
                log.warning("sweeping %s failed: %s", self.topic, shown(f"{type(exc).__name__}: {exc}"))

    async def sweep(self) -> list[bytes]:
        """One sweep; the keys it wrote tombstones for."""
        members = await _stable_members(self.connection, self.group)
        if members is None:
            return []
        records = await self._group_records()
        gone = self.absences.gone(records, members, time.monotonic(), self.grace)
        if gone:  # asked again just before: a worker back meanwhile keeps its record
            now = await _stable_members(self.connection, self.group)
            clients = set(now or ())
            gone = [] if now is None else [k for k in gone if not _present(records[k], clients)]
        for key in gone:
            await write_record(self.connection, self.topic, key, None)
            self.absences.since.pop(key, None)
            log.info("removed the interest of a worker gone from group %s for %.0f s: %s", self.group,
                     self.grace, shown(key))  # fmt: skip
        if gone:
            self.on_swept(len(gone))
        return gone

    async def _group_records(self) -> dict[bytes, str | None]:
        """The live records of this group: key -> the replica that wrote it (None: version 2)."""
        latest = await _read_latest(self.connection, self.topic)
        out: dict[bytes, str | None] = {}
        for key, value in latest.items():
            if value is None or not is_interest_key(key):
                continue
            try:
                record = decode(key, value)
            except InterestRecordError:  # garbage is the collectors' to count; nothing to sweep
                continue
            if record.group == self.group:
                out[key] = record.replica
        return out


async def _stable_members(connection: KafkaConnection, group: str) -> list[str] | None:
    """The client ids of the group's members, or None when the group is not Stable."""
    admin = AIOKafkaAdminClient(**aiokafka_kwargs(connection), request_timeout_ms=int(_REQUEST_S * 1000))
    await admin.start()
    try:
        responses = await admin.describe_consumer_groups([group])
    finally:
        await admin.close()
    for response in responses:
        for described in response.to_object()["groups"]:
            if described["group"] != group:
                continue
            if described["error_code"] != 0:
                raise RuntimeError(f"describing group {group} failed: Kafka error {described['error_code']}")
            if described["state"] != "Stable":
                return None
            return [str(m["client_id"]) for m in described["members"]]
    return None


async def _read_latest(connection: KafkaConnection, topic: str) -> dict[bytes, bytes | None]:
    """The latest value of every key on partition 0 (the only one workers write, `streams.control`),
    read group-less to the end it had at the start."""
    consumer = AIOKafkaConsumer(enable_auto_commit=False, auto_offset_reset="earliest", group_id=None,
                                **aiokafka_kwargs(connection))  # fmt: skip
    await consumer.start()
    try:
        tp = TopicPartition(topic, CONTROL_PARTITION)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        latest: dict[bytes, bytes | None] = {}
        while await consumer.position(tp) < end:
            messages = await consumer.getmany(tp, timeout_ms=int(_GAP_S * 1000), max_records=10_000)
            if not messages:
                raise TimeoutError(f"no record of {topic} in {_GAP_S:.0f} s before its end")
            for m in messages.get(tp, []):
                if m.key is not None:
                    latest[m.key] = m.value
        return latest
    finally:
        await consumer.stop()
