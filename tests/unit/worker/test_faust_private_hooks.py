"""The private Faust and aiokafka hooks `streams.app` overrides or reads still exist and still do what
exactly-once relies on. A version bump that renames, removes or reroutes one fails here, loudly,
instead of silently losing exactly-once (or the fetch tuning) in production.

Checked against faust-streaming 0.15.3, aiokafka 0.14.0, mode-streaming 0.7.1 (pyproject.toml pins
them). Each test names the hook, the signature `streams.app` calls or overrides, and, where it is
cheap and needs no broker, the behaviour relied on: that Faust goes through the hook on the path we
hook. No broker, nothing started: the app, its transport, consumer and producer are only built.
"""

from __future__ import annotations

import asyncio
import inspect
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiokafka
import faust
import mode
import mode.threads
import pytest
from faust.transport import consumer as faust_consumer
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

from streams import app as worker_app
from streams.config import WorkerConfig

VERSIONS = {"faust-streaming": "0.15.3", "aiokafka": "0.14.0"}


def params(fn: Callable[..., Any]) -> list[str]:
    return list(inspect.signature(fn).parameters)


@pytest.fixture
def built(tmp_path: Path) -> Iterator[tuple[faust.App, WorkerConfig]]:
    config = WorkerConfig(bootstrap=("127.0.0.1:1",), rules_files=(Path("r.yaml"),), datadir=tmp_path)
    app, _ = worker_app.build_app(config)
    yield app, config


def test_installed_versions_are_the_ones_checked() -> None:
    """A bump lands here first: re-read each hook below in the new version, then update the pins."""
    from importlib.metadata import version

    assert {name: version(name) for name in VERSIONS} == VERSIONS


def test_app_builds_its_transport_through_new_transport(built: tuple[faust.App, WorkerConfig]) -> None:
    # faust.App._new_transport(self): `app.transport` calls it once; our _Transport carries the rest.
    assert params(faust.App._new_transport) == ["self"]
    app, _ = built
    assert type(app.transport) is worker_app._Transport
    assert isinstance(app.conf.broker_consumer, list)  # what _new_transport passes as the URL list


def test_transport_class_attributes_pick_our_consumer_producer_and_transaction_manager(
    built: tuple[faust.App, WorkerConfig],
) -> None:
    # Transport.Consumer / .Producer / .TransactionManager: read by create_consumer/create_producer/
    # create_transaction_manager, and the app's producer comes from `app.transport`, not from
    # `app.producer_transport` (which would be a plain Transport).
    app, _ = built
    assert type(app.consumer) is worker_app._GatedConsumer
    assert type(app.producer) is worker_app._ConcurrentCommitProducer
    manager = app.transport.create_transaction_manager(consumer=app.consumer, producer=app.producer)
    assert type(manager) is worker_app._FreshTransactions


def test_consumer_thread_comes_from_new_consumer_thread(built: tuple[faust.App, WorkerConfig]) -> None:
    # faust aiokafka Consumer._new_consumer_thread(self), and the thread's constructor
    # AIOKafkaConsumerThread(consumer, loop=..., beacon=...) that our override calls.
    assert params(faust_aiokafka.Consumer._new_consumer_thread) == ["self"]
    app, _ = built
    assert type(app.consumer._thread) is worker_app._PromptFetchThread  # type: ignore[attr-defined]
    # (consumer, **kwargs), the keywords reaching mode's ServiceThread (loop) and Service (beacon)
    assert params(faust_aiokafka.AIOKafkaConsumerThread.__init__) == ["self", "consumer", "kwargs"]
    assert "loop" in params(mode.threads.ServiceThread.__init__)
    assert "beacon" in params(mode.Service.__init__)


def test_worker_consumer_fetch_settings_are_the_ones_its_fetcher_reads(
    built: tuple[faust.App, WorkerConfig],
) -> None:
    # AIOKafkaConsumerThread._create_worker_consumer(self, transport) returns the AIOKafkaConsumer;
    # we then set its _fetch_max_wait_ms / _fetch_min_bytes, which AIOKafkaConsumer.start() hands to
    # its Fetcher. Faust itself fixes fetch_max_wait_ms=1500 when it builds the consumer.
    assert params(faust_aiokafka.AIOKafkaConsumerThread._create_worker_consumer) == ["self", "transport"]
    start_source = inspect.getsource(aiokafka.AIOKafkaConsumer.start)
    assert "fetch_max_wait_ms=self._fetch_max_wait_ms" in start_source
    assert "fetch_min_bytes=self._fetch_min_bytes" in start_source
    app, _ = built

    async def build_and_read() -> tuple[int, int, object]:
        thread = app.consumer._thread  # type: ignore[attr-defined]
        consumer: aiokafka.AIOKafkaConsumer = thread._create_worker_consumer(app.transport)
        try:  # not started: the values are read at start, after we set them
            return consumer._fetch_max_wait_ms, consumer._fetch_min_bytes, consumer._fetcher
        finally:
            await consumer.stop()

    assert asyncio.run(build_and_read()) == (worker_app._FETCH_MAX_WAIT_MS, worker_app._FETCH_MIN_BYTES, None)


