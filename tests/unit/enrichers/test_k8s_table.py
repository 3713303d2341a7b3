"""The worker-side table: folds topic records, enriches process records, stays bounded."""

from __future__ import annotations

import pytest

from enrichers.errors import RecordError
from enrichers.records import ContainerMeta, ServiceMeta, encode
from enrichers.table import K8sTable
from rules.record import (
    HOST_CONTAINER_ID,
    K_NS,
    K_POD_NAME,
    P_CONTAINER,
    P_CONTAINER_ID,
    PROCESS_LEN,
    Process,
)


def meta(n: int, pod: str = "web") -> ContainerMeta:
    return ContainerMeta(
        container_id=f"{n:064x}", runtime="containerd", name="app", image="nginx:1", image_repository="nginx",
        image_tag="1", image_digest=None, privileged=False, start_ts=None, mounts=(), namespace="shop",
        pod_name=pod, pod_uid=f"uid-{n}", labels={"app": "web"}, pod_ip=None, node="n1",
    )


def proc(container_id: str) -> Process:
    p: Process = [None] * PROCESS_LEN
    p[P_CONTAINER_ID] = container_id
    return p


def test_records_fill_the_table_and_tombstones_empty_it() -> None:
    table = K8sTable()
    table.apply(*encode(meta(1)))
    rec = table.lookup(f"{1:064x}")
    assert rec is not None and (rec[K_NS], rec[K_POD_NAME]) == ("shop", "web")
    table.apply(*encode(meta(1, pod="web-2")))  # relabelled / updated: the latest value wins
    assert table.lookup(f"{1:064x}")[K_POD_NAME] == "web-2"  # type: ignore[index]
    table.apply(f"{1:064x}".encode(), None)
    assert table.lookup(f"{1:064x}") is None and len(table) == 0


def test_service_ips_resolve_to_dns_names_until_tombstoned() -> None:
    table = K8sTable()
    dns = "kubernetes.default.svc.cluster.local"
    table.apply(*encode(ServiceMeta("10.0.0.1", "kubernetes", "default", dns)))
    assert table.ip_names == {"10.0.0.1": dns}
    table.apply(b"svc:10.0.0.1", None)
    assert table.ip_names == {}


def test_enrich_fills_known_containers_and_keeps_unknown_ones() -> None:
    table = K8sTable()
    table.apply(*encode(meta(1)))
    known, unknown, host = proc(f"{1:064x}"), proc(f"{2:064x}"), proc(HOST_CONTAINER_ID)
    assert table.enrich([known, unknown, host]) == 1  # one container process still unknown
    assert known[P_CONTAINER] is table.lookup(f"{1:064x}")
    assert unknown[P_CONTAINER] is None and host[P_CONTAINER] is None
    assert (table.stats.enriched, table.stats.unknown) == (1, 1)  # the host process is not "unknown"


def test_table_is_bounded_and_evicts_the_least_recently_written() -> None:
    table = K8sTable(max_containers=3)
    for n in range(1, 5):
        table.apply(*encode(meta(n)))
    assert len(table) == 3 and table.lookup(f"{1:064x}") is None and table.stats.evicted == 1
    table.apply(*encode(meta(2)))  # rewritten: now the newest
    table.apply(*encode(meta(5)))
    assert table.lookup(f"{2:064x}") is not None and table.lookup(f"{3:064x}") is None


def test_undecodable_record_raises_with_its_key() -> None:
    with pytest.raises(RecordError, match="b'bad'"):
        K8sTable().apply(b"bad", b"\xc1")


def test_tombstone_with_a_key_that_is_not_utf8_is_a_harmless_miss() -> None:
    table = K8sTable()
    table.apply(b"\xff\xfe", None)
    table.apply(b"svc:\xff", None)
    assert len(table) == 0 and table.stats.tombstones == 2
