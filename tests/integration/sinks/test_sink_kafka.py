"""The sink service end to end on a real Kafka broker: consume, route, deliver, DLQ, commit.

Runs `service.run` (one runner thread per destination, each with its own consumer group) against
stand-in receivers, and checks what arrived, what reached `peregrine.alerts.dlq` (test-named),
and which offsets each group committed.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from receivers import HEC_TOKEN, Receiver

from sinks.config import SinkConfig, parse_config
from sinks.metrics import create_metrics
from sinks.service import run

pytestmark = pytest.mark.kafka
AlertDoc = Callable[..., dict[str, Any]]
MakeReceiver = Callable[..., Receiver]
PARTITIONS = 3


@dataclass
class Topics:
    alerts: str
    dlq: str
    group_prefix: str


@pytest.fixture
def topics(kafka_bootstrap: str, unique_topic: Callable[[str], str]) -> Topics:
    names = Topics(unique_topic("alerts"), unique_topic("alerts-dlq"), unique_topic("sink"))
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    futures = admin.create_topics([NewTopic(names.alerts, PARTITIONS, 1), NewTopic(names.dlq, 1, 1)])
    for future in futures.values():
        future.result(timeout=30)
    return names


@dataclass
class Service:
    config: SinkConfig
    stop: threading.Event
    thread: threading.Thread
    reader: InMemoryMetricReader
    result: list[int]

    def finish(self) -> int:
        self.stop.set()
        self.thread.join(timeout=90)
        assert not self.thread.is_alive()
        return self.result[0]

    def counter(self, name: str) -> dict[str, int]:
        out: dict[str, int] = {}
        data = self.reader.get_metrics_data()
        for rm in data.resource_metrics if data is not None else []:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    if metric.name == f"peregrine.sink.{name}":
                        for point in metric.data.data_points:
                            assert set(point.attributes) == {"destination"}
                            out[str(point.attributes["destination"])] = int(point.value)
        return out


@pytest.fixture
def service(kafka_bootstrap: str, topics: Topics) -> Iterator[Callable[..., Service]]:
    started: list[Service] = []

    def start(destinations: list[dict[str, Any]], env: dict[str, str] | None = None, **top: Any) -> Service:
        doc = {
            "kafka": {
                "bootstrap_servers": kafka_bootstrap,
                "topic": topics.alerts,
                "dlq_topic": topics.dlq,
                "group_prefix": topics.group_prefix,
            },
            "batch": {"max_alerts": 200, "max_wait_s": 0.05},
            "retry": {"max_attempts": 4, "initial_backoff_s": 0.05, "max_backoff_s": 0.2},
            "destinations": destinations,
            **top,
        }
        config = parse_config(doc, "test", {"HEC_TOKEN": HEC_TOKEN, **(env or {})})
        reader = InMemoryMetricReader()
        stop, result = threading.Event(), [-1]
        metrics = create_metrics(MeterProvider(metric_readers=[reader]))

        def target() -> None:
            result[0] = run(config, list(config.destinations), stop, metrics)

        thread = threading.Thread(target=target, name="sink-service", daemon=True)
        thread.start()
        svc = Service(config, stop, thread, reader, result)
        started.append(svc)
        return svc

    yield start
    for svc in started:
        svc.stop.set()
        svc.thread.join(timeout=90)


def produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "enable.idempotence": True})
    for i, value in enumerate(values):
        producer.produce(topic, value=value, key=f"container-{i % 7}".encode())
        if i % 1000 == 999:
            producer.poll(0)
    assert producer.flush(60) == 0


def read_all(bootstrap: str, topic: str, count: int, timeout: float = 30.0) -> list[Any]:
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"reader-{topic}", "auto.offset.reset": "earliest"}
    )
    consumer.subscribe([topic])
    found: list[Any] = []
    deadline = time.monotonic() + timeout
    while len(found) < count and time.monotonic() < deadline:
        message = consumer.poll(0.2)
        if message is not None and message.error() is None:
            found.append(message)
    consumer.close()
    return found


_COORDINATOR_MOVING = (KafkaError.NOT_COORDINATOR, KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
                       KafkaError.COORDINATOR_NOT_AVAILABLE)


def committed(bootstrap: str, group: str, topic: str) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        for _ in range(60):
            try:
                return sum(max(o.offset, 0) for o in consumer.committed(partitions, timeout=30))
            except KafkaException as exc:  # a fresh broker answers NOT_COORDINATOR until it has loaded
                if not (exc.args[0].retriable() or exc.args[0].code() in _COORDINATOR_MOVING):
                    raise
                time.sleep(0.5)
        raise AssertionError(f"no committed offsets of {group} from the broker")
    finally:
        consumer.close()


def end_offsets(bootstrap: str, topic: str) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"watermarks-{topic}"})
    ends = [
        consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1] for p in range(PARTITIONS)
    ]
    consumer.close()
    return int(sum(ends))


def docs(alert_doc: AlertDoc, n: int, **changes: Any) -> list[dict[str, Any]]:
    return [alert_doc(uuid=f"00000000-0000-4000-8000-{i:012d}", **changes) for i in range(n)]


def wait_until(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def test_routes_delivers_dead_letters_and_commits(
    kafka_bootstrap: str,
    topics: Topics,
    service: Callable[..., Service],
    receiver: MakeReceiver,
    alert_doc: AlertDoc,
    tmp_path: Path,
) -> None:
    hook, es = receiver("webhook"), receiver("elasticsearch")
    notices = docs(alert_doc, 20)
    criticals = [alert_doc(uuid=f"10000000-0000-4000-8000-{i:012d}", priority="Critical") for i in range(5)]
    values = [json.dumps(d).encode() for d in notices + criticals] + [b"{not json", b'{"rule": "no time"}']
    produce(kafka_bootstrap, topics.alerts, values)
    svc = service(
        [
            {
                "name": "hook",
                "type": "webhook",
                "url": hook.url + "/hook",
                "route": {"min_priority": "critical"},
            },
            {"name": "es", "type": "elasticsearch", "url": es.url},
            {"name": "file", "type": "file", "path": str(tmp_path / "alerts.jsonl")},
        ]
    )
    assert hook.wait_for(5) and es.wait_for(25)
    # the file destination creates its file at its first delivery, which may come after the others'
    written = tmp_path / "alerts.jsonl"
    assert wait_until(lambda: written.exists() and len(written.read_bytes().splitlines()) == 25, 30)
    dead = read_all(kafka_bootstrap, topics.dlq, 6)  # 2 poison records x 3 destinations
    assert wait_until(
        lambda: all(
            committed(kafka_bootstrap, f"{topics.group_prefix}-{d}", topics.alerts) == 27
            for d in ("hook", "es", "file")
        ),
        30,
    )
    assert svc.finish() == 0
    assert sorted(hook.uuids()) == sorted(d["uuid"] for d in criticals)
    assert sorted(es.uuids()) == sorted(d["uuid"] for d in notices + criticals)
    assert hook.problems == [] and es.problems == []
    assert len(dead) == 6
    headers = [dict(m.headers()) for m in dead]
    assert sorted(h["peregrine.dlq.destination"] for h in headers) == [
        b"es",
        b"es",
        b"file",
        b"file",
        b"hook",
        b"hook",
    ]
    assert {h["peregrine.dlq.reason"] for h in headers} == {b"undecodable alert"}
    assert {m.value() for m in dead} == {b"{not json", b'{"rule": "no time"}'}
    assert all(h["peregrine.dlq.topic"] == topics.alerts.encode() for h in headers)
    assert svc.counter("delivered") == {"hook": 5, "es": 25, "file": 25}
    assert svc.counter("filtered") == {"hook": 20}
    assert svc.counter("dlq") == {"hook": 2, "es": 2, "file": 2}


def test_rejected_and_exhausted_alerts_go_to_the_dlq_with_reason_and_attempts(
    kafka_bootstrap: str,
    topics: Topics,
    service: Callable[..., Service],
    receiver: MakeReceiver,
    alert_doc: AlertDoc,
) -> None:
    loki = receiver("loki")
    loki.down.set()  # 503 to every attempt: bounded attempts, then the DLQ
    produce(kafka_bootstrap, topics.alerts, [json.dumps(d).encode() for d in docs(alert_doc, 3)])
    svc = service([{"name": "loki", "type": "loki", "url": loki.url}])
    dead = read_all(kafka_bootstrap, topics.dlq, 3)
    assert wait_until(
        lambda: committed(kafka_bootstrap, f"{topics.group_prefix}-loki", topics.alerts) == 3, 30
    )
    assert svc.finish() == 0
    assert len(dead) == 3
    for message in dead:
        headers = dict(message.headers())
        assert headers["peregrine.dlq.reason"] == b"retries exhausted"
        assert headers["peregrine.dlq.attempts"] == b"4"
        assert b"HTTP 503" in headers["peregrine.dlq.detail"]
        assert json.loads(message.value())["uuid"].startswith("00000000-")


def test_alerts_not_yet_delivered_at_shutdown_are_delivered_after_restart(
    kafka_bootstrap: str,
    topics: Topics,
    service: Callable[..., Service],
    receiver: MakeReceiver,
    alert_doc: AlertDoc,
) -> None:
    hec = receiver("splunk")
    hec.down.set()
    produce(kafka_bootstrap, topics.alerts, [json.dumps(d).encode() for d in docs(alert_doc, 50)])
    retry = {"max_attempts": 1000, "initial_backoff_s": 0.05, "max_backoff_s": 0.1}
    first = service(
        [{"name": "hec", "type": "splunk", "url": hec.url, "token_env": "HEC_TOKEN"}], retry=retry
    )
    assert wait_until(lambda: first.counter("retried").get("hec", 0) > 0, 30)
    assert first.finish() == 0  # stopped mid-retry: nothing committed, nothing dead-lettered
    assert committed(kafka_bootstrap, f"{topics.group_prefix}-hec", topics.alerts) == 0
    hec.down.clear()
    second = service(
        [{"name": "hec", "type": "splunk", "url": hec.url, "token_env": "HEC_TOKEN"}], retry=retry
    )
    assert hec.wait_for(50)
    assert wait_until(
        lambda: committed(kafka_bootstrap, f"{topics.group_prefix}-hec", topics.alerts) == 50, 30
    )
    assert second.finish() == 0
    assert sorted(hec.uuids()) == sorted(d["uuid"] for d in docs(alert_doc, 50))
    assert read_all(kafka_bootstrap, topics.dlq, 1, timeout=2) == []


def test_alerts_of_aborted_transactions_are_never_delivered(
    kafka_bootstrap: str,
    topics: Topics,
    service: Callable[..., Service],
    receiver: MakeReceiver,
    alert_doc: AlertDoc,
) -> None:
    hook = receiver("webhook")
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "transactional.id": f"tx-{topics.alerts}"})
    producer.init_transactions(30)
    for outcome, uuid in (("abort", "aborted-1"), ("commit", "committed-1"), ("abort", "aborted-2")):
        producer.begin_transaction()
        producer.produce(topics.alerts, value=json.dumps(alert_doc(uuid=uuid)).encode())
        if outcome == "abort":
            producer.abort_transaction(30)
        else:
            producer.commit_transaction(30)
    produce(kafka_bootstrap, topics.alerts, [json.dumps(alert_doc(uuid="plain-1")).encode()])
    svc = service([{"name": "hook", "type": "webhook", "url": hook.url + "/hook"}])
    assert hook.wait_for(2)
    # Settled once the group committed up to the end of every partition, past the aborted records.
    end = end_offsets(kafka_bootstrap, topics.alerts)
    assert wait_until(
        lambda: committed(kafka_bootstrap, f"{topics.group_prefix}-hook", topics.alerts) == end, 30
    )
    assert svc.finish() == 0
    assert sorted(hook.uuids()) == ["committed-1", "plain-1"]
