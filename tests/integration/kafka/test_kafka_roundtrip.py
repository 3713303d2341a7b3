"""Batches produced with confluent-kafka (collectors) come back byte for byte with aiokafka (the
client Faust uses) and with confluent-kafka, under lz4 and zstd, from a real broker."""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from collections.abc import Callable

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from collectors.wire import Batch, decode_batch, encode_batch
from rules.record import EVENT_PARAMS, EVENT_TYPE_IDS, P_NAME, P_PARENT, PROCESS_LEN

pytestmark = pytest.mark.kafka

EVENTS = 100_000
PER_BATCH = 500
NODES = ("node-a", "node-b", "node-c", "node-d")


def make_batches(seed: int) -> list[tuple[str, bytes]]:
    """Realistic-looking batches: a few processes per batch, opens/execs/connects referencing them."""
    rng = random.Random(seed)
    types = [EVENT_TYPE_IDS[t] for t in ("openat", "openat", "openat", "execve", "connect", "setns")]
    out = []
    seq: dict[str, int] = defaultdict(int)
    for b in range(EVENTS // PER_BATCH):
        node = NODES[b % len(NODES)]
        procs = []
        for i in range(8):
            p: list[object] = [None] * PROCESS_LEN
            p[0], p[1], p[P_NAME] = 1000 + i, 1, rng.choice(["bash", "nginx", "python3", "curl"])
            p[5] = ["-c", "x" * rng.randint(0, 40)]
            p[P_PARENT] = -1 if i == 0 else rng.randrange(i)
            procs.append(p)
        events = []
        for i in range(PER_BATCH):
            etype = rng.choice(types)
            args: list[object] = [3, -100, f"/etc/file{rng.randint(0, 999)}", 0o2, 0, 0, 0]
            args = (args * 3)[: len(EVENT_PARAMS[etype])]
            events.append([etype, 1_700_000_000_000_000_000 + b * PER_BATCH + i, 1000 + i % 8, i % 8,
                           rng.choice([0, 3, -2]), args, None, b * PER_BATCH + i + 1])
        seq[node] += 1
        batch = Batch(node, "boot-1", seq[node], events[0][1], events[-1][1], procs, events)
        out.append((node, encode_batch(batch)))
    return out


def _create_topic(bootstrap: str, topic: str, compression: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics(
        [NewTopic(topic, num_partitions=4, replication_factor=1, config={"compression.type": "producer"})]
    )
    futures[topic].result(30)


def _produce(bootstrap: str, topic: str, compression: str, batches: list[tuple[str, bytes]]) -> None:
    producer = Producer({
        "bootstrap.servers": bootstrap,
        "compression.type": compression,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 20,
        "message.max.bytes": 8_000_000,
    })
    errors: list[str] = []

    def on_delivery(err: object, _msg: object) -> None:
        if err is not None:
            errors.append(str(err))

    for key, value in batches:
        producer.produce(topic, value=value, key=key.encode(), on_delivery=on_delivery)
        producer.poll(0)
    assert producer.flush(60) == 0
    assert errors == []


def _by_key(records: list[tuple[bytes, bytes]]) -> dict[bytes, list[bytes]]:
    grouped: dict[bytes, list[bytes]] = defaultdict(list)
    for key, value in records:
        grouped[key].append(value)
    return dict(grouped)


def _consume_confluent(bootstrap: str, topic: str, group: str, n: int) -> list[tuple[bytes, bytes]]:
    consumer = Consumer({
        "bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    })
    consumer.subscribe([topic])
    got: list[tuple[bytes, bytes]] = []
    idle = 0
    try:
        while len(got) < n and idle < 30:
            msgs = consumer.consume(num_messages=500, timeout=1.0)
            idle = 0 if msgs else idle + 1
            for m in msgs:
                assert m.error() is None, m.error()
                got.append((m.key(), m.value()))
    finally:
        consumer.close()
    return got


def _consume_aiokafka(bootstrap: str, topic: str, group: str, n: int) -> list[tuple[bytes, bytes]]:
    from aiokafka import AIOKafkaConsumer

    async def run() -> list[tuple[bytes, bytes]]:
        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=bootstrap, group_id=group, auto_offset_reset="earliest",
            enable_auto_commit=False, fetch_max_bytes=16 * 1024 * 1024,
            max_partition_fetch_bytes=16 * 1024 * 1024,
        )
        await consumer.start()
        got: list[tuple[bytes, bytes]] = []
        try:
            idle = 0
            while len(got) < n and idle < 30:
                batch = await consumer.getmany(timeout_ms=1000, max_records=500)
                idle = 0 if batch else idle + 1
                for records in batch.values():
                    got.extend((r.key, r.value) for r in records)
        finally:
            await consumer.stop()
        return got

    return asyncio.run(run())


@pytest.mark.parametrize("compression", ["lz4", "zstd"])
def test_batches_round_trip_byte_for_byte_with_both_clients(
    kafka_bootstrap: str, unique_topic: Callable[[str], str], compression: str
) -> None:
    from aiokafka.codec import has_lz4, has_zstd

    assert has_lz4() and has_zstd(), "aiokafka lacks cramjam: Faust could not read compressed batches"
    topic = unique_topic(f"events-{compression}")
    _create_topic(kafka_bootstrap, topic, compression)
    batches = make_batches(seed=hash(compression) & 0xFFFF)
    _produce(kafka_bootstrap, topic, compression, batches)

    want = _by_key([(k.encode(), v) for k, v in batches])
    via_confluent = _by_key(_consume_confluent(kafka_bootstrap, topic, unique_topic("g"), len(batches)))
    via_aiokafka = _by_key(_consume_aiokafka(kafka_bootstrap, topic, unique_topic("g"), len(batches)))

    # per key (= per partition) order is Kafka's guarantee, so compare ordered sequences
    assert via_confluent == want
    assert via_aiokafka == want
    decoded_events = sum(len(decode_batch(v).events) for vs in via_aiokafka.values() for v in vs)
    assert decoded_events == EVENTS
