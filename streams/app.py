"""The worker's Faust app: settings from `WorkerConfig`, its topics, and the one way it produces.

Exactly-once, and why this module reaches into Faust. Faust's ``exactly_once`` keeps one
transactional producer per assigned input partition and commits that partition's offsets inside its
transaction. Two things in Faust 0.15.3 do not fit a worker whose output topic is not co-partitioned
with its input:

* ``topic.send()`` picks the transactional producer from the *output* partition and the output
  topic's group, which does not exist for `peregrine.alerts` (KeyError) and, when it does, may belong to
  another worker. `Emitter.send` therefore sends through the producer of the *input* partition the
  batch came from, so an alert commits or aborts together with that batch's offset.
* On a rebalance Faust seeks every assigned partition back to its committed offset but keeps the
  open transaction of the partitions it keeps, and a commit skipped during the revoke (one was
  already running) leaves alerts of uncommitted batches in it: they would commit twice.
  `_FreshTransactions` restarts every transactional producer on each rebalance, so the broker
  aborts whatever was not committed before the batches are read again.
* aiokafka's ``send`` only queues a record; the broker may still refuse it (a record above the
  topic's ``max.message.bytes``, a broker down), and the failure landed in a future nobody read while
  the commit went ahead: the batch was gone. `Deliveries` journals every record sent since the last
  commit with its future, per transaction, and the commit (`_GatedConsumer._commit_tps`) first
  settles them (`_App.settle_deliveries`). A transaction that lost a record is redone in place: its
  producer is restarted (the broker aborts the transaction and the sequence numbers start afresh),
  and its records are sent again, those of each refused input message replaced by that message's
  dead letter (whole, then a reference). Only if that fails too are its partitions left out of the
  commit and rewound by a rebalance, after which the agents dead-letter the message (`Emitter.failure`).

Topics are created at start by `streams.worker.declare_topics` (`bus.topics.declare`) with the
configured partitions and replication (`peregrine.k8s` compacted); existing topics are left as they are.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import faust
from aiokafka import errors as kafka_errors
from faust import exceptions as faust_errors
from faust.transport import consumer as faust_consumer
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP
from faust.types.enums import ProcessingGuarantee

from bus import faust_auth
from bus import topics as catalog
from streams import fetchbound
from streams.config import WorkerConfig
from streams.control_sweep import client_id
from streams.fetchbudget import FetchBudget
from streams.logsafe import shown

log = logging.getLogger("peregrine.worker.app")

# Faust buffers this many messages per stream; a batch is ~100 kB, so the default 4096 is 400 MB.
_STREAM_BUFFER = 256
# ...and the consumer hands on at most this many bytes of message values not yet freed
# (`streams.fetchbudget`): counted in messages alone, 256 batches of 16 MB would be 4 GB. 256 typical
# batches take a quarter of it, so the budget only binds on batches far larger than a node's.
BUFFER_BYTES: Final = 64 * 1024 * 1024
# Records handed over by the consumer thread per request. Unbounded, a drain handed over 3,000 at once
# and the agent sat idle up to 0.4 s while that thread decompressed and parsed them (idle gaps over
# 20 ms: 11% of the drain; with 64: 3%, what is left is mostly the transaction commits).
_MAX_POLL_RECORDS = 64


# Faust fixes the worker consumer's fetch wait at 1.5 s. aiokafka keeps one fetch in flight per broker
# and leaves out of it the partitions whose records Faust has not taken yet; when only idle partitions
# are left (peregrine.stats, a quiet node's), the broker holds that fetch for the whole wait and the busy
# partitions are not fetched again until it returns. Measured at half capacity: fetches of the 8 stats
# partitions alone lasting 1.5 s, one after the other, and a standing 1.5-3 s latency. The wait bounds
# each such stall; an idle worker then asks the broker 20 times a second.
_FETCH_MAX_WAIT_MS = 50
# ...and the broker answers a fetch as soon as it has this many bytes (or the wait is over). At the
# default (1 byte) a live stream is fetched one batch at a time, and each fetch costs the worker
# milliseconds of aiokafka and Faust Python: at 60k events/s the worker took 0.74 core, and 0.49 with
# this (the broker 0.92 and 0.77), for about 30 ms more latency. A drain is unaffected: its fetches
# return megabytes.
_FETCH_MIN_BYTES = 256 * 1024
# How long an alert waits for others before its produce request goes. Exactly once, alerts become
# visible only when the transaction commits, and the commit sends whatever lingers, so waiting costs
# no latency; at 5 ms the 8 partitions' transactional producers sent a request per alert or two. At
# 124k events/s with an alert per batch, 5 ms gave p99 1.7-1.9 s (worker 0.81-0.83 core, 2 runs) and
# 100 ms p99 0.55 s (0.68 core); p50 did not rise. At least once, an alert is visible once sent.
_LINGER_EXACTLY_ONCE = 0.1
_LINGER = 0.005
# Bytes of alerts a producer collects per output partition before a produce request must go. When a
# partition's batch is full, aiokafka's send() waits until the sender takes it, and the sender has at
# most one request in flight per broker: the agent stops for a broker round trip. At aiokafka's 16 KiB
# an alert with its evidence (about 4.7 KB against 1.5 KB without) filled a batch every 3 alerts: in a
# drain of 1M events (1,170 alerts), 310 sends waited, 2 s in all, against 95 (1 s) evidence off.
# With the linger and the commit's flush, a batch this size goes when the transaction commits anyway;
# it is compressed below the alerts topic's max.message.bytes (1 MiB) even when incompressible.
_MAX_BATCH_BYTES: Final = 512 * 1024


# Input messages whose records Kafka refused, remembered for the agents (bounded: a broker refusing
# everything cannot grow it).
_MAX_REMEMBERED_FAILURES: Final = 4096
# Refusals of a record for what it is (its size, its bytes, its timestamp): sent again it is refused
# again, so its input message's dead letter goes instead. Any other error (the transaction aborted by a
# sibling's refusal, a broker going away) is the transaction's: its records are sent again as they are.
_RECORD_REFUSALS: Final = (
    kafka_errors.MessageSizeTooLargeError,
    kafka_errors.RecordTooLargeError,
    kafka_errors.RecordListTooLargeError,
    kafka_errors.CorruptRecordException,
    kafka_errors.InvalidMessageError,
    kafka_errors.InvalidTimestampError,
)
# Times a transaction is redone after a refusal before the partition is left to a rebalance (a broker
# that refuses even the reference letters, i.e. is down or misconfigured).
_REDO_ROUNDS: Final = 3


@dataclass(frozen=True, slots=True)
class Origin:
    """The input message a record was produced for."""

    topic: str
    partition: int
    offset: int


@dataclass(frozen=True, slots=True)
class Source:
    """The input message itself: where it was read, and its key and value (for its dead letter)."""

    origin: Origin
    key: bytes | None
    value: bytes


@dataclass(frozen=True, slots=True)
class Failure:
    attempts: int
    reason: str  # the exception's type and message, bounded


@dataclass(frozen=True, slots=True)
class Record:
    topic: str
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]] | None


# What replaces the records of an input message Kafka refused: its dead letter (whole when `whole`,
# else a reference), or None when the node is over its dead-letter budget.
LetterFor = Callable[[Source, str, bool], Awaitable[Record | None]]


@dataclass(slots=True)
class _Sent:
    source: Source
    record: Record
    future: asyncio.Future[Any]  # done with the exception when refused before it was queued


@dataclass(slots=True)
class Deliveries:
    """Every record sent since the last commit, per transactional id ("" at least once), with its
    delivery future; and which input messages had records refused (`failure`)."""

    _journal: dict[str, list[_Sent]] = field(default_factory=dict)
    _poisoned: set[str] = field(default_factory=set)
    _failures: OrderedDict[Origin, Failure] = field(default_factory=OrderedDict)

    def __len__(self) -> int:
        return len(self._failures)

    def add(self, tid: str, sent: _Sent) -> None:
        self._journal.setdefault(tid, []).append(sent)

    def pending_tids(self) -> list[str]:
        return [tid for tid, sent in self._journal.items() if sent]

    def take(self, tid: str) -> list[_Sent]:
        return self._journal.pop(tid, [])

    def fail(self, origin: Origin, exc: BaseException) -> Failure:
        before = self._failures.pop(origin, None)
        failure = Failure(1 if before is None else before.attempts + 1, shown(f"{type(exc).__name__}: {exc}"))
        self._failures[origin] = failure
        while len(self._failures) > _MAX_REMEMBERED_FAILURES:
            self._failures.popitem(last=False)
        return failure

    def poison(self, tid: str) -> None:
        self._poisoned.add(tid)

    def poisoned(self, tid: str) -> bool:
        return tid in self._poisoned

    def any_poisoned(self) -> bool:
        return bool(self._poisoned)

    def restarted(self) -> None:
        """A rebalance restarted every transaction and rewound every partition: forget the sends."""
        for sent in self._journal.values():
            for s in sent:
                s.future.add_done_callback(_retrieve)  # aborted: nobody will await it
        self._journal.clear()
        self._poisoned.clear()

    def failure(self, origin: Origin) -> Failure | None:
        return self._failures.get(origin)


async def _refused(sent: list[_Sent]) -> dict[Origin, BaseException]:
    """Await every delivery; the first refusal of each input message."""
    refused: dict[Origin, BaseException] = {}
    for s in sent:
        try:
            await s.future
        except Exception as exc:  # any refusal: the transaction must not commit as it is
            refused.setdefault(s.source.origin, exc)
    return refused


async def _no_letters(source: Source, reason: str, whole: bool) -> Record | None:
    raise RuntimeError("streams.app: no dead letters wired (Emitter.letters_by)")


def _refuses_the_record(exc: BaseException) -> bool:
    # Faust wraps a send aiokafka refused before queueing (above max_request_size) in ProducerSendError.
    cause = exc.__cause__ if isinstance(exc, faust_errors.ProducerSendError) else exc
    return isinstance(cause, _RECORD_REFUSALS)


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


class _PromptFetchThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = _FETCH_MAX_WAIT_MS  # read when the consumer starts its fetcher
        consumer._fetch_min_bytes = _FETCH_MIN_BYTES
        return consumer


class _GatedConsumer(faust_aiokafka.Consumer):
    commit_gate: asyncio.Lock

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.commit_gate = asyncio.Lock()
        self.budget = FetchBudget(BUFFER_BYTES)

    async def getmany(self, timeout: float) -> AsyncIterator[tuple[TP, Any]]:
        hold = self.budget.hold
        async for tp, message in super().getmany(timeout):
            value = message.value
            await hold(message, len(value) if value else 0)
            yield tp, message

    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return _PromptFetchThread(self, loop=self.loop, beacon=self.beacon)

    async def _commit_tps(self, tps: Iterable[Any], start_new_transaction: bool) -> bool:
        async with self.commit_gate:
            app: _App = self.app  # type: ignore[assignment]
            tps = list(tps)
            await app.settle_deliveries()
            keep = [tp for tp in tps if not app.deliveries.poisoned(app.transaction_of(tp))]
            if app.deliveries.any_poisoned():
                self._rejoin()
            result: bool = await super()._commit_tps(keep, start_new_transaction)
            return result

    def _rejoin(self) -> None:
        """Ask the group for a rebalance: Faust then restarts the transactions (`_FreshTransactions`)
        and seeks every partition to its committed offset, the one path that rewinds a partition."""
        thread: Any = self._thread
        consumer: Any = thread._ensure_consumer()
        thread.thread_loop.call_soon_threadsafe(consumer._coordinator.request_rejoin)


class _ConcurrentCommitProducer(faust_aiokafka.Producer):
    """Faust commits the transactions of a worker's partitions one after the other (three round
    trips each) while the commit gate stops the agents; committing them concurrently makes that
    pause one round-trip chain instead of one per partition."""

    async def commit_transactions(
        self,
        tid_to_offset_map: Mapping[str, Mapping[Any, int]],
        group_id: str,
        start_new_transaction: bool = True,
    ) -> None:
        await asyncio.gather(
            *(
                self._commit_one(tid, offsets, group_id, start_new_transaction)
                for tid, offsets in tid_to_offset_map.items()
            )
        )

    async def _commit_one(
        self, tid: str, offsets: Mapping[Any, int], group_id: str, start_new_transaction: bool
    ) -> None:
        async with self._trn_locks[tid]:
            producer = self._transaction_producers.get(tid)
            if producer is None:
                log.warning("commit for unknown transaction %s", tid)
                return
            await producer.send_offsets_to_transaction(offsets, group_id)
            await producer.commit_transaction()
            if start_new_transaction:
                await producer.begin_transaction()


class _FreshTransactions(faust_consumer.TransactionManager):
    async def on_rebalance(self, assigned: set[Any], revoked: set[Any], newly_assigned: set[Any]) -> None:
        await super().on_rebalance(assigned, revoked | assigned, newly_assigned)
        app: _App = self.app  # type: ignore[assignment]
        app.deliveries.restarted()


class _Transport(faust_aiokafka.Transport):
    Consumer = _GatedConsumer
    Producer = _ConcurrentCommitProducer
    TransactionManager = _FreshTransactions


class _App(faust.App):
    deliveries: Deliveries
    letter_for: LetterFor

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.deliveries = Deliveries()
        self.letter_for = _no_letters


    def _new_transport(self) -> Any:
        return _Transport(self.conf.broker_consumer, self)

    def transaction_of(self, tp: Any) -> str:
        """The transactional id Faust gives the input partition ``tp`` ("" at least once: one producer)."""
        guarantee: object = self.conf.processing_guarantee
        if guarantee != ProcessingGuarantee.EXACTLY_ONCE:
            return ""
        return f"{self.conf.id}-{self.assignor.group_for_topic(tp.topic)}-{tp.partition}"

    async def settle_deliveries(self) -> None:
        """Push out and await every record sent since the last commit (under the commit gate). A
        transaction that lost a record is redone: restarted (the broker aborts it), and its records
        sent again, but each refused input message's records replaced by its dead letter (a reference
        the second time). A transaction still losing records is poisoned: `_GatedConsumer` leaves its
        partitions out of the commit and rewinds them through a rebalance."""
        for tid in self.deliveries.pending_tids():
            sent = self.deliveries.take(tid)
            for round_ in range(_REDO_ROUNDS):
                await self._flush(tid)
                refused = await _refused(sent)
                if not refused:
                    break
                sent = await self._redo(tid, sent, refused, whole=round_ == 0)
            else:
                self.deliveries.poison(tid)

    async def _flush(self, tid: str) -> None:
        producer: Any = self.producer
        if tid:
            # What aiokafka's own commit does first: close the open batches and wake the sender, so
            # the wait is one produce round trip, not the linger.
            await producer._transaction_producers[tid]._message_accumulator.flush_for_commit()
        else:
            await producer.flush()

    async def _redo(
        self, tid: str, sent: list[_Sent], refused: dict[Origin, BaseException], whole: bool
    ) -> list[_Sent]:
        producer: Any = self.producer
        if tid:  # a new producer for the id fences the old one: the broker aborts its transaction
            await producer.stop_transaction(tid)
            await producer.maybe_begin_transaction(tid)
        lettered: set[Origin] = set()
        reasons: dict[Origin, str] = {}
        refused = {origin: exc for origin, exc in refused.items() if _refuses_the_record(exc)}
        for origin, exc in refused.items():
            failure = self.deliveries.fail(origin, exc)
            reasons[origin] = failure.reason
            log.warning("Kafka refused a record produced for %s:%d@%d (%d times): %s; its transaction is "
                        "redone with its dead letter", shown(origin.topic), origin.partition, origin.offset,
                        failure.attempts, failure.reason)  # fmt: skip
        again: list[_Sent] = []
        for s in sent:
            origin = s.source.origin
            if origin not in refused:
                again.append(await self._queue(tid, s.source, s.record))
            elif origin not in lettered:
                lettered.add(origin)
                letter = await self.letter_for(s.source, reasons[origin], whole)
                if letter is not None:
                    again.append(await self._queue(tid, s.source, letter))
        return again

    async def _queue(self, tid: str, source: Source, record: Record) -> _Sent:
        future: asyncio.Future[Any]
        try:
            future = asyncio.ensure_future(await self.producer.send(
                record.topic, record.key, record.value, None, None, record.headers,
                transactional_id=tid or None,
            ))  # fmt: skip
        except Exception as exc:  # refused before queueing (above max_request_size, no transaction)
            future = asyncio.get_running_loop().create_future()
            future.set_exception(exc)
        return _Sent(source, record, future)


@dataclass(frozen=True, slots=True)
class WorkerTopics:
    events: Any  # faust.TopicT
    stats: Any
    alerts: Any
    dlq: Any
    k8s: Any


def member_id(app: faust.App) -> str:
    """The worker's member id in its group (empty before it joined). A new one after a rebalance
    means the broker had dropped the worker (its session expired), and its group's leader may have
    swept its `peregrine.control` record meanwhile (`streams.control_sweep`)."""
    consumer: Any = app.consumer
    thread: Any = consumer._thread
    return str(thread._ensure_consumer()._coordinator.member_id)


def build_app(config: WorkerConfig) -> tuple[faust.App, WorkerTopics]:
    fetchbound.install()  # before any fetch: a compression bomb must not be decompressed whole
    app = _App(
        config.app_id,
        broker=faust_auth.broker_urls(config.connection),
        broker_credentials=faust_auth.credentials(config.connection),
        processing_guarantee=config.guarantee,
        topic_partitions=config.partitions,
        topic_replication_factor=config.replication,
        topic_disable_leader=True,
        store="memory://",
        datadir=str(config.datadir),
        web_enabled=False,
        consumer_auto_offset_reset="earliest",
        broker_client_id=client_id(config.replica),  # whose record is live (streams.control_sweep)
        broker_session_timeout=config.session_timeout,
        broker_heartbeat_interval=config.heartbeat_interval,
        broker_commit_interval=config.commit_interval,
        stream_buffer_maxsize=_STREAM_BUFFER,
        broker_max_poll_records=_MAX_POLL_RECORDS,
        producer_linger=_LINGER_EXACTLY_ONCE if config.exactly_once else _LINGER,
        producer_compression_type="lz4",
        producer_max_batch_size=_MAX_BATCH_BYTES,
        # bus.topics sets every size limit together: a record the topics would refuse is refused here,
        # before it is sent, and a partition's fetch is one message (Kafka returns a larger one whole).
        producer_max_request_size=catalog.MAX_MESSAGE_BYTES,
        consumer_max_fetch_size=catalog.MAX_MESSAGE_BYTES,
    )
    t = config.topics

    def topic(name: str, **kwargs: Any) -> Any:
        return app.topic(
            name,
            key_serializer="raw",
            value_serializer="raw",
            partitions=config.partitions,
            replicas=config.replication,
            **kwargs,
        )

    topics = WorkerTopics(
        events=topic(t.events),
        stats=topic(t.stats),
        alerts=topic(t.alerts),
        dlq=topic(t.dlq),
        k8s=topic(t.k8s, compacting=True),
    )
    return app, topics


def commit_gate(app: faust.App) -> asyncio.Lock:
    gate: asyncio.Lock = app.consumer.commit_gate  # type: ignore[attr-defined]
    return gate


class Emitter:
    """Produces alerts and dead letters on behalf of one input message (see the module docstring)."""

    def __init__(self, app: faust.App) -> None:
        if not isinstance(app, _App):
            raise TypeError("Emitter needs the app of build_app")
        self._app = app

    async def send(
        self,
        source: Source,
        topic: str,
        key: bytes | None,
        value: bytes,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        """Queue one record in the transaction of `source`'s partition. Never raises for a refused
        record: the commit redoes the transaction with the source's dead letter instead."""
        app = self._app
        tid = app.transaction_of(TP(source.origin.topic, source.origin.partition))
        # Not awaiting delivery: the commit settles every future first (`Deliveries`), and waiting per
        # message would serialise the worker on the broker.
        app.deliveries.add(tid, await app._queue(tid, source, Record(topic, key, value, headers)))

    def letters_by(self, letter_for: LetterFor) -> None:
        """How the commit turns an input message whose records Kafka refused into its dead letter."""
        self._app.letter_for = letter_for

    def __len__(self) -> int:
        """Input messages remembered as refused (bounded; a metric)."""
        return len(self._app.deliveries)

    def failure(self, origin: Origin) -> Failure | None:
        """How often Kafka refused the records of `origin` (read again after a rewind), or None."""
        return self._app.deliveries.failure(origin)
