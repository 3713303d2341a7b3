"""The executable's inode at exec: the item the probe appends to a successful exec record.

Gives `proc.exe_ino`, `proc.exe_ino.ctime`/`mtime` and the EXE_* flags Falco sets at execve exit.
The probe copies raw inode fields (probe.bpf.c `pg_put_exe`, layout in probe.h); the flags are
computed here, where they can be read and tested.

Limits (an approximation, as Falco's is): `EXE_WRITABLE` looks at the mode bits, the owner, a
read-only superblock, the immutable flag and CAP_DAC_OVERRIDE, never at ACLs, supplementary groups
or LSMs. `EXE_UPPER_LAYER` means the overlayfs inode has an upper-layer copy (created or modified
in the container); `EXE_LOWER_LAYER` means it is overlayfs with no upper copy.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

from collectors.header import PG_EXE_HAVE_LAYER, PG_EXE_HAVE_TIMES, PG_EXE_ITEM, PG_EXE_UPPER
from rules.record import EXE_LOWER_LAYER, EXE_UPPER_LAYER, EXE_WRITABLE

_ITEM: Final = struct.Struct("<QqqIIIIIIIHBxII")
assert _ITEM.size == PG_EXE_ITEM
_NS: Final = 1_000_000_000
_S_IFMT, _S_IFREG, _S_IFDIR, _S_IFLNK = 0o170000, 0o100000, 0o040000, 0o120000
_SB_RDONLY: Final = 1
_S_IMMUTABLE: Final = 1 << 3  # inode->i_flags
_CAP_DAC_OVERRIDE: Final = 1
_INVALID_ID: Final = 0xFFFFFFFF


@dataclass(frozen=True, slots=True)
class ExeInfo:
    ino: int
    ctime_ns: int | None
    mtime_ns: int | None
    flags: int  # rules.record EXE_* bits, EXE_FROM_MEMFD excepted (it comes from the path)


def exe_info(item: bytes, cap_effective: int) -> ExeInfo | None:
    """The item's values, or None when the probe could not read the inode (an empty item)."""
    if len(item) != PG_EXE_ITEM:
        return None
    (ino, ctime_s, mtime_s, ctime_ns, mtime_ns, i_uid, i_gid, fsuid, fsgid, _magic, mode, bits,
     i_flags, s_flags) = _ITEM.unpack(item)  # fmt: skip
    flags = 0
    if bits & PG_EXE_HAVE_LAYER:
        flags |= EXE_UPPER_LAYER if bits & PG_EXE_UPPER else EXE_LOWER_LAYER
    if _writable(mode, i_uid, i_gid, fsuid, fsgid, i_flags, s_flags, cap_effective):
        flags |= EXE_WRITABLE
    if bits & PG_EXE_HAVE_TIMES:
        return ExeInfo(ino, ctime_s * _NS + ctime_ns, mtime_s * _NS + mtime_ns, flags)
    return ExeInfo(ino, None, None, flags)


def _writable(
    mode: int, i_uid: int, i_gid: int, fsuid: int, fsgid: int, i_flags: int, s_flags: int, caps: int
) -> bool:
    if s_flags & _SB_RDONLY and mode & _S_IFMT in (_S_IFREG, _S_IFDIR, _S_IFLNK):
        return False
    if i_flags & _S_IMMUTABLE or i_uid == _INVALID_ID or i_gid == _INVALID_ID:
        return False
    if fsuid == i_uid:  # the owner can always make it writable (inode_owner_or_capable)
        return True
    if caps >> _CAP_DAC_OVERRIDE & 1:
        return True
    perm = mode >> 3 if fsgid == i_gid else mode
    return bool(perm & 0o002)
