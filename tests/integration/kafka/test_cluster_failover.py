"""A real 3-broker KRaft cluster loses one broker mid-stream: an idempotent acks=all producer keeps
going and a consumer reads every record exactly once."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from devtools import localkafka

pytestmark = [pytest.mark.kafka, pytest.mark.cluster]

RECORDS = 30_000


def test_producer_and_consumer_survive_a_broker_kill(
    kafka_cluster: localkafka.Cluster, unique_topic: Callable[[str], str]
) -> None:
    bootstrap = kafka_cluster.bootstrap
    topic = unique_topic("failover")
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=6, replication_factor=3,
                                  config={"min.insync.replicas": "2"})])[topic].result(30)

    producer = Producer({
        "bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
        "linger.ms": 5, "message.timeout.ms": 120_000, "compression.type": "lz4",
    })
    failed: list[str] = []

    def on_delivery(err: object, _msg: object) -> None:
        if err is not None:
            failed.append(str(err))

    victim = kafka_cluster.nodes[1]
    try:
        for i in range(RECORDS):
            producer.produce(
                topic, key=str(i % 97).encode(), value=f"record-{i}".encode(), on_delivery=on_delivery
            )
            producer.poll(0)
            if i == RECORDS // 3:
                producer.flush(60)
                localkafka.stop_node(victim, kill=True)  # SIGKILL: no controlled shutdown
        assert producer.flush(120) == 0
        assert failed == []

        consumer = Consumer({
            "bootstrap.servers": bootstrap, "group.id": unique_topic("g"),
            "auto.offset.reset": "earliest", "enable.auto.commit": False,
        })
        consumer.subscribe([topic])
        seen: list[bytes] = []
        idle = 0
        while len(seen) < RECORDS and idle < 60:
            msgs = consumer.consume(num_messages=1000, timeout=1.0)
            idle = 0 if msgs else idle + 1
            for m in msgs:
                assert m.error() is None, m.error()
                seen.append(m.value())
        consumer.close()
    finally:
        if not victim.alive():
            localkafka.start_node(victim)
            localkafka.wait_ready(kafka_cluster)

    assert len(seen) == RECORDS, f"read {len(seen)} of {RECORDS}"
    assert len(set(seen)) == RECORDS, "duplicates were delivered"
    expected = {f"record-{i}".encode() for i in range(RECORDS)}
    assert set(seen) == expected
    checksum = hashlib.sha256(b"\n".join(sorted(seen))).hexdigest()
    assert checksum == hashlib.sha256(b"\n".join(sorted(expected))).hexdigest()
