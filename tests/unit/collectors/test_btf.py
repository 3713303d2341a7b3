"""The BTF parser: offsets through anonymous members, fail-closed errors, and the running kernel."""

from __future__ import annotations

import os
import struct

import pytest

from collectors.btf import FIELDS, SIZES, VMLINUX, Btf, probe_offsets
from collectors.errors import BtfError


def _blob() -> bytes:
    """BTF with: int (id 1), ptr (2), struct inner {int a; int b} (3), union anon {int x; inner y} (4),
    struct outer {int first; <anon union> at 8; inner named at 16; bitfield 3 bits at 24*8} (5)."""
    names = b"\0int\0inner\0a\0b\0x\0y\0outer\0first\0named\0bits\0"

    def off(s: bytes) -> int:
        return names.index(s + b"\0")

    def t(name: int, kind: int, vlen: int, size: int, kflag: int = 0) -> bytes:
        return struct.pack("<III", name, (kflag << 31) | (kind << 24) | vlen, size)

    types = b"".join([
        t(off(b"int"), 1, 0, 4) + struct.pack("<I", 32),
        t(0, 2, 0, 1),
        t(off(b"inner"), 4, 2, 8)
        + struct.pack("<III", off(b"a"), 1, 0)
        + struct.pack("<III", off(b"b"), 1, 32),
        t(0, 5, 2, 8) + struct.pack("<III", off(b"x"), 1, 0) + struct.pack("<III", off(b"y"), 3, 0),
        t(off(b"outer"), 4, 4, 32, kflag=1)
        + struct.pack("<III", off(b"first"), 1, 0)
        + struct.pack("<III", 0, 4, 64)
        + struct.pack("<III", off(b"named"), 3, 128)
        + struct.pack("<III", off(b"bits"), 1, (3 << 24) | 192),
    ])
    hdr = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(types), len(types), len(names))
    return hdr + types + names


def test_offsets_resolve_through_anonymous_unions_and_nested_members() -> None:
    b = Btf(_blob(), "test")
    assert b.offsetof("outer", "first") == 0
    assert b.offsetof("outer", "x") == 8
    assert b.offsetof("outer", "y.b") == 12
    assert b.offsetof("outer", "named.b") == 20
    assert b.sizeof("inner") == 8


def test_missing_struct_member_or_bitfield_raise_btf_error_naming_them() -> None:
    b = Btf(_blob(), "test")
    with pytest.raises(BtfError, match="struct nope not found"):
        b.offsetof("nope", "a")
    with pytest.raises(BtfError, match="outer has no byte-aligned member 'missing'"):
        b.offsetof("outer", "missing")
    with pytest.raises(BtfError, match="'bits'"):
        b.offsetof("outer", "bits")


def test_bad_blobs_and_missing_file_fail_closed() -> None:
    with pytest.raises(BtfError, match="bad magic"):
        Btf(b"\0" * 64, "junk")
    with pytest.raises(BtfError, match="too short"):
        Btf(b"\x9f\xeb", "short")
    with pytest.raises(BtfError, match="CONFIG_DEBUG_INFO_BTF"):
        Btf.load("/nonexistent/vmlinux")


@pytest.mark.skipif(not os.access(VMLINUX, os.R_OK), reason="no readable kernel BTF")
def test_the_running_kernel_has_every_field_the_probe_reads() -> None:
    offsets = probe_offsets(Btf.load())
    assert len(offsets) == len(FIELDS) + len(SIZES)
    assert offsets["OFF_TASK_TGID"] == offsets["OFF_TASK_PID"] + 4  # pid_t pid; pid_t tgid;
    assert offsets["SIZE_UPID"] == 16