def test_every_commit_goes_through_commit_tps_under_the_gate(built: tuple[faust.App, WorkerConfig]) -> None:
    # faust Consumer._commit_tps(self, tps, start_new_transaction) -> bool: the one path from the
    # periodic commit (force_commit) to the offsets and the transactions; our override holds the
    # commit gate across it. Here: a commit with nothing to commit still runs inside the gate.
    assert params(faust_consumer.Consumer._commit_tps) == ["self", "tps", "start_new_transaction"]
    app, _ = built
    consumer: Any = app.consumer
    gate_held: list[bool] = []

    def nothing_committable(tps: Any) -> dict[TP, int]:
        gate_held.append(consumer.commit_gate.locked())
        return {}

    consumer._filter_committable_offsets = nothing_committable
    assert asyncio.run(consumer.force_commit()) is False
    assert gate_held == [True]


def test_transactions_are_committed_through_commit_transactions_and_its_private_maps() -> None:
    # We replace Producer.commit_transactions(self, tid_to_offset_map, group_id, start_new_transaction)
    # and read Faust's per-transaction maps: _trn_locks[tid] (asyncio.Lock) and
    # _transaction_producers[tid] (AIOKafkaProducer), both keyed by the transactional id.
    assert params(faust_aiokafka.Producer.commit_transactions) == [
        "self", "tid_to_offset_map", "group_id", "start_new_transaction"
    ]
    assert params(worker_app._ConcurrentCommitProducer.commit_transactions) == params(
        faust_aiokafka.Producer.commit_transactions
    )
    notes = faust_aiokafka.Producer.__annotations__
    assert notes["_trn_locks"] == typing.Dict[str, asyncio.Lock]  # noqa: UP006 (what Faust declares)
    assert notes["_transaction_producers"] == typing.Dict[str, aiokafka.AIOKafkaProducer]  # noqa: UP006
    assert isinstance(faust_aiokafka.Producer._trn_locks, dict)
    assert isinstance(faust_aiokafka.Producer._transaction_producers, dict)
    begin = inspect.getsource(faust_aiokafka.Producer.begin_transaction)
    assert "self._transaction_producers[transactional_id] = " in begin
    assert "self._trn_locks[transactional_id] = asyncio.Lock()" in begin
    # Exactly once, Faust's consumer commits through its TransactionManager, which calls
    # commit_transactions with the offsets grouped by transactional id.
    assert "self.transactions.commit(" in inspect.getsource(faust_consumer.Consumer._commit_offsets)
    assert "producer.commit_transactions(" in inspect.getsource(faust_consumer.TransactionManager.commit)
    # The aiokafka producer methods _commit_one calls.
    assert params(aiokafka.AIOKafkaProducer.send_offsets_to_transaction) == ["self", "offsets", "group_id"]
    assert params(aiokafka.AIOKafkaProducer.commit_transaction) == ["self"]
    assert params(aiokafka.AIOKafkaProducer.begin_transaction) == ["self"]


def test_rebalance_restarts_the_transactions_of_every_partition_passed_as_revoked(
    built: tuple[faust.App, WorkerConfig],
) -> None:
    # TransactionManager.on_rebalance(self, assigned, revoked, newly_assigned): Faust stops the
    # producers of `revoked` and starts those of `assigned`; _FreshTransactions passes every assigned
    # partition as revoked too, so each is stopped (the broker aborts its open transaction) and
    # started again.
    assert params(faust_consumer.TransactionManager.on_rebalance) == [
        "self", "assigned", "revoked", "newly_assigned"
    ]
    app, config = built
    app.assignor._topic_groups[config.topics.events] = 0  # what an assignment would have told it
    manager: Any = app.transport.create_transaction_manager(consumer=app.consumer, producer=app.producer)
    calls: list[tuple[str, list[str]]] = []

    async def stop(tids: list[str]) -> None:
        calls.append(("stop", list(tids)))

    async def start(tids: list[str]) -> None:
        calls.append(("start", list(tids)))

    manager._stop_transactions, manager._start_transactions = stop, start
    tp = TP(config.topics.events, 3)
    asyncio.run(manager.on_rebalance({tp}, set(), set()))
    tid = f"{config.app_id}-0-3"
    assert calls == [("stop", [tid]), ("start", [tid])]


