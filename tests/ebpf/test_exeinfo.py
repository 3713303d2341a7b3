"""The exe-file extras without root: which probe macros the running kernel's BTF gives, what a
kernel lacking members loses (the fields stay missing, the probe still builds, one warning each),
and the EXE_* flags computed from the probe's inode item."""

from __future__ import annotations

import logging
import os
import struct
from pathlib import Path

import pytest

from collectors import loader
from collectors.btf import VMLINUX, Btf, exe_offsets
from collectors.cgroups import CgroupResolver
from collectors.errors import BtfError
from collectors.exeinfo import ExeInfo, exe_info
from collectors.header import PG_EXE_HAVE_LAYER, PG_EXE_HAVE_TIMES, PG_EXE_ITEM, PG_EXE_UPPER
from collectors.proctable import ProcTable
from rules.record import EXE_LOWER_LAYER, EXE_UPPER_LAYER, EXE_WRITABLE, P_EXE_INO_CTIME, P_EXE_INO_MTIME

needs_btf = pytest.mark.skipif(not os.access(VMLINUX, os.R_OK), reason="no readable kernel BTF")


class _Hiding(Btf):
    """The running kernel's BTF with some members taken away, as an older or newer kernel lacks them."""

    def __init__(self, hidden: set[tuple[str, str]]) -> None:
        with open(VMLINUX, "rb") as f:
            super().__init__(f.read(), "hiding")
        self.hidden = hidden

    def offsetof(self, struct_name: str, path: str) -> int:
        if (struct_name, path.split(".")[0]) in self.hidden:
            raise BtfError(f"hidden {struct_name}.{path}")
        return super().offsetof(struct_name, path)


_TIMES = {("inode", m) for m in ("i_ctime_sec", "__i_ctime", "i_ctime")}


@needs_btf
def test_running_kernel_gives_the_inode_reads_in_one_span() -> None:
    values, missing = exe_offsets(Btf.load())
    assert values["PG_EXE"] == 1 and "PG_EXE_TIMES" in values, missing
    lo, n = values["PG_INODE_LO"], values["PG_INODE_LEN"]
    assert 0 < n <= 2048  # the probe copies it into its 2 KiB task scratch
    for key in ("OFF_INODE_I_INO", "OFF_INODE_I_MODE", "OFF_INODE_CTIME_SEC", "OFF_INODE_MTIME_NSEC"):
        assert lo <= values[key] < lo + n


@needs_btf
def test_missing_members_leave_their_fields_missing_and_say_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    values, missing = exe_offsets(_Hiding(_TIMES | {("ovl_inode", "__upperdentry")}))
    assert values["PG_EXE"] == 1
    assert "PG_EXE_TIMES" not in values and "PG_EXE_OVL" not in values
    assert not any(k.startswith(("OFF_INODE_CTIME", "OFF_OVL")) for k in values)
    assert len(missing) == 2 and "proc.exe_ino" in missing[0] and "upper_layer" in missing[1]

    values, missing = exe_offsets(_Hiding({("cred", "fsuid")}))
    assert values == {} and missing == ["cred.fsuid (every exe field stays missing)"]

    with caplog.at_level(logging.WARNING, logger="peregrine.collector"):
        flags, _, _ = loader.build_cflags(
            _Hiding({("cred", "fsuid")}), {"openat"}, 1, 4096, tracefs=str(tmp_path)
        )
    assert not any(f.startswith("-DPG_EXE") for f in flags)
    assert [r.getMessage() for r in caplog.records if "exe" in r.getMessage()] == [
        "not in this kernel's BTF, so not read at exec: cred.fsuid (every exe field stays missing)"
    ]


def _item(
    *, mode: int = 0o100755, i_uid: int = 0, i_gid: int = 0, fsuid: int = 0, fsgid: int = 0,
    bits: int = PG_EXE_HAVE_TIMES, i_flags: int = 0, s_flags: int = 0,
) -> bytes:
    return struct.pack("<QqqIIIIIIIHBxII", 42, 1_700_000_000, 1_600_000_000, 5, 7, i_uid, i_gid, fsuid, fsgid,
                       0x794C7630, mode, bits, i_flags, s_flags)


def test_item_values_and_layer_flags() -> None:
    assert len(_item()) == PG_EXE_ITEM
    times = (1_700_000_000_000_000_005, 1_600_000_000_000_000_007)
    assert exe_info(_item(), 0) == ExeInfo(42, *times, EXE_WRITABLE)
    assert exe_info(_item(bits=0), 0) == ExeInfo(42, None, None, EXE_WRITABLE)
    assert exe_info(b"", 0) is None
    upper = exe_info(_item(bits=PG_EXE_HAVE_LAYER | PG_EXE_UPPER), 0)
    lower = exe_info(_item(bits=PG_EXE_HAVE_LAYER), 0)
    assert upper is not None and upper.flags & (EXE_UPPER_LAYER | EXE_LOWER_LAYER) == EXE_UPPER_LAYER
    assert lower is not None and lower.flags & (EXE_UPPER_LAYER | EXE_LOWER_LAYER) == EXE_LOWER_LAYER


@pytest.mark.parametrize(
    ("item", "caps", "writable"),
    [
        (_item(fsuid=1000, fsgid=1000), 0, False),  # root's 0755 file, another user
        (_item(fsuid=1000, fsgid=1000), 1 << 1, True),  # ... with CAP_DAC_OVERRIDE
        (_item(i_uid=1000, fsuid=1000, mode=0o100555), 0, True),  # the owner may chmod it
        (_item(fsuid=1000, fsgid=0, mode=0o100775), 0, True),  # group-writable, same group
        (_item(fsuid=1000, fsgid=1000, mode=0o100775), 0, False),  # group-writable, other group
        (_item(fsuid=1000, fsgid=1000, mode=0o100757), 0, True),  # world-writable
        (_item(s_flags=1), 0, False),  # read-only filesystem, even for the owner
        (_item(i_flags=1 << 3), 0, False),  # immutable
    ],
)
def test_writable_approximation(item: bytes, caps: int, writable: bool) -> None:
    info = exe_info(item, caps)
    assert info is not None and bool(info.flags & EXE_WRITABLE) is writable


def test_processes_found_in_proc_get_their_executable_inode_times() -> None:
    table = ProcTable("node-a", 0, CgroupResolver(mount=""))
    table.seed()
    me = table.get(os.getpid())
    st = os.stat("/proc/self/exe")
    assert me is not None and (me[P_EXE_INO_CTIME], me[P_EXE_INO_MTIME]) == (st.st_ctime_ns, st.st_mtime_ns)
