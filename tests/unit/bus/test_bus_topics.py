"""`bus.topics`: the catalog is the one list of topic names and what each topic is."""

from __future__ import annotations

from bus import dlq, topics


def test_catalog_names_are_unique_and_the_contracts_names() -> None:
    names = [t.name for t in topics.CATALOG]
    assert len(names) == len(set(names))
    assert names == ["peregrine.events", "peregrine.stats", "peregrine.k8s", "peregrine.alerts",
                     "peregrine.events.dlq", "peregrine.alerts.dlq",
                     "peregrine.sink.suppressions", "peregrine.control"]  # fmt: skip


def test_only_the_tables_read_whole_are_compacted() -> None:
    assert [t.name for t in topics.CATALOG if t.compacted] == ["peregrine.k8s", "peregrine.sink.suppressions",
                                                               "peregrine.control"]  # fmt: skip
    assert topics.CONTROL.partitions == 1  # one order for every key's records
    assert topics.K8S.configs() == {"cleanup.policy": "compact"}
    assert topics.EVENTS.configs() == {"max.message.bytes": str(topics.MAX_MESSAGE_BYTES)}


def test_configs_carry_retention_and_message_size_when_set() -> None:
    spec = topics.TopicSpec("t", retention_ms=3_600_000, max_message_bytes=4 << 20)
    assert spec.configs() == {"retention.ms": "3600000", "max.message.bytes": "4194304"}


def test_renaming_keeps_what_the_topic_is() -> None:
    renamed = topics.K8S.named("test-k8s")
    assert renamed.name == "test-k8s" and renamed.compacted and renamed.partitions == topics.K8S.partitions
    assert topics.K8S.name == "peregrine.k8s"


def test_dlq_headers_do_not_collide_with_topic_names() -> None:
    headers = {dlq.REASON, dlq.DETAIL, dlq.TOPIC, dlq.PARTITION, dlq.OFFSET, dlq.DESTINATION, dlq.ATTEMPTS}
    assert len(headers) == 7 and all(h.startswith("peregrine.dlq.") for h in headers)
    assert not headers & {t.name for t in topics.CATALOG}