def test_emitter_names_the_transaction_faust_opened_for_the_input_partition(
    built: tuple[faust.App, WorkerConfig],
) -> None:
    # Emitter.send builds "{app id}-{group}-{partition}" for the *input* partition and passes it as
    # Producer.send(topic, key, value, partition, timestamp, headers, *, transactional_id=...): it
    # must equal the id Faust's TransactionManager begins for that partition.
    app, config = built
    id_format = faust_consumer.TransactionManager.transactional_id_format
    assert id_format == "{group_id}-{tpg.group}-{tpg.partition}"
    assert params(faust_aiokafka.Producer.send) == [
        "self", "topic", "key", "value", "partition", "timestamp", "headers", "transactional_id"
    ]
    assert inspect.signature(faust_aiokafka.Producer.send).parameters["transactional_id"].kind is (
        inspect.Parameter.KEYWORD_ONLY
    )
    app.assignor._topic_groups[config.topics.events] = 1
    manager: Any = app.transport.create_transaction_manager(consumer=app.consumer, producer=app.producer)
    faust_tids = manager._tps_to_transactional_ids({TP(config.topics.events, 5)})
    sent: list[dict[str, Any]] = []

    async def send(*args: Any, **kwargs: Any) -> asyncio.Future[None]:  # records instead of producing
        sent.append(kwargs)
        delivered: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        delivered.set_result(None)
        return delivered  # what aiokafka returns: the delivery future

    producer: Any = app.producer
    producer.send = send
    emitter = worker_app.Emitter(app)
    source = worker_app.Source(worker_app.Origin(config.topics.events, 5, 0), b"node", b"batch")
    asyncio.run(emitter.send(source, config.topics.alerts, b"key", b"alert"))
    assert [call["transactional_id"] for call in sent] == sorted(faust_tids)


def test_a_refused_send_is_journaled_not_raised(built: tuple[faust.App, WorkerConfig]) -> None:
    # Producer.send raises before queueing (aiokafka refuses a record above max_request_size at once):
    # Emitter.send must not raise into the agent; the refusal waits in the journal for the commit.
    app, config = built
    app.assignor._topic_groups[config.topics.events] = 0

    async def send(*args: Any, **kwargs: Any) -> None:
        raise aiokafka.errors.MessageSizeTooLargeError("too large")

    producer: Any = app.producer
    producer.send = send
    emitter = worker_app.Emitter(app)
    source = worker_app.Source(worker_app.Origin(config.topics.events, 2, 7), b"node", b"batch")
    asyncio.run(emitter.send(source, config.topics.alerts, b"key", b"alert"))
    deliveries = app.deliveries  # type: ignore[attr-defined]
    tid = f"{config.app_id}-0-2"
    assert deliveries.pending_tids() == [tid]
    [sent] = deliveries.take(tid)
    assert isinstance(sent.future.exception(), aiokafka.errors.MessageSizeTooLargeError)


def test_a_transaction_is_redone_through_stop_and_maybe_begin_transaction() -> None:
    # _App._redo restarts one transactional producer as a rebalance does: Producer.stop_transaction(tid)
    # (the new producer for the id fences the old one: the broker aborts) then maybe_begin_transaction.
    assert params(faust_aiokafka.Producer.stop_transaction) == ["self", "transactional_id"]
    assert params(faust_aiokafka.Producer.maybe_begin_transaction) == ["self", "transactional_id"]
    stop = inspect.getsource(faust_aiokafka.Producer.stop_transaction)
    assert "self._transaction_producers.pop(transactional_id" in stop


