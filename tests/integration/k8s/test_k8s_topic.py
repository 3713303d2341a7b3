"""The peregrine.k8s topic on a real broker: created compacted, refused when not, read back whole."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from enrichers.config import K8sMetaConfig
from enrichers.errors import TopicError
from enrichers.topic import ensure_topic, read_records, read_table

pytestmark = pytest.mark.kafka


def test_topic_is_created_compacted_and_read_back_as_its_latest_state(
    kafka_bootstrap: str, unique_topic: Callable[[str], str]
) -> None:
    config = K8sMetaConfig(bootstrap_servers=kafka_bootstrap, topic=unique_topic("peregrine.k8s"))
    ensure_topic(config)
    ensure_topic(config)  # idempotent
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    res = ConfigResource(ConfigResource.Type.TOPIC, config.topic)
    assert admin.describe_configs([res])[res].result(30)["cleanup.policy"].value == "compact"

    p = Producer({"bootstrap.servers": kafka_bootstrap})
    for key, value in [(b"a", b"1"), (b"b", b"1"), (b"a", b"2"), (b"b", None)]:
        p.produce(config.topic, key=key, value=value)
    assert p.flush(30) == 0
    assert read_table(kafka_bootstrap, config.topic) == {b"a": b"2"}
    assert [k for k, _ in read_records(kafka_bootstrap, config.topic)] == [b"a", b"b", b"a", b"b"]


def test_existing_topic_without_compaction_is_refused(
    kafka_bootstrap: str, unique_topic: Callable[[str], str]
) -> None:
    topic = unique_topic("peregrine.k8s")
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    admin.create_topics([NewTopic(topic, 1, 1, config={"cleanup.policy": "delete"})])[topic].result(30)
    with pytest.raises(TopicError, match="must be compacted"):
        ensure_topic(K8sMetaConfig(bootstrap_servers=kafka_bootstrap, topic=topic))


def test_missing_topic_is_reported_by_name(kafka_bootstrap: str, unique_topic: Callable[[str], str]) -> None:
    topic = unique_topic("absent")
    with pytest.raises(TopicError, match=topic):
        read_table(kafka_bootstrap, topic, timeout_s=10)
