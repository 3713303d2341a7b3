"""The worker's side of `peregrine.control`: it publishes its rules' interest for the collectors.

After the rules load at start and after every successful reload, the worker writes the interest of
its running rules (`rules.Ruleset.interest`) as the record of its group (its app id, the key
``interest/<app id>``, `rules.interest_wire`), only when it differs from what this process last
wrote (the record's digest). Every replica of a group does so; they write the same interest, so
whichever is last is right. A write that fails (the broker away) is retried every few seconds until
it succeeds or a newer interest replaces it.

Records go to partition 0 so that every record of the topic is in one order, whatever the
partition count the topic was given (`bus.topics.CONTROL`). The producer lives only for the write:
a worker writes a handful of records a day. The group's record stays after its workers are gone,
so its events keep being captured: a tombstone of its key (README) removes it.
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
from rules.interest_wire import encode
from streams.logsafe import shown

log = logging.getLogger("peregrine.worker.control")

RETRY_S: Final = 5.0
_PARTITION: Final = 0


class InterestPublisher:
    """Writes the interest last `offer`ed (in the event loop) from `run`, the worker's task."""

    def __init__(
        self,
        connection: KafkaConnection,
        topic: str,
        group: str,
        published: Counter,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self.topic = topic
        self.group = group
        self.digest: str | None = None  # of the interest this process last wrote
        self._connection = connection
        self._published = published
        self._clock = clock
        self._wanted: Mapping[str, TypeInterest] | None = None
        self._wake = asyncio.Event()

    def offer(self, interest: Mapping[str, TypeInterest]) -> None:
        """The interest to publish (the newest offer wins); returns at once."""
        self._wanted = interest
        self._wake.set()

    async def run(self) -> None:
        """Publish each new offer, forever."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self._wanted is not None and not await self.publish(self._wanted):
                await asyncio.sleep(RETRY_S)
                self._wake.set()

    async def publish(self, interest: Mapping[str, TypeInterest]) -> bool:
        """Write `interest` now unless this process last wrote the same; False when the write failed
        (to be retried)."""
        try:
            record = encode(self.group, interest, self._clock())
        except InterestRecordError as exc:  # a name no record may carry: retrying cannot mend it
            log.error("the rules' interest cannot be published to %s: %s", self.topic, shown(exc))
            return True
        if record.digest == self.digest:
            return True
        producer = AIOKafkaProducer(**aiokafka_kwargs(self._connection), acks="all", enable_idempotence=True)
        try:
            await producer.start()
            await producer.send_and_wait(self.topic, record.value, key=record.key, partition=_PARTITION)
        except Exception as exc:  # any failure: the collectors keep the interest they have; retried
            self._published.add(1, {"outcome": "failed"})
            log.warning("publishing the rules' interest to %s failed, retrying in %.0f s: %s", self.topic,
                        RETRY_S, shown(f"{type(exc).__name__}: {exc}"))  # fmt: skip
            return False
        finally:
            await producer.stop()
        self.digest = record.digest
        self._published.add(1, {"outcome": "ok"})
        log.info("published the rules' interest to %s: %d event types, digest %s", self.topic,
                 len(interest), record.digest[:16],
                 extra={"event_types": len(interest), "digest": record.digest})  # fmt: skip
        return True
