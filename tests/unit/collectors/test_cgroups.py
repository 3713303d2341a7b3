"""Container ids and pod uids from the cgroup layouts of containerd, CRI-O, docker and podman."""

from __future__ import annotations

import pytest

from collectors.cgroups import parse_container_id, parse_pod_uid

CID = "3fc8155f9d1a" + "0" * 44 + "deadbeef"
UID = "6b8a2c4e-1f3d-4b5a-9c8e-7d6f5a4b3c2d"
UID_ = UID.replace("-", "_")


@pytest.mark.parametrize(
    "path",
    [
        f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/cri-containerd-{CID}.scope",
        f"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice/crio-{CID}.scope",
        f"/kubepods/burstable/pod{UID}/{CID}",
        f"/kubepods-besteffort-pod{UID_}.slice:cri-containerd:{CID}",
        f"/system.slice/docker-{CID}.scope",
        f"/docker/{CID}",
        f"/machine.slice/libpod-{CID}.scope",
        f"/default/{CID}",
    ],
)
def test_container_layouts_give_the_64_hex_id(path: str) -> None:
    assert parse_container_id(path) == CID


@pytest.mark.parametrize(
    "path",
    ["/", "/user.slice/user-0.slice/session-1.scope", "/system.slice/containerd.service",
     f"/kubepods.slice/kubepods-burstable-pod{UID_}.slice/crio-conmon-{CID}.scope",
     "/process_api/777930eeda9e9f90bf3d3bfdb65b00aa", f"/docker/{CID[:-1]}", f"/docker/{CID}x"],
)
def test_host_paths_and_conmon_and_near_misses_are_host(path: str) -> None:
    assert parse_container_id(path) == "host"


def test_pod_uid_from_either_driver() -> None:
    assert parse_pod_uid(f"/kubepods/burstable/pod{UID}/{CID}") == UID
    assert parse_pod_uid(f"/kubepods.slice/kubepods-burstable-pod{UID_}.slice/x") == UID
    assert parse_pod_uid("/system.slice") is None
