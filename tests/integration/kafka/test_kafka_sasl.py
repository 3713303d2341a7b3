"""The confluent-kafka roles (replay, as the collector publishes; k8s-meta's topic) against a real
broker that demands SASL: a KRaft broker from the same jars with a SASL_PLAINTEXT listener (PLAIN)
beside its plaintext one. Right credentials: everything arrives. Wrong ones: replay stops at once
with a clear message that names the broker and does not print the password.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer

from bus.clients import librdkafka_security
from bus.security import KafkaSecurity
from collectors.capture import read_capture
from devtools import localkafka
from enrichers.config import K8sMetaConfig
from enrichers.topic import ensure_topic, producer, read_table

pytestmark = pytest.mark.kafka

REPO = Path(__file__).resolve().parents[3]
CAPTURE = REPO / "devtools" / "data" / "attack_scenario.cap"
USER, PASSWORD = "peregrine", "s3cret-not-in-logs"
JAAS = (
    "org.apache.kafka.common.security.plain.PlainLoginModule required "
    f'username="admin" password="admin-pw" user_{USER}="{PASSWORD}";'
)


@pytest.fixture(scope="module")
def sasl_bootstrap() -> Iterator[str]:
    """A one-node broker whose second listener wants SASL/PLAIN; yields that listener's address."""
    try:
        localkafka.kafka_libs()
    except localkafka.KafkaError as exc:
        pytest.skip(str(exc))
    root = Path(tempfile.mkdtemp(prefix="peregrine-sasl-"))
    cluster = localkafka.prepare(root / "kafka", 1)
    node = cluster.nodes[0]
    (sasl_port,) = localkafka.free_ports(1)
    props = node.directory / "server.properties"
    text = props.read_text()
    text = text.replace(
        f"listeners=PLAINTEXT://127.0.0.1:{node.port},",
        f"listeners=PLAINTEXT://127.0.0.1:{node.port},SASL_PLAINTEXT://127.0.0.1:{sasl_port},",
    )
    text = text.replace(
        f"advertised.listeners=PLAINTEXT://127.0.0.1:{node.port}\n",
        f"advertised.listeners=PLAINTEXT://127.0.0.1:{node.port},SASL_PLAINTEXT://127.0.0.1:{sasl_port}\n",
    )
    text = text.replace(
        "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT",
    )
    text += f"sasl.enabled.mechanisms=PLAIN\nlistener.name.sasl_plaintext.plain.sasl.jaas.config={JAAS}\n"
    props.write_text(text)
    localkafka.start_node(node)
    try:
        localkafka.wait_ready(cluster)
        yield f"127.0.0.1:{sasl_port}"
    finally:
        localkafka.kill(cluster)


def _env(password: str) -> dict[str, str]:
    return {
        **os.environ,
        "PEREGRINE_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "PEREGRINE_KAFKA_SASL_USERNAME": USER,
        "PEREGRINE_KAFKA_SASL_PASSWORD": password,
    }


def _replay(bootstrap: str, topic: str, password: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli.main", "replay", str(CAPTURE), "--max-rate", "--bootstrap", bootstrap,
         "--events-topic", topic, "--stats-topic", f"{topic}.stats"],
        env=_env(password), capture_output=True, text=True, timeout=180, cwd=REPO,
    )  # fmt: skip


def _count(bootstrap: str, topic: str, want: int) -> int:
    consumer = Consumer({
        "bootstrap.servers": bootstrap, "group.id": f"sasl-{uuid.uuid4().hex}",
        "auto.offset.reset": "earliest",
        **librdkafka_security(KafkaSecurity("SASL_PLAINTEXT", sasl_username=USER, sasl_password=PASSWORD)),
    })  # fmt: skip
    consumer.subscribe([topic])
    seen, idle = 0, 0
    try:
        while seen < want and idle < 60:
            msg = consumer.poll(1.0)
            if msg is None:
                idle += 1
            elif msg.error() is None:
                seen += 1
    finally:
        consumer.close()
    return seen


def test_replay_publishes_through_sasl(sasl_bootstrap: str) -> None:
    topic = f"sasl-events-{uuid.uuid4().hex[:8]}"
    done = _replay(sasl_bootstrap, topic, PASSWORD)
    assert done.returncode == 0, done.stderr[-2000:]
    batches = sum(1 for frame in read_capture(CAPTURE) if frame.kind == "events")
    assert batches > 0
    assert _count(sasl_bootstrap, topic, batches) == batches


def test_replay_with_a_wrong_password_stops_and_says_why(sasl_bootstrap: str) -> None:
    done = _replay(sasl_bootstrap, f"sasl-refused-{uuid.uuid4().hex[:8]}", "wrong-password")
    assert done.returncode == 2
    assert f"Kafka at {sasl_bootstrap} refused our credentials" in done.stderr
    assert "wrong-password" not in done.stderr + done.stdout


def test_replay_with_sasl_and_no_password_is_a_usage_error(sasl_bootstrap: str) -> None:
    done = _replay(sasl_bootstrap, "unused", "")
    assert done.returncode == 2
    assert "SASL_PLAINTEXT needs --sasl-username and PEREGRINE_KAFKA_SASL_PASSWORD" in done.stderr


def test_k8s_meta_topic_through_sasl(sasl_bootstrap: str) -> None:
    security = KafkaSecurity("SASL_PLAINTEXT", sasl_username=USER, sasl_password=PASSWORD)
    config = K8sMetaConfig(bootstrap_servers=sasl_bootstrap, topic=f"sasl-k8s-{uuid.uuid4().hex[:8]}",
                           kafka=security)  # fmt: skip
    assert PASSWORD not in repr(config)
    ensure_topic(config)
    p = producer(config)
    p.produce(config.topic, key=b"a", value=b"1")
    p.produce(config.topic, key=b"b", value=b"2")
    p.produce(config.topic, key=b"a", value=b"3")
    assert p.flush(30) == 0
    assert read_table(sasl_bootstrap, config.topic, security=security) == {b"a": b"3", b"b": b"2"}
