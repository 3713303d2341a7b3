"""Kafka I/O for `peregrine.k8s`: create it compacted, read it whole, produce to it.

The publisher reads the topic back at start-up so that it knows what is already there (that is how
a restart neither duplicates records nor forgets deletions); tests and tools use `read_table` to
look at the topic's state. Workers do not need this module: they feed records to
`enrichers.table.K8sTable.apply` from their own consumer.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Final

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Producer, TopicPartition

from bus import topics
from bus.acls import K8S_READER_GROUP_PREFIX
from bus.clients import IDEMPOTENT_PRODUCER, librdkafka_config, librdkafka_security
from bus.errors import BusError
from bus.security import KafkaSecurity
from enrichers.config import K8sMetaConfig
from enrichers.errors import TopicError

_ADMIN_TIMEOUT_S: Final = 30.0


_PLAIN = KafkaSecurity()


def ensure_topic(config: K8sMetaConfig) -> None:
    """Create the topic compacted if missing; refuse one that exists without compaction."""
    spec = topics.K8S.named(config.topic)
    try:
        topics.declare(config.connection, [spec], config.topic_replication, config.topic_partitions)
    except BusError as exc:
        raise TopicError(str(exc)) from None


def read_table(
    bootstrap_servers: str, topic: str, timeout_s: float = 60.0, security: KafkaSecurity = _PLAIN
) -> dict[bytes, bytes]:
    """The topic's current state: latest value per key, tombstoned keys left out."""
    state: dict[bytes, bytes] = {}
    for key, value in read_records(bootstrap_servers, topic, timeout_s, security):
        if value is None:
            state.pop(key, None)
        else:
            state[key] = value
    return state


def read_records(
    bootstrap_servers: str, topic: str, timeout_s: float = 60.0, security: KafkaSecurity = _PLAIN
) -> list[tuple[bytes, bytes | None]]:
    """Every keyed record the topic still holds, in offset order per partition.

    Reads every partition from the beginning up to the end offsets taken at the start, without a
    consumer group commit. TopicError if the topic does not exist or the end is not reached in time.
    """
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap_servers,
            # assign() needs no group, but librdkafka insists on an id; a fresh one commits nothing.
            "group.id": f"{K8S_READER_GROUP_PREFIX}{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "enable.partition.eof": False,
            **librdkafka_security(security),
        }
    )
    deadline = time.monotonic() + timeout_s
    try:
        ends = _end_offsets(consumer, topic, deadline)
        records: list[tuple[bytes, bytes | None]] = []
        if not ends:
            return records
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in ends])
        while ends:
            if time.monotonic() > deadline:
                raise TopicError(f"topic {topic}: end not reached in {timeout_s}s ({sorted(ends)})")
            for msg in consumer.consume(1000, timeout=0.5):
                error = msg.error()
                if error is not None:
                    raise TopicError(f"topic {topic}: read failed: {error.str()}")
                key = msg.key()
                if key is not None:
                    records.append((key, msg.value()))
            # Positions, not the last offsets seen: compaction may have removed the last records.
            for tp in consumer.position([TopicPartition(topic, p) for p in ends]):
                if tp.offset >= ends[tp.partition]:
                    del ends[tp.partition]
        return records
    finally:
        consumer.close()


def _end_offsets(consumer: Any, topic: str, deadline: float) -> dict[int, int]:
    """partition -> end offset, for the partitions that hold anything. A topic created a moment
    ago may have no leader yet: retriable errors are retried until the deadline."""
    while True:
        try:
            meta = consumer.list_topics(topic, timeout=_ADMIN_TIMEOUT_S).topics.get(topic)
            if meta is None or meta.error is not None:
                raise TopicError(f"topic {topic}: not found ({meta.error if meta else 'no metadata'})")
            ends: dict[int, int] = {}
            for p in meta.partitions:
                low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=_ADMIN_TIMEOUT_S)
                if high > low:
                    ends[p] = high
            return ends
        except KafkaException as e:
            if not topics.transient(e.args[0]) or time.monotonic() > deadline:
                raise TopicError(f"topic {topic}: cannot read its end offsets: {e.args[0].str()}") from None
            time.sleep(0.2)


def producer(config: K8sMetaConfig) -> Any:
    """An idempotent producer: retries never reorder or duplicate records of one key."""
    return Producer(
        {
            **librdkafka_config(config.connection),
            **IDEMPOTENT_PRODUCER,
            "linger.ms": 20,
            "compression.type": "lz4",
        }
    )