def test_deliveries_are_settled_through_the_accumulator_and_a_rebalance_through_the_coordinator() -> None:
    # _App.settle_deliveries calls AIOKafkaProducer._message_accumulator.flush_for_commit(), what
    # aiokafka's own commit does first (close open batches, wake the sender); _GatedConsumer._rejoin
    # calls the consumer thread's thread_loop and AIOKafkaConsumer._coordinator.request_rejoin().
    from aiokafka.consumer.group_coordinator import GroupCoordinator
    from aiokafka.producer.message_accumulator import MessageAccumulator

    assert params(MessageAccumulator.flush_for_commit) == ["self"]
    assert "self._message_accumulator = MessageAccumulator(" in inspect.getsource(aiokafka.AIOKafkaProducer)
    assert "self._message_accumulator.flush_for_commit()" in inspect.getsource(
        aiokafka.producer.sender.Sender
    )
    assert params(GroupCoordinator.request_rejoin) == ["self"]
    assert "self._coordinator = GroupCoordinator(" in inspect.getsource(aiokafka.AIOKafkaConsumer.start)
    assert params(faust_aiokafka.AIOKafkaConsumerThread._ensure_consumer) == ["self"]
    assert "thread_loop" in inspect.getsource(mode.threads.ServiceThread.__init__)


def test_a_record_refusal_is_told_from_a_transaction_failure_through_faust_s_wrapper() -> None:
    # Faust's Producer.send wraps aiokafka's KafkaError as ProducerSendError(...) from exc: the cause is
    # what says whether the record itself was refused (dead-letter it) or its transaction (send again).
    assert "raise ProducerSendError(f\"Error while sending: {exc!r}\") from exc" in inspect.getsource(
        faust_aiokafka.Producer.send
    )
    from faust.exceptions import ProducerSendError

    def wrapped(exc: Exception) -> ProducerSendError:
        try:
            raise ProducerSendError("Error while sending") from exc
        except ProducerSendError as outer:
            return outer

    too_large = aiokafka.errors.MessageSizeTooLargeError("too large")
    assert worker_app._refuses_the_record(too_large)
    assert worker_app._refuses_the_record(wrapped(too_large))
    assert not worker_app._refuses_the_record(aiokafka.errors.KafkaTimeoutError())
    assert not worker_app._refuses_the_record(wrapped(aiokafka.errors.IllegalOperation("not in txn")))


def test_the_consumer_hands_on_messages_through_getmany() -> None:
    # faust Consumer.getmany(self, timeout): `_drain_messages` iterates it for every message the
    # agents get, so `_GatedConsumer.getmany` (the byte budget, streams.fetchbudget) sees them all.
    assert params(faust_consumer.Consumer.getmany) == ["self", "timeout"]
    assert inspect.isasyncgenfunction(faust_consumer.Consumer.getmany)
    assert "getmany = self.getmany" in inspect.getsource(faust_consumer.Consumer._drain_messages)
    assert "getmany" in vars(worker_app._GatedConsumer)


def test_aiokafka_reads_records_through_the_patched_names() -> None:
    # streams.fetchbound replaces PartitionRecords.__init__(self, tp, records, ...) and
    # _unpack_records(self), whose records carry serialized_value_size, and getall ends on their end.
    from aiokafka.consumer import fetcher

    assert params(fetcher.PartitionRecords.__init__)[:3] == ["self", "tp", "records"]
    assert params(fetcher.PartitionRecords._unpack_records) == ["self"]
    assert "self._records_iterator = self._unpack_records()" in inspect.getsource(fetcher.PartitionRecords)
    assert "serialized_value_size" in aiokafka.structs.ConsumerRecord.__dataclass_fields__
    assert "self._partition_records = None" in inspect.getsource(fetcher.FetchResult.getall)


def test_transactional_producers_batch_alerts_up_to_the_worker_s_batch_size(
    built: tuple[faust.App, WorkerConfig],
) -> None:
    # Faust Producer._new_producer(transactional_id) builds each partition's AIOKafkaProducer from
    # producer_max_batch_size; aiokafka's accumulator then blocks send() only past that many bytes
    # per output partition (MessageAccumulator.add_message waits on a full batch's drain).
    accumulator = aiokafka.producer.message_accumulator.MessageAccumulator
    assert "wait_drain" in inspect.getsource(accumulator.add_message)
    app, _ = built

    async def batch_size() -> int:
        producer = app.producer._new_producer(transactional_id="t-0")  # type: ignore[attr-defined]
        try:
            size: int = producer._message_accumulator._batch_size
            return size
        finally:
            await producer.stop()

    assert asyncio.run(batch_size()) == worker_app._MAX_BATCH_BYTES
    # lz4's worst case grows incompressible input by 1/255: the batch still fits the alerts topic's
    # broker default max.message.bytes (1048588)
    assert worker_app._MAX_BATCH_BYTES * 256 // 255 + 1024 < 1_048_588
