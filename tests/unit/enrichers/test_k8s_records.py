"""The peregrine.k8s record: built from the API's pod and service JSON, encoded, decoded, laid out."""

from __future__ import annotations

import dataclasses
from typing import Any

import msgpack
import pytest

from enrichers.errors import RecordError
from enrichers.records import (
    ServiceMeta,
    containers_from_pod,
    decode,
    encode,
    parse_container_id,
    parse_image,
    services_from_service,
    to_container_record,
)
from rules.record import (
    C_ID,
    C_IMAGE_REPO,
    C_IMAGE_TAG,
    C_MOUNTS,
    C_NAME,
    C_PRIVILEGED,
    C_TYPE,
    CONTAINER_LEN,
    K_NS,
    K_POD_LABELS,
    K_POD_NAME,
    K_POD_UID,
)

CID = "3fc8155f9d1a" + "0" * 52


def pod(**status_extra: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "mysql-db-1", "namespace": "default", "uid": "u-1", "labels": {"b": "2", "a": "1"},
        },
        "spec": {
            "nodeName": "node-a",
            "containers": [
                {
                    "name": "mysql",
                    "image": "mysql:8.0",
                    "securityContext": {"privileged": True},
                    "volumeMounts": [{"name": "data", "mountPath": "/var/lib/mysql"},
                                     {"name": "cfg", "mountPath": "/etc/cfg", "readOnly": True}],
                },
                {"name": "sidecar", "image": "busybox"},
            ],
            "volumes": [
                {"name": "data", "hostPath": {"path": "/srv/mysql"}}, {"name": "cfg", "configMap": {}},
            ],
        },
        "status": {
            "podIP": "10.1.2.3",
            "containerStatuses": [
                {"name": "mysql", "containerID": f"containerd://{CID}",
                 "image": "docker.io/library/mysql:8.0",
                 "imageID": "docker.io/library/mysql@sha256:abc",
                 "state": {"running": {"startedAt": "2026-01-02T03:04:05Z"}}},
                {"name": "sidecar", "image": "busybox"},  # not started yet: no id
            ],
            **status_extra,
        },
    }


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("nginx", ("nginx", "latest", None)),
        ("nginx:1.25", ("nginx", "1.25", None)),
        ("registry:5000/team/app", ("registry:5000/team/app", "latest", None)),
        ("registry:5000/team/app:v2", ("registry:5000/team/app", "v2", None)),
        ("app@sha256:ff", ("app", None, "sha256:ff")),
        ("app:1@sha256:ff", ("app", "1", "sha256:ff")),
        ("", (None, None, None)),
    ],
)
def test_image_reference_splits_like_falco_fields(ref: str, expected: tuple[Any, ...]) -> None:
    assert parse_image(ref) == expected


def test_container_id_loses_its_runtime_scheme() -> None:
    assert parse_container_id(f"cri-o://{CID}") == ("cri-o", CID)
    assert parse_container_id(CID) == (None, CID)
    assert parse_container_id("") is None


def test_pod_yields_one_record_per_container_with_an_id() -> None:
    [meta] = containers_from_pod(pod())
    assert meta.container_id == CID
    assert (meta.namespace, meta.pod_name, meta.pod_uid) == ("default", "mysql-db-1", "u-1")
    assert meta.node == "node-a"
    assert (meta.name, meta.runtime, meta.privileged) == ("mysql", "containerd", True)
    assert (meta.image_repository, meta.image_tag) == ("docker.io/library/mysql", "8.0")
    assert meta.image_digest == "sha256:abc"
    assert meta.start_ts == 1767323045 * 10**9
    assert meta.mounts == (
        ("/srv/mysql", "/var/lib/mysql", "", True, "private"), ("cfg", "/etc/cfg", "ro", False, "private"))
    assert list(meta.labels) == ["a", "b"]


def test_init_and_ephemeral_containers_are_published_too() -> None:
    other = "ab" * 32
    [init, main] = containers_from_pod(pod(initContainerStatuses=[{"name": "init", "containerID": f"docker://{other}"}]))
    assert (init.container_id, init.runtime, main.container_id) == (other, "docker", CID)


def test_service_cluster_ips_map_to_dns_names_and_headless_services_to_nothing() -> None:
    svc = {"metadata": {"name": "kubernetes", "namespace": "default"},
           "spec": {"clusterIP": "10.0.0.1", "clusterIPs": ["10.0.0.1", "fd00::1"]}}
    metas = services_from_service(svc, "cluster.local")
    dns = "kubernetes.default.svc.cluster.local"
    assert [(m.ip, m.dns_name) for m in metas] == [("10.0.0.1", dns), ("fd00::1", dns)]
    assert services_from_service({"metadata": {}, "spec": {"clusterIP": "None"}}, "cluster.local") == []


def test_records_round_trip_and_encode_deterministically() -> None:
    [meta] = containers_from_pod(pod())
    key, value = encode(meta)
    assert key == CID.encode()
    assert decode(key, value) == meta
    assert encode(dataclasses.replace(meta, labels={"b": "2", "a": "1"}))[1] == value
    svc = ServiceMeta("10.0.0.1", "kubernetes", "default", "kubernetes.default.svc.cluster.local")
    skey, svalue = encode(svc)
    assert skey == b"svc:10.0.0.1" and decode(skey, svalue) == svc


def test_tombstone_decodes_to_none() -> None:
    assert decode(CID.encode(), None) is None


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (b"\xc1", "not msgpack"),
        (msgpack.packb([1]), "not a map"),
        (msgpack.packb({"v": 99, "k": "c"}), "unsupported version 99"),
        (msgpack.packb({"v": 1, "k": "x"}), "unknown kind 'x'"),
        (msgpack.packb({"v": 1, "k": "s", "ip": "1.2.3.4"}), "field 'name' missing"),
    ],
)
def test_bad_values_name_key_and_field(value: bytes, message: str) -> None:
    with pytest.raises(RecordError, match=message) as e:
        decode(b"k1", value)
    assert "b'k1'" in str(e.value)


def test_container_record_fills_the_rule_engine_slots() -> None:
    [meta] = containers_from_pod(pod())
    rec = to_container_record(meta)
    assert len(rec) == CONTAINER_LEN
    assert (rec[C_ID], rec[C_NAME], rec[C_TYPE], rec[C_PRIVILEGED]) == (CID, "mysql", "containerd", True)
    assert (rec[C_IMAGE_REPO], rec[C_IMAGE_TAG]) == ("docker.io/library/mysql", "8.0")
    assert (rec[K_NS], rec[K_POD_NAME], rec[K_POD_UID]) == ("default", "mysql-db-1", "u-1")
    assert rec[K_POD_LABELS] == {"a": "1", "b": "2"}
    assert rec[C_MOUNTS][0] == ["/srv/mysql", "/var/lib/mysql", "", True, "private"]
