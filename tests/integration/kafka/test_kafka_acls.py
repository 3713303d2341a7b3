"""Least privilege on a real broker that enforces ACLs (StandardAuthorizer, KRaft, SASL/PLAIN): each
role's identity gets exactly `bus.acls.bindings(role)`, applied through `peregrine kafka acls --apply`,
and real clients show what each may and may not do. The expectations are written out here from the
issues (#16; #18 for `peregrine.control`), not derived from `bus.acls`.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import (
    Consumer,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient
from http_probe import probe
from kube_apiserver import free_port

from bus import acls, topics
from bus.clients import librdkafka_security
from bus.connection import KafkaConnection, parse_bootstrap
from bus.security import KafkaSecurity
from devtools import localkafka
from enrichers.topic import read_records
from rules.interest import TypeInterest
from rules.interest_wire import encode

pytestmark = pytest.mark.kafka

REPO = Path(__file__).resolve().parents[3]
CAPTURE = REPO / "devtools" / "data" / "attack_scenario.cap"
ROLES = ("collector", "k8s-meta", "worker", "sink", "backtest")
PASSWORDS = {role: f"pw-{role}-{uuid.uuid4().hex[:8]}" for role in ROLES}
DENIED_TOPIC = KafkaError.TOPIC_AUTHORIZATION_FAILED
_COORDINATOR_MOVING = (KafkaError.NOT_COORDINATOR, KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
                       KafkaError.COORDINATOR_NOT_AVAILABLE)  # fmt: skip


class Broker:
    def __init__(self, cluster: localkafka.Cluster) -> None:
        self.admin = cluster.bootstrap  # plaintext: ANONYMOUS is the super user
        self.secured = cluster.sasl_bootstrap

    def config(self, role: str) -> dict[str, Any]:
        security = KafkaSecurity("SASL_PLAINTEXT", sasl_username=role, sasl_password=PASSWORDS[role])
        return {"bootstrap.servers": self.secured, "log_level": 0, **librdkafka_security(security)}


@pytest.fixture(scope="module")
def broker() -> Iterator[Broker]:
    try:
        localkafka.kafka_libs()
    except localkafka.KafkaError as exc:
        pytest.skip(str(exc))
    root = Path(tempfile.mkdtemp(prefix="peregrine-acls-"))
    cluster = localkafka.prepare(root / "kafka", 1, sasl_users=PASSWORDS)
    localkafka.start_node(cluster.nodes[0])
    try:
        localkafka.wait_ready(cluster)
        topics.declare(KafkaConnection(parse_bootstrap(cluster.bootstrap)), topics.CATALOG, partitions=1)
        for role in ROLES:
            done = subprocess.run(
                [sys.executable, "-m", "cli.main", "kafka", "acls", "--role", role, "--principal",
                 f"User:{role}", "--apply", "--bootstrap", cluster.bootstrap],
                capture_output=True, text=True, timeout=120, cwd=REPO,
            )  # fmt: skip
            assert done.returncode == 0, done.stderr
            assert "ACL bindings" in done.stdout
        yield Broker(cluster)
    finally:
        localkafka.kill(cluster)


def produce(broker: Broker, role: str, topic: str, extra: dict[str, Any] | None = None) -> int:
    """The delivery's error code (KafkaError.NO_ERROR when written)."""
    results: list[int] = []
    producer = Producer({**broker.config(role), "message.timeout.ms": 20000, **(extra or {})})

    def report(err: KafkaError | None, _msg: Any) -> None:
        results.append(KafkaError.NO_ERROR if err is None else err.code())

    producer.produce(topic, b"v", key=b"k", on_delivery=report)
    producer.flush(30)
    assert len(results) == 1
    return results[0]


def read_first(broker: Broker, role: str, topic: str, group: str) -> tuple[int, Any]:
    """Assign partition 0 from the start; (error code, first message or None). An identity without
    Describe on the topic is refused its metadata, and a fetch would only wait: that refusal is the
    answer."""
    consumer = Consumer({**broker.config(role), "group.id": group, "enable.auto.commit": False})
    try:
        refused = consumer.list_topics(topic, timeout=30).topics[topic].error
        if refused is not None:
            return int(refused.code()), None
        consumer.assign([TopicPartition(topic, 0, -2)])
        for _ in range(30):
            msg = consumer.poll(1.0)
            if msg is None:
                continue
            if msg.error() is not None:
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    continue
                return msg.error().code(), None
            return KafkaError.NO_ERROR, msg
    finally:
        consumer.close()
    return KafkaError._TIMED_OUT, None


