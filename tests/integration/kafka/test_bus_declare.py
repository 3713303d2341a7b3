"""`bus.topics.declare` on a real broker: the catalog's topics are created with their configs, a
second declare changes nothing, and a compacted topic that exists uncompacted is refused."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic  # type: ignore[attr-defined]

from bus import topics
from bus.connection import KafkaConnection, parse_bootstrap
from bus.errors import TopicError

pytestmark = pytest.mark.kafka


def _configs(admin: AdminClient, name: str) -> dict[str, str | None]:
    resource = ConfigResource(ConfigResource.Type.TOPIC, name)
    return {k: v.value for k, v in admin.describe_configs([resource])[resource].result(30).items()}


def test_declare_creates_the_catalog_with_each_topics_configs(
    kafka_bootstrap: str, unique_topic: Callable[[str], str]
) -> None:
    conn = KafkaConnection(parse_bootstrap(kafka_bootstrap))
    tag = unique_topic("bus")
    specs = [spec.named(f"{spec.name}-{tag}") for spec in topics.CATALOG]
    specs.append(topics.TopicSpec(f"tuned-{tag}", partitions=2, retention_ms=3_600_000,
                                  max_message_bytes=4 << 20))  # fmt: skip
    topics.declare(conn, specs)
    topics.declare(conn, specs)  # idempotent: existing topics are left as they are
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    meta = admin.list_topics(timeout=30).topics
    for spec in specs:
        assert len(meta[spec.name].partitions) == spec.partitions, spec.name
        configs = _configs(admin, spec.name)
        assert configs["cleanup.policy"] == ("compact" if spec.compacted else "delete"), spec.name
    tuned = _configs(admin, f"tuned-{tag}")
    assert (tuned["retention.ms"], tuned["max.message.bytes"]) == ("3600000", str(4 << 20))


def test_partitions_given_by_the_role_win_over_the_catalogs(
    kafka_bootstrap: str, unique_topic: Callable[[str], str]
) -> None:
    k8s = topics.K8S.named(unique_topic("bus-k8s"))
    topics.declare(KafkaConnection(parse_bootstrap(kafka_bootstrap)), [k8s], partitions=3)
    meta = AdminClient({"bootstrap.servers": kafka_bootstrap}).list_topics(timeout=30).topics
    assert len(meta[k8s.name].partitions) == 3


def test_an_uncompacted_k8s_topic_is_refused_by_name(
    kafka_bootstrap: str, unique_topic: Callable[[str], str]
) -> None:
    name = unique_topic("bus-k8s")
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    admin.create_topics([NewTopic(name, 1, 1, config={"cleanup.policy": "delete"})])[name].result(30)
    with pytest.raises(TopicError, match=f"topic {name}: cleanup.policy is 'delete'; it must be compacted"):
        topics.declare(KafkaConnection(parse_bootstrap(kafka_bootstrap)), [topics.K8S.named(name)])


def test_an_unreachable_broker_is_a_topic_error_naming_it() -> None:
    conn = KafkaConnection(("127.0.0.1:1",))
    with pytest.raises(TopicError, match="127.0.0.1:1"):
        topics.declare(conn, [topics.EVENTS.named("never")], timeout_s=3)
