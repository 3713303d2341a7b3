"""The worker's side of `peregrine.control`: it publishes its rules' interest for the collectors.

After the rules load at start and after every successful reload, the worker writes the interest of
its running rules (`rules.Ruleset.interest`) as its own record (the key ``interest/<app id>/<replica>``,
`rules.interest_wire`): each replica writes its own, since replicas of a group may run different
rules for a while (a rollout, a SIGHUP that reached some pods), and the collectors keep the union.
When it stops it withdraws its record with a tombstone (`withdraw`), so that a rollout narrows the
nodes' capture only once the old rules stopped running; a worker killed outright cannot, and its
group's leader removes the record once the process has left the group (`streams.control_sweep`).
So when it joins the group under a new member id (`joined`: its first join, or back after the
broker dropped it) it writes its record again: it may have been out long enough to be swept. A
write that fails (the broker away) is retried every few seconds until it succeeds or a newer
interest replaces it.

Records go to partition 0 so that every record of the topic is in one order, whatever the
partition count the topic was given (`bus.topics.CONTROL`). The producer lives only for the write:
a worker writes a handful of records a day. The records of a group killed whole stay (no leader is
left to sweep them), so its events keep being captured: a tombstone of each key (README) removes
them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from typing import Final

from aiokafka import AIOKafkaProducer
from opentelemetry.metrics import Counter

from bus.clients import aiokafka_kwargs
from bus.connection import KafkaConnection
from rules.errors import InterestRecordError
from rules.interest import TypeInterest
from rules.interest_wire import encode, key_of
from streams.logsafe import shown

log = logging.getLogger("peregrine.worker.control")

RETRY_S: Final = 5.0
CONTROL_PARTITION: Final = 0  # every record, so that all are in one order


class InterestPublisher:
    """Writes the interest last `offer`ed (in the event loop) from `run`, the worker's task."""

    def __init__(
        self,
        connection: KafkaConnection,
        topic: str,
        group: str,
        replica: str,
        published: Counter,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self.topic = topic
        self.group = group
        self.replica = replica
        self.digest: str | None = None  # of the interest this process last wrote (None: none stands)
        self._connection = connection
        self._published = published
        self._clock = clock
        self._again = False  # write the next offer even if this process wrote the same
        self._member = ""  # the worker's member id in its group at its last assignment
        self._withdrawn = False
        self._writing = asyncio.Lock()
        self._wanted: Mapping[str, TypeInterest] | None = None
        self._wake = asyncio.Event()

    def offer(self, interest: Mapping[str, TypeInterest]) -> None:
        """The interest to publish (the newest offer wins); returns at once."""
        self._wanted = interest
        self._wake.set()

    def joined(self, member_id: str) -> None:
        """The worker was given partitions as `member_id`. A new one (the first join, or back after
        the broker dropped it) writes the record again: the group's leader may have swept it while
        this worker was not a member. A rebalance that keeps the id writes nothing."""
        if member_id == self._member:
            return
        self._member = member_id
        if self._wanted is not None:
            self._again = True
            self._wake.set()

    async def run(self) -> None:
        """Publish each new offer, forever."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            again, self._again = self._again, False
            if self._wanted is not None and not await self.publish(self._wanted, again=again):
                self._again = self._again or again
                await asyncio.sleep(RETRY_S)
                self._wake.set()

    async def publish(self, interest: Mapping[str, TypeInterest], again: bool = False) -> bool:
        """Write `interest` now unless this process last wrote the same and not `again`; False when
        the write failed (to be retried)."""
        try:
            record = encode(self.group, self.replica, interest, self._clock())
        except InterestRecordError as exc:  # a name no record may carry: retrying cannot mend it
            log.error("the rules' interest cannot be published to %s: %s", self.topic, shown(exc))
            return True
        if record.digest == self.digest and not again:
            return True
        async with self._writing:
            if self._withdrawn:  # stopping: a record written now would outlive the worker
                return True
            written = await self._write(record.key, record.value)
        if not written:
            log.warning("the rules' interest is written again in %.0f s", RETRY_S)
            return False
        if record.digest != self.digest:
            log.info("published the rules' interest to %s: %d event types, digest %s", self.topic,
                     len(interest), record.digest[:16],
                     extra={"event_types": len(interest), "digest": record.digest})  # fmt: skip
        self.digest = record.digest
        return True

    async def withdraw(self) -> None:
        """Remove this process's record (a tombstone), once: the worker is stopping. A failure is
        logged and left: the group's leader sweeps the record once this process has left the group."""
        async with self._writing:  # after a write under way, or the tombstone could land before it
            self._withdrawn = True
            if self.digest is None:
                return
            self.digest = None
            if await self._write(key_of(self.group, self.replica), None):
                log.info("withdrew the rules' interest from %s", self.topic)

    async def _write(self, key: bytes, value: bytes | None) -> bool:
        try:
            await write_record(self._connection, self.topic, key, value)
        except Exception as exc:  # any failure: the collectors keep the interest they have
            self._published.add(1, {"outcome": "failed"})
            log.warning("writing to %s failed: %s", self.topic, shown(f"{type(exc).__name__}: {exc}"))
            return False
        self._published.add(1, {"outcome": "ok"})
        return True


async def write_record(connection: KafkaConnection, topic: str, key: bytes, value: bytes | None) -> None:
    """Write one record (None: a tombstone) to partition 0 and wait for every in-sync replica."""
    producer = AIOKafkaProducer(**aiokafka_kwargs(connection), acks="all", enable_idempotence=True)
    try:
        await producer.start()
        await producer.send_and_wait(topic, value, key=key, partition=CONTROL_PARTITION)
    finally:
        await producer.stop()