def committed(broker: Broker, group: str, topic: str) -> int:
    """The group's committed offset on partition 0, read as the admin (-1001: none)."""
    consumer = Consumer({"bootstrap.servers": broker.admin, "group.id": group, "log_level": 0})
    deadline = time.monotonic() + 60
    try:
        while True:
            try:
                return int(consumer.committed([TopicPartition(topic, 0)], timeout=30)[0].offset)
            except KafkaException as e:  # the offsets topic is still being created or loaded
                if e.args[0].code() not in _COORDINATOR_MOVING or time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
    finally:
        consumer.close()


def commits(broker: Broker, role: str, topic: str, group: str) -> bool:
    """Whether ``role`` can commit offset n+1 for ``group`` (the admin reads back what is stored).
    Through the admin API, which reports a refused FindCoordinator at once (GROUP_AUTHORIZATION_FAILED)
    where a consumer's synchronous commit would wait for a coordinator it is never told."""
    target = max(committed(broker, group, topic), 0) + 1
    admin = AdminClient(broker.config(role))
    request = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, 0, target)])
    try:
        admin.alter_consumer_group_offsets([request], request_timeout=30)[group].result(60)
        error = KafkaError.NO_ERROR
    except KafkaException as e:
        error = e.args[0].code()
    stored = committed(broker, group, topic)
    assert (error == KafkaError.NO_ERROR) == (stored == target), (error, stored, target)
    return stored == target


def test_collector_writes_events_and_stats_only(broker: Broker) -> None:
    assert produce(broker, "collector", topics.EVENTS.name) == KafkaError.NO_ERROR
    assert produce(broker, "collector", topics.STATS.name) == KafkaError.NO_ERROR
    assert produce(broker, "collector", topics.ALERTS.name) == DENIED_TOPIC
    assert produce(broker, "collector", topics.K8S.name) == DENIED_TOPIC
    assert produce(broker, "collector", topics.ALERTS_DLQ.name) == DENIED_TOPIC
    assert read_first(broker, "collector", topics.EVENTS.name, "peregrine-worker")[0] != KafkaError.NO_ERROR


def test_collector_cannot_move_the_sinks_or_workers_offsets(broker: Broker) -> None:
    assert not commits(broker, "collector", topics.ALERTS.name, "peregrine-sink-slack")
    assert not commits(broker, "collector", topics.EVENTS.name, "peregrine-worker")


def test_worker_consumes_events_and_produces_alerts_in_a_transaction(broker: Broker) -> None:
    assert produce(broker, "collector", topics.EVENTS.name) == KafkaError.NO_ERROR
    code, msg = read_first(broker, "worker", topics.EVENTS.name, "peregrine-worker")
    assert code == KafkaError.NO_ERROR and msg is not None
    transactional_id = "peregrine-worker-peregrine.events-0"
    producer = Producer({**broker.config("worker"), "transactional.id": transactional_id})
    producer.init_transactions(30)
    producer.begin_transaction()
    producer.produce(topics.ALERTS.name, b"{}", key=b"c")
    group = {"group.id": "peregrine-worker", "enable.auto.commit": False}
    consumer = Consumer({**broker.config("worker"), **group})
    try:
        producer.send_offsets_to_transaction(
            [TopicPartition(topics.EVENTS.name, 0, msg.offset() + 1)], consumer.consumer_group_metadata(), 30
        )
        producer.commit_transaction(30)
    finally:
        consumer.close()
    assert produce(broker, "worker", topics.EVENTS_DLQ.name) == KafkaError.NO_ERROR
    assert produce(broker, "worker", topics.K8S.name) == DENIED_TOPIC
    assert not commits(broker, "worker", topics.ALERTS.name, "peregrine-sink-slack")


