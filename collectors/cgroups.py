"""cgroup -> container id: the `P_CONTAINER_ID` of a process (a 64-hex id, or "host").

The probe sends `bpf_get_current_cgroup_id()`, the inode of the task's cgroup v2 directory. The
path comes from `open_by_handle_at` on the cgroup2 mount (O(1); a deleted cgroup gives ESTALE;
it needs CAP_DAC_READ_SEARCH), then from a walk of the mount when that fails, once per cgroup.
Paths are parsed with the layouts of containerd, CRI-O, docker and podman under kubepods (systemd
and cgroupfs drivers), as Falco's CRI layouts do.
On nodes whose unified hierarchy is empty (cgroup v1 only, or hybrid without a v2 tree) every task
reports the root id; `container_id_v1` then reads `/proc/PID/cgroup` while the process lives.
Results are cached by id (a cgroup id is never reused while the kernel is up).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import re
import struct
from typing import Final

from rules.record import HOST_CONTAINER_ID

_ID_RE: Final = re.compile(
    r"^(?:(?:docker|cri-containerd|crio|libpod|containerd)-)?([0-9a-f]{64})(?:\.scope)?$"
)
_POD_RE: Final = re.compile(r"pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12})")
_FILEID_KERNFS: Final = 0xFE
_ROOT_ID: Final = 1
_WALK_LIMIT: Final = 100_000  # directories per fallback walk


def parse_container_id(path: str) -> str:
    """The container id in a cgroup path, or "host". Conmon cgroups belong to the host."""
    for part in reversed(re.split(r"[/:]", path)):
        if part.startswith(("crio-conmon-", "libpod-conmon-")):
            continue
        m = _ID_RE.match(part)
        if m:
            return m.group(1)
    return HOST_CONTAINER_ID


def parse_pod_uid(path: str) -> str | None:
    m = _POD_RE.search(path)
    return m.group(1).replace("_", "-") if m else None


def cgroup2_mount(mountinfo: str = "/proc/self/mountinfo") -> str | None:
    """Mount point of the cgroup v2 hierarchy (`/sys/fs/cgroup` or `/sys/fs/cgroup/unified`)."""
    try:
        with open(mountinfo) as f:
            for line in f:
                left, _, right = line.partition(" - ")
                if right.split(" ", 1)[0] == "cgroup2":
                    return left.split()[4]
    except OSError:
        return None
    return None


class _FileHandle(ctypes.Structure):
    _fields_ = [
        ("handle_bytes", ctypes.c_uint),
        ("handle_type", ctypes.c_int),
        ("f_handle", ctypes.c_char * 8),
    ]


class CgroupResolver:
    """cgroup v2 id -> container id, cached."""

    def __init__(self, mount: str | None = None) -> None:
        self.mount = mount if mount is not None else cgroup2_mount()
        self._cache: dict[int, str] = {_ROOT_ID: HOST_CONTAINER_ID}
        self._mount_fd = -1
        self._open_by_handle = None
        if self.mount:
            try:
                self._mount_fd = os.open(self.mount, os.O_RDONLY | os.O_DIRECTORY)
                libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
                self._open_by_handle = libc.open_by_handle_at
            except (OSError, AttributeError):
                self._open_by_handle = None

    def close(self) -> None:
        if self._mount_fd >= 0:
            os.close(self._mount_fd)
            self._mount_fd = -1

    def container_id(self, cgroup_id: int) -> str:
        cid = self._cache.get(cgroup_id)
        if cid is None:
            path = self.path(cgroup_id)
            cid = parse_container_id(path) if path else HOST_CONTAINER_ID
            self._cache[cgroup_id] = cid
        return cid

    def path(self, cgroup_id: int) -> str | None:
        """Path of a live cgroup below the v2 mount, or None."""
        return self._by_handle(cgroup_id) or self._by_walk(cgroup_id)

    def _by_handle(self, cgroup_id: int) -> str | None:
        if self._open_by_handle is None:
            return None
        handle = _FileHandle(8, _FILEID_KERNFS, struct.pack("<Q", cgroup_id))
        fd = self._open_by_handle(self._mount_fd, ctypes.byref(handle), os.O_RDONLY | os.O_DIRECTORY)
        if fd < 0:
            if ctypes.get_errno() == errno.EPERM:
                # no CAP_DAC_READ_SEARCH (the chart does not grant it: with open_by_handle_at it
                # is a container-escape primitive): the walk answers, so stop asking
                self._open_by_handle = None
            return None
        try:
            return os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            return None
        finally:
            os.close(fd)

    def _by_walk(self, cgroup_id: int) -> str | None:
        if not self.mount:
            return None
        seen = 0
        for root, dirs, _files in os.walk(self.mount):
            seen += 1
            if seen > _WALK_LIMIT:
                break
            for d in dirs:
                full = os.path.join(root, d)
                try:
                    if os.stat(full).st_ino == cgroup_id:
                        return full
                except OSError:
                    continue
        return None


def container_id_v1(pid: int) -> str:
    """Container id from any hierarchy in /proc/PID/cgroup (v1 nodes); "host" when none or gone."""
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            lines = f.read().splitlines()
    except OSError:
        return HOST_CONTAINER_ID
    for line in lines:
        cid = parse_container_id(line.split(":", 2)[-1])
        if cid != HOST_CONTAINER_ID:
            return cid
    return HOST_CONTAINER_ID
