"""The topic catalog (names, default partitions, compaction, retention) and the one way topics are made.

Roles may rename a topic (``--events-topic`` and friends, tests' random names) with `TopicSpec.named`;
what the topic is stays the catalog's. `declare` creates what is missing and checks what must hold
for the topics that exist: a compacted topic that is not compacted is refused, since its readers
(the Kubernetes table, the suppressions, the collectors' interest) would lose records to retention.
Existing topics are otherwise left as they are (partitions, retention).
"""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Final

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic  # type: ignore[attr-defined]

from bus.clients import librdkafka_config
from bus.connection import KafkaConnection
from bus.errors import TopicError

_ADMIN_TIMEOUT_S: Final = 30.0


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    partitions: int = 12  # when created, unless the role says otherwise (the worker's --partitions)
    compacted: bool = False
    retention_ms: int | None = None  # None: the broker's default
    max_message_bytes: int | None = None  # None: the broker's default (1 MiB)

    def named(self, name: str) -> TopicSpec:
        return replace(self, name=name)

    def configs(self) -> dict[str, str]:
        """The topic-level configs it is created with."""
        configs = {"cleanup.policy": "compact"} if self.compacted else {}
        if self.retention_ms is not None:
            configs["retention.ms"] = str(self.retention_ms)
        if self.max_message_bytes is not None:
            configs["max.message.bytes"] = str(self.max_message_bytes)
        return configs


# A message's size, set here once for every topic, producer and reader (issue #16): the topics'
# max.message.bytes (what the broker takes, compressed), the worker's max request and fetch per
# partition (streams.app), and the largest dead letter sent whole (bus.dlq); a batch decompressed may
# reach MAX_DECOMPRESSED_BYTES, which collectors.wire checks before decoding anything.
MAX_MESSAGE_BYTES: Final = 1024 * 1024
MAX_DECOMPRESSED_BYTES: Final = 16 * 1024 * 1024

_SIZED: Final = MAX_MESSAGE_BYTES
EVENTS: Final = TopicSpec("peregrine.events", max_message_bytes=_SIZED)  # collectors.wire, key = node
STATS: Final = TopicSpec("peregrine.stats", max_message_bytes=_SIZED)  # collectors.stats, key = node
K8S: Final = TopicSpec("peregrine.k8s", partitions=1, compacted=True)  # enrichers.records, key = container id
ALERTS: Final = TopicSpec("peregrine.alerts")  # Falco JSON alerts, key = container id
EVENTS_DLQ: Final = TopicSpec("peregrine.events.dlq", max_message_bytes=_SIZED)  # poison batches (bus.dlq)
ALERTS_DLQ: Final = TopicSpec("peregrine.alerts.dlq", partitions=1)  # alerts a sink gave up on (bus.dlq)
# the sinks' suppressions (sinks.suppress), key = suppression id: every sink reads it whole
SINK_SUPPRESSIONS: Final = TopicSpec("peregrine.sink.suppressions", partitions=1, compacted=True)
# what the workers' rules need of the collectors (rules.interest_wire), key =
# interest/<worker group>/<replica>: every collector reads it whole. One partition: the records of
# all keys in one order, whichever client wrote them (librdkafka and aiokafka hash keys to
# partitions differently), for a handful of records a day; the workers write partition 0
# (streams.control).
CONTROL: Final = TopicSpec("peregrine.control", partitions=1, compacted=True)
CATALOG: Final = (EVENTS, STATS, K8S, ALERTS, EVENTS_DLQ, ALERTS_DLQ, SINK_SUPPRESSIONS, CONTROL)


def declare(
    connection: KafkaConnection,
    topics: Sequence[TopicSpec],
    replication: int = 1,
    partitions: int | None = None,
    timeout_s: float = _ADMIN_TIMEOUT_S,
) -> None:
    """Create the missing topics (``partitions`` overrides each spec's); TopicError if one cannot be
    created, or exists uncompacted where the catalog wants it compacted."""
    refusals: list[KafkaError] = []
    config: dict[str, Any] = {**librdkafka_config(connection), "error_cb": refusals.append}
    admin = AdminClient(config)
    new = [NewTopic(t.name, num_partitions=partitions or t.partitions, replication_factor=replication,
                    config=t.configs()) for t in topics]  # fmt: skip
    for name, future in admin.create_topics(new, operation_timeout=timeout_s).items():
        try:
            _result(admin, future, refusals, timeout_s)
        except KafkaException as e:
            if e.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise TopicError(f"topic {name}: cannot create it: {e.args[0].str()}") from None
        except concurrent.futures.TimeoutError:
            silent = f"topic {name}: no answer from Kafka at {connection.servers} in {timeout_s}s"
            raise TopicError(silent) from None
    for topic in topics:
        if topic.compacted:
            _check_compacted(admin, topic.name, timeout_s)


# Errors no retry can mend: the brokers refused our credentials or certificate. librdkafka retries
# them until the request times out; the error callback says so at once, and so does `declare`.
_LOGIN_REFUSED: Final = frozenset({KafkaError._AUTHENTICATION, KafkaError._SSL,
                                   KafkaError.SASL_AUTHENTICATION_FAILED})  # fmt: skip


def _result(
    admin: Any, future: concurrent.futures.Future[Any], refusals: list[KafkaError], timeout_s: float
) -> None:
    """The future's result; a login refusal (`refusals`, from the error callback) raised at once."""
    deadline = time.monotonic() + timeout_s
    while not future.done():
        admin.poll(0.1)  # serves the error callback
        refused = [e for e in refusals if e.code() in _LOGIN_REFUSED]
        if refused:
            raise KafkaException(refused[0])
        if time.monotonic() > deadline:
            raise concurrent.futures.TimeoutError
    future.result(0)


def _check_compacted(admin: Any, topic: str, timeout_s: float) -> None:
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            entries = admin.describe_configs([resource])[resource].result(timeout_s)
            break
        except concurrent.futures.TimeoutError:
            raise TopicError(f"topic {topic}: no answer from Kafka in {timeout_s}s") from None
        except KafkaException as e:
            if not transient(e.args[0]) or time.monotonic() > deadline:
                raise TopicError(f"topic {topic}: cannot read its configuration: {e.args[0].str()}") from None
            time.sleep(0.2)
    policy = entries["cleanup.policy"].value
    if "compact" not in (policy or ""):
        raise TopicError(
            f"topic {topic}: cleanup.policy is {policy!r}; it must be compacted or its readers lose "
            "records (pods, suppressions, interests)"
        )


# A topic created a moment ago may have no leader yet, or be unknown to the broker that answers;
# librdkafka does not always flag these as retriable.
_SETTLING: Final = frozenset(
    {
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError._UNKNOWN_PARTITION,
        KafkaError._TIMED_OUT,
        KafkaError._TRANSPORT,
    }
)


def transient(error: KafkaError) -> bool:
    """Worth retrying shortly: retriable, or a topic still settling after its creation."""
    return bool(error.retriable()) or error.code() in _SETTLING