def test_worker_transactional_ids_are_its_own(broker: Broker) -> None:
    producer = Producer({**broker.config("worker"), "transactional.id": "someone-else-0"})
    with pytest.raises(KafkaException) as caught:
        producer.init_transactions(30)
    assert caught.value.args[0].code() == KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED


def test_sink_reads_alerts_with_its_group_and_writes_the_alerts_dlq_only(broker: Broker) -> None:
    assert produce(broker, "worker", topics.ALERTS.name) == KafkaError.NO_ERROR
    code, _ = read_first(broker, "sink", topics.ALERTS.name, "peregrine-sink-slack")
    assert code == KafkaError.NO_ERROR
    assert commits(broker, "sink", topics.ALERTS.name, "peregrine-sink-slack")
    assert produce(broker, "sink", topics.ALERTS_DLQ.name) == KafkaError.NO_ERROR
    assert produce(broker, "sink", topics.EVENTS.name) == DENIED_TOPIC
    assert produce(broker, "sink", topics.ALERTS.name) == DENIED_TOPIC
    assert read_first(broker, "sink", topics.EVENTS.name, "peregrine-sink-slack")[0] != KafkaError.NO_ERROR
    assert not commits(broker, "sink", topics.EVENTS.name, "peregrine-worker")


def keys(broker: Broker, role: str, topic: str) -> list[bytes | None]:
    return [key for key, _ in records(broker, role, topic)]


def records(broker: Broker, role: str, topic: str) -> list[tuple[bytes | None, bytes | None]]:
    """The keys and values of every record on partition 0, read as ``role`` with assign() and a
    group it never joins (as a collector follows `peregrine.control`)."""
    consumer = Consumer({**broker.config(role), "group.id": "peregrine-collector-control",
                         "enable.auto.commit": False, "enable.partition.eof": True})  # fmt: skip
    found: list[tuple[bytes | None, bytes | None]] = []
    try:
        consumer.assign([TopicPartition(topic, 0, -2)])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is None:
                continue
            if msg.error() is not None:
                assert msg.error().code() == KafkaError._PARTITION_EOF, msg.error()
                return found
            found.append((msg.key(), msg.value()))
    finally:
        consumer.close()
    raise AssertionError(f"{topic}: no end reached in 30 s as {role}")


def test_workers_write_the_control_topic_and_collectors_only_read_it(broker: Broker) -> None:
    """A compromised node must not narrow what the other nodes capture."""
    assert produce(broker, "worker", topics.CONTROL.name) == KafkaError.NO_ERROR
    assert b"k" in keys(broker, "collector", topics.CONTROL.name)
    assert produce(broker, "collector", topics.CONTROL.name) == DENIED_TOPIC
    assert produce(broker, "sink", topics.CONTROL.name) == DENIED_TOPIC
    assert produce(broker, "k8s-meta", topics.CONTROL.name) == DENIED_TOPIC


def test_k8s_meta_writes_only_the_kubernetes_table(broker: Broker) -> None:
    assert produce(broker, "k8s-meta", topics.K8S.name) == KafkaError.NO_ERROR
    assert produce(broker, "k8s-meta", topics.EVENTS.name) == DENIED_TOPIC
    assert produce(broker, "k8s-meta", topics.ALERTS.name) == DENIED_TOPIC
    # and reads it back at start with its own grants: group-less, but librdkafka names a group
    security = KafkaSecurity("SASL_PLAINTEXT", sasl_username="k8s-meta", sasl_password=PASSWORDS["k8s-meta"])
    assert (b"k", b"v") in read_records(broker.secured, topics.K8S.name, timeout_s=30, security=security)


def test_backtest_reads_events_but_never_commits_the_workers_group_or_writes_alerts(broker: Broker) -> None:
    assert produce(broker, "collector", topics.EVENTS.name) == KafkaError.NO_ERROR
    code, _ = read_first(broker, "backtest", topics.EVENTS.name, f"peregrine-backtest-{uuid.uuid4().hex}")
    assert code == KafkaError.NO_ERROR
    assert not commits(broker, "backtest", topics.EVENTS.name, "peregrine-worker")
    assert produce(broker, "backtest", topics.ALERTS.name) == DENIED_TOPIC
    # the enrichment the worker would have had: the Kubernetes table, read group-less (backtest.job)
    assert produce(broker, "k8s-meta", topics.K8S.name) == KafkaError.NO_ERROR
    security = KafkaSecurity("SASL_PLAINTEXT", sasl_username="backtest", sasl_password=PASSWORDS["backtest"])
    assert (b"k", b"v") in read_records(broker.secured, topics.K8S.name, timeout_s=30, security=security)


