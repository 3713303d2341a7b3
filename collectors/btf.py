"""Kernel struct member offsets read from the running kernel's BTF (`/sys/kernel/btf/vmlinux`).

The installable kernel headers do not match the running kernel, so the probe never dereferences a
kernel struct through a header type: it reads `ptr + OFF_X`, with every offset computed here at
start. A missing struct or member raises `BtfError`, so the collector fails closed instead of
reading garbage. Only the parts of the format the lookup needs are parsed (structs, unions,
typedef/modifier chains, arrays); bitfield members are refused since the probe reads whole bytes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

from collectors.errors import BtfError

VMLINUX: Final = "/sys/kernel/btf/vmlinux"
_MAGIC: Final = 0xEB9F
_KIND_INT, _KIND_PTR, _KIND_ARRAY, _KIND_STRUCT, _KIND_UNION = 1, 2, 3, 4, 5
_KIND_ENUM, _KIND_TYPEDEF, _KIND_VOLATILE, _KIND_CONST, _KIND_RESTRICT = 6, 8, 9, 10, 11
_KIND_FUNC_PROTO, _KIND_VAR, _KIND_DATASEC = 13, 14, 15
_KIND_DECL_TAG, _KIND_TYPE_TAG, _KIND_ENUM64 = 17, 18, 19
_MODIFIERS: Final = (_KIND_TYPEDEF, _KIND_VOLATILE, _KIND_CONST, _KIND_RESTRICT, _KIND_TYPE_TAG)

# (macro name, struct, member path) for every offset the probe uses; probe.bpf.c names them OFF_*.
FIELDS: Final[tuple[tuple[str, str, str], ...]] = (
    ("TASK_REAL_PARENT", "task_struct", "real_parent"),
    ("TASK_GROUP_LEADER", "task_struct", "group_leader"),
    ("TASK_TGID", "task_struct", "tgid"),
    ("TASK_PID", "task_struct", "pid"),
    ("TASK_LOGINUID", "task_struct", "loginuid"),
    ("TASK_SIGNAL", "task_struct", "signal"),
    ("TASK_CRED", "task_struct", "cred"),
    ("TASK_MM", "task_struct", "mm"),
    ("TASK_FILES", "task_struct", "files"),
    ("TASK_START_BOOTTIME", "task_struct", "start_boottime"),
    ("TASK_EXIT_CODE", "task_struct", "exit_code"),
    ("TASK_STACK", "task_struct", "stack"),
    ("TASK_COMM", "task_struct", "comm"),
    ("PT_REGS_R10", "pt_regs", "r10"),
    ("SIGNAL_TTY", "signal_struct", "tty"),
    ("SIGNAL_PIDS", "signal_struct", "pids"),
    ("TTY_INDEX", "tty_struct", "index"),
    ("TTY_DRIVER", "tty_struct", "driver"),
    ("TTY_DRIVER_MAJOR", "tty_driver", "major"),
    ("TTY_DRIVER_MINOR_START", "tty_driver", "minor_start"),
    ("CRED_EUID", "cred", "euid"),
    ("CRED_EGID", "cred", "egid"),
    ("CRED_CAP_INHERITABLE", "cred", "cap_inheritable"),
    ("CRED_CAP_PERMITTED", "cred", "cap_permitted"),
    ("CRED_CAP_EFFECTIVE", "cred", "cap_effective"),
    ("MM_ARG_START", "mm_struct", "arg_start"),
    ("MM_ARG_END", "mm_struct", "arg_end"),
    ("MM_ENV_START", "mm_struct", "env_start"),
    ("MM_ENV_END", "mm_struct", "env_end"),
    # the working directory, walked dentry by dentry (pg_put_cwd)
    ("TASK_FS", "task_struct", "fs"),
    ("FS_ROOT", "fs_struct", "root"),
    ("FS_PWD", "fs_struct", "pwd"),
    ("PATH_MNT", "path", "mnt"),
    ("PATH_DENTRY", "path", "dentry"),
    ("DENTRY_D_PARENT", "dentry", "d_parent"),
    ("DENTRY_D_NAME_NAME", "dentry", "d_name.name"),
    ("VFSMOUNT_MNT_ROOT", "vfsmount", "mnt_root"),
    ("MOUNT_MNT", "mount", "mnt"),
    ("MOUNT_MNT_PARENT", "mount", "mnt_parent"),
    ("MOUNT_MNT_MOUNTPOINT", "mount", "mnt_mountpoint"),
    ("PID_LEVEL", "pid", "level"),
    ("PID_NUMBERS", "pid", "numbers"),
    ("UPID_NR", "upid", "nr"),
    ("FILES_FDT", "files_struct", "fdt"),
    ("FDT_MAX_FDS", "fdtable", "max_fds"),
    ("FDT_FD", "fdtable", "fd"),
    ("FILE_PRIVATE_DATA", "file", "private_data"),
    ("FILE_F_PATH", "file", "f_path"),
    ("SOCKET_SK", "socket", "sk"),
    ("SK_FAMILY", "sock", "__sk_common.skc_family"),
    ("SK_DADDR", "sock", "__sk_common.skc_daddr"),
    ("SK_RCV_SADDR", "sock", "__sk_common.skc_rcv_saddr"),
    ("SK_DPORT", "sock", "__sk_common.skc_dport"),
    ("SK_NUM", "sock", "__sk_common.skc_num"),
    ("SK_V6_DADDR", "sock", "__sk_common.skc_v6_daddr"),
    ("SK_V6_RCV_SADDR", "sock", "__sk_common.skc_v6_rcv_saddr"),
    ("SK_TYPE", "sock", "sk_type"),
    ("SK_PROTOCOL", "sock", "sk_protocol"),
)
# sizes the probe needs besides offsets
SIZES: Final[tuple[tuple[str, str], ...]] = (("UPID", "upid"), ("PT_REGS", "pt_regs"))
# the probe reads r10 .. orig_ax of pt_regs in one copy: the x86_64 order, checked at start
PT_REGS_RUN: Final = ("r10", "r9", "r8", "ax", "cx", "dx", "si", "di", "orig_ax")


@dataclass(frozen=True, slots=True)
class _Type:
    kind: int
    name: str
    size_or_type: int
    members: tuple[tuple[str, int, int], ...]  # (name, type id, bit offset)
    bitfield: tuple[bool, ...]
    elem: int


class Btf:
    """Types of one BTF blob, enough to resolve `struct.member.member` to a byte offset."""

    def __init__(self, data: bytes, source: str = VMLINUX) -> None:
        self.source = source
        if len(data) < 24:
            raise BtfError(f"{source}: {len(data)} bytes is too short for a BTF header")
        magic, _ver, _flags, hdr_len, type_off, type_len, str_off, str_len = struct.unpack_from(
            "<HBBIIIII", data, 0
        )
        if magic != _MAGIC:
            raise BtfError(f"{source}: bad magic {magic:#x}, expected {_MAGIC:#x}")
        self._strings = data[hdr_len + str_off : hdr_len + str_off + str_len]
        self._types: list[_Type] = [_Type(0, "", 0, (), (), 0)]  # id 0 is void
        self._structs: dict[str, int] = {}
        self._parse(data, hdr_len + type_off, hdr_len + type_off + type_len)

    @classmethod
    def load(cls, path: str = VMLINUX) -> Btf:
        try:
            with open(path, "rb") as f:
                return cls(f.read(), path)
        except FileNotFoundError:
            raise BtfError(
                f"{path} not found: the kernel was built without CONFIG_DEBUG_INFO_BTF, and the collector "
                "needs BTF to compute struct offsets (the installed headers do not match the kernel)"
            ) from None
        except OSError as exc:
            raise BtfError(f"cannot read {path}: {exc.strerror}") from None

    def _name(self, off: int) -> str:
        end = self._strings.index(b"\0", off)
        return self._strings[off:end].decode("utf-8", "replace")

    def _parse(self, d: bytes, p: int, end: int) -> None:
        while p < end:
            name_off, info, size_or_type = struct.unpack_from("<III", d, p)
            p += 12
            kind, vlen, kflag = (info >> 24) & 0x1F, info & 0xFFFF, info >> 31
            members: list[tuple[str, int, int]] = []
            bitfield: list[bool] = []
            elem = 0
            if kind in (_KIND_INT, _KIND_VAR, _KIND_DECL_TAG):
                p += 4
            elif kind == _KIND_ARRAY:
                elem = struct.unpack_from("<I", d, p)[0]
                p += 12
            elif kind in (_KIND_STRUCT, _KIND_UNION):
                for _ in range(vlen):
                    m_name, m_type, m_off = struct.unpack_from("<III", d, p)
                    p += 12
                    members.append((self._name(m_name), m_type, (m_off & 0xFFFFFF) if kflag else m_off))
                    bitfield.append(bool(kflag and m_off >> 24))
            elif kind in (_KIND_ENUM, _KIND_FUNC_PROTO):
                p += 8 * vlen
            elif kind in (_KIND_DATASEC, _KIND_ENUM64):
                p += 12 * vlen
            name = self._name(name_off)
            self._types.append(_Type(kind, name, size_or_type, tuple(members), tuple(bitfield), elem))
            if kind == _KIND_STRUCT and name:
                self._structs.setdefault(name, len(self._types) - 1)

    def _strip(self, tid: int) -> int:
        while self._types[tid].kind in _MODIFIERS:
            tid = self._types[tid].size_or_type
        return tid

    def _member(self, tid: int, name: str) -> tuple[int, int] | None:
        t = self._types[self._strip(tid)]
        for (m_name, m_type, bit_off), is_bitfield in zip(t.members, t.bitfield, strict=True):
            if m_name == name:
                if is_bitfield or bit_off % 8:
                    return None
                return bit_off // 8, m_type
            if not m_name:  # anonymous struct/union: its members belong to the parent
                found = self._member(m_type, name)
                if found is not None:
                    return bit_off // 8 + found[0], found[1]
        return None

    def offsetof(self, struct_name: str, path: str) -> int:
        """Byte offset of `path` (dot-separated, through named or anonymous members)."""
        if struct_name not in self._structs:
            raise BtfError(f"{self.source}: struct {struct_name} not found")
        tid, off = self._structs[struct_name], 0
        for part in path.split("."):
            found = self._member(tid, part)
            if found is None:
                raise BtfError(f"{self.source}: struct {struct_name} has no byte-aligned member {path!r}")
            off += found[0]
            tid = found[1]
        return off

    def sizeof(self, struct_name: str) -> int:
        if struct_name not in self._structs:
            raise BtfError(f"{self.source}: struct {struct_name} not found")
        return self._types[self._structs[struct_name]].size_or_type


def probe_offsets(btf: Btf) -> dict[str, int]:
    """Every OFF_*/SIZE_* value the probe is compiled with; raises BtfError on the first missing one."""
    values = {f"OFF_{macro}": btf.offsetof(s, path) for macro, s, path in FIELDS}
    values.update({f"SIZE_{macro}": btf.sizeof(s) for macro, s in SIZES})
    run = [btf.offsetof("pt_regs", r) for r in PT_REGS_RUN]
    if run != list(range(run[0], run[0] + 8 * len(run), 8)):
        layout = dict(zip(PT_REGS_RUN, run, strict=True))
        raise BtfError(f"struct pt_regs is not laid out as on x86_64: {layout}")
    return values


# The executable's inode, read at exec for proc.is_exe_writable/upper_layer and proc.exe_ino.*:
# optional extras, so a missing member leaves those fields missing instead of stopping the probe.
EXE_FIELDS: Final[tuple[tuple[str, str, str], ...]] = (
    ("MM_EXE_FILE", "mm_struct", "exe_file"),
    ("FILE_F_INODE", "file", "f_inode"),
    ("INODE_I_MODE", "inode", "i_mode"),
    ("INODE_I_UID", "inode", "i_uid"),
    ("INODE_I_GID", "inode", "i_gid"),
    ("INODE_I_FLAGS", "inode", "i_flags"),
    ("INODE_I_SB", "inode", "i_sb"),
    ("INODE_I_INO", "inode", "i_ino"),
    ("SB_S_FLAGS", "super_block", "s_flags"),
    ("SB_S_MAGIC", "super_block", "s_magic"),
    ("CRED_FSUID", "cred", "fsuid"),
    ("CRED_FSGID", "cred", "fsgid"),
)
# inode times moved across kernels: i_ctime_sec/_nsec (6.11+), __i_ctime (6.6-6.10; i_mtime until
# 6.7), i_ctime (before); a seconds member and a nanoseconds member (read as u32: < 10^9) each
_INODE_TIMES: Final = {
    "CTIME": (("i_ctime_sec", "i_ctime_nsec"), ("__i_ctime.tv_sec", "__i_ctime.tv_nsec"),
              ("i_ctime.tv_sec", "i_ctime.tv_nsec")),
    "MTIME": (("i_mtime_sec", "i_mtime_nsec"), ("__i_mtime.tv_sec", "__i_mtime.tv_nsec"),
              ("i_mtime.tv_sec", "i_mtime.tv_nsec")),
}  # fmt: skip
# overlayfs embeds the vfs inode in struct ovl_inode; a non-NULL __upperdentry means the file has
# an upper-layer copy (written in the container). Read from vmlinux, so overlay must be built in:
# a module's BTF (/sys/kernel/btf/overlay) is split BTF on top of vmlinux, which Btf does not parse.
_OVL_FIELDS: Final = (("OVL_VFS_INODE", "vfs_inode"), ("OVL_UPPERDENTRY", "__upperdentry"))


def _optional(btf: Btf, struct_name: str, path: str) -> int | None:
    try:
        return btf.offsetof(struct_name, path)
    except BtfError:
        return None


def exe_offsets(btf: Btf) -> tuple[dict[str, int], list[str]]:
    """Macros for the probe's exe-file reads (PG_EXE, PG_EXE_TIMES, PG_EXE_OVL and their OFF_*,
    plus the inode span PG_INODE_LO/PG_INODE_LEN read in one copy), and what is missing, in words."""
    values: dict[str, int] = {}
    missing: list[str] = []
    for macro, s, path in EXE_FIELDS:
        off = _optional(btf, s, path)
        if off is None:
            return {}, [f"{s}.{path} (every exe field stays missing)"]
        values[f"OFF_{macro}"] = off
    values["PG_EXE"] = 1
    times: dict[str, int] = {}
    for name, variants in _INODE_TIMES.items():
        for sec, nsec in variants:
            sec_off, nsec_off = _optional(btf, "inode", sec), _optional(btf, "inode", nsec)
            if sec_off is not None and nsec_off is not None:
                times |= {f"OFF_INODE_{name}_SEC": sec_off, f"OFF_INODE_{name}_NSEC": nsec_off}
                break
        else:
            names = " or ".join(v[0] for v in variants)
            missing.append(f"inode {name.lower()} ({names}; proc.exe_ino.* stay missing)")
    if len(times) == 4:
        values |= times | {"PG_EXE_TIMES": 1}
    else:
        times = {}
    inode_offs = [values[f"OFF_{m}"] for m, s, _ in EXE_FIELDS if s == "inode"]
    ends = [o + 8 for o in inode_offs] + [o + 8 for o in times.values()]
    values["PG_INODE_LO"] = min(inode_offs + list(times.values()))
    values["PG_INODE_LEN"] = max(ends) - values["PG_INODE_LO"]
    ovl = {f"OFF_{m}": _optional(btf, "ovl_inode", f) for m, f in _OVL_FIELDS}
    if all(v is not None for v in ovl.values()):
        values |= {k: v for k, v in ovl.items() if v is not None} | {"PG_EXE_OVL": 1}
    else:
        missing.append(
            "struct ovl_inode vfs_inode/__upperdentry in vmlinux (proc.is_exe_upper_layer and "
            "is_exe_lower_layer stay false)"
        )
    return values, missing