def _role_env(role: str) -> dict[str, str]:
    return {"PATH": "/usr/bin:/bin", "PEREGRINE_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "PEREGRINE_KAFKA_SASL_MECHANISM": "PLAIN", "PEREGRINE_KAFKA_SASL_USERNAME": role,
            "PEREGRINE_KAFKA_SASL_PASSWORD": PASSWORDS[role]}  # fmt: skip


def test_the_real_worker_runs_on_its_grants_alone(broker: Broker, tmp_path: Path) -> None:
    """The worker (Faust, aiokafka, transactions) as `worker` and nothing more: it declares its
    topics, joins its group, reads a capture the `collector` identity published and writes alerts in
    exactly-once transactions that the `sink` identity reads. A grant missing from bus.acls shows
    here as a worker that never becomes ready."""
    # a record of a worker of its group that died without withdrawing it: the worker, leading its
    # group, sweeps it with its own grants (streams.control_sweep)
    ghost = encode(acls.WORKER_APP_ID, "ghost-1", {"execve": TypeInterest("execve", ())}, time.time_ns())
    ghost_writer = Producer(broker.config("worker"))
    ghost_writer.produce(topics.CONTROL.name, ghost.value, ghost.key, partition=0)
    assert ghost_writer.flush(30) == 0
    port = free_port()
    log = tmp_path / "worker.log"
    env = {**_role_env("worker"), "PEREGRINE_METRICS_PORT": str(port), "PEREGRINE_METRICS_ADDR": "127.0.0.1"}
    argv = [sys.executable, "-m", "cli.main", "worker", "--bootstrap", broker.secured, "--partitions", "1",
            "--replication", "1", "--guarantee", "exactly_once", "--datadir", str(tmp_path / "data"),
            "--k8s-wait", "1", "--rules", str(REPO / "rules" / "data" / "peregrine_rules.yaml"),
            "--control-grace", "2"]  # fmt: skip
    worker = subprocess.Popen(argv, cwd=REPO, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while probe(port, "/readyz")[0] != 200:
            assert worker.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.5)
        replay = subprocess.run(
            [sys.executable, "-m", "cli.main", "replay", str(CAPTURE), "--max-rate",
             "--bootstrap", broker.secured],
            cwd=REPO, env=_role_env("collector"), capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert replay.returncode == 0, replay.stderr[-3000:]
        reading = {"group.id": f"{acls.SINK_GROUP_PREFIX}-acl-test", "auto.offset.reset": "earliest",
                   "isolation.level": "read_committed"}  # fmt: skip
        consumer = Consumer({**broker.config("sink"), **reading})
        consumer.subscribe([topics.ALERTS.name])
        rules: set[str] = set()
        try:
            while "Peregrine: Terminal Shell in Container" not in rules and time.monotonic() < deadline + 60:
                msg = consumer.poll(0.5)
                if msg is not None and msg.error() is None and msg.value().startswith(b"{"):
                    rules.add(json.loads(msg.value()).get("rule", ""))  # the other tests wrote b"v", b"{}"
        finally:
            consumer.close()
        assert "Peregrine: Terminal Shell in Container" in rules, (rules, log.read_text()[-3000:])
        # its rules' interest, written with its grants and readable with a collector's
        written = keys(broker, "collector", topics.CONTROL.name)
        assert any(k is not None and k.startswith(b"interest/peregrine-worker/") for k in written), written
        while (ghost.key, None) not in records(broker, "collector", topics.CONTROL.name):
            assert time.monotonic() < deadline + 90, log.read_text()[-3000:]
            time.sleep(0.5)
        assert "sweeping" not in log.read_text()
        assert worker.poll() is None, log.read_text()[-3000:]
        assert "AUTHORIZATION_FAILED" not in log.read_text()
    finally:
        worker.terminate()
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(10)
