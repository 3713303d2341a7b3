"""openat events built in C (collectors/openevent.c, the collector's path) equal the Python
builder's, field for field, over the shapes a path, a return value and the flags can take, and
with the process's context changing between records (a new process version each time).
Needs a C compiler, not root: the extension is built as the collector builds it at start."""

from __future__ import annotations

import itertools
import struct

from collectors import header, native
from collectors.cgroups import CgroupResolver
from collectors.decode import Decoder, parse
from collectors.header import HDR
from collectors.proctable import ProcTable
from rules.record import EVENT_TYPE_IDS, EVENT_TYPES

TGID = 5_000_123
OPENAT = EVENT_TYPE_IDS["openat"]
PATHS: tuple[tuple[bytes, ...], ...] = (
    (b"/etc/hostname\0",), (b"/etc/./x\0",), (b"//x\0",), (b"/a/../b\0",), (b"rel/x\0",), (b"./x\0",),
    (b"\xff\xfe/bad\0",), (b"/ok\xc3\0",), (b"",), (), (b"/no-nul",), (b"/a\0junk",), (b"/\0",),
)
RETS = (-2, 0, 7, 2**31 - 1, 2**31, -(2**31) - 1, 2**40)
DIRFDS = (0xFFFFFF9C, 0xFFFFFFFFFFFFFF9C, 3)  # AT_FDCWD as the kernel's int or sign-extended, an fd
FLAGS = (0, 0o100101, 0o200000, 0xFFFFFFFF00000041)


def record(path: tuple[bytes, ...], ret: int, dirfd: int, flags: int, ts: int) -> bytes:
    payload = b"".join(struct.pack("<H", len(i)) + i for i in path)
    uid = 1000 * (ts // 5 % 2)  # a setuid every 5 records, in effect
    hdr = HDR.pack(ts, 1, ret, dirfd, 0, flags, 0o644 | (1 << 40), 0, 0, 0, TGID, TGID + 1, 1, uid, 0,
                   0xFFFFFFFF, 0, 0, 0, 0, OPENAT, len(payload), 0, 0, b"opener")
    return hdr + payload


def test_the_c_builder_reads_the_context_key_where_the_header_module_puts_it() -> None:
    assert (header.H_CGROUP, header.H_TGID, header.H_CTX_FIRST, header.H_CTX_END) == (1, 10, 12, 17)


def test_c_and_python_openat_events_are_equal() -> None:
    procs = ProcTable("node-a", 10**18, CgroupResolver(mount=""))
    everything = range(len(EVENT_TYPES))
    python = Decoder(procs, 10**18, everything)
    c = Decoder(procs, 10**18, everything, native.load("openevent", native.OPENEVENT).openat)
    cases = list(itertools.product(PATHS, RETS, DIRFDS, FLAGS))
    for cwd in (None, "/srv/app"):
        records = [parse(record(*case, ts=i)) for i, case in enumerate(cases)]
        for d in (python, c):  # the process exists before chdir can set its cwd
            d.decode_records(records[:1])
        if cwd:
            procs.chdir(TGID, cwd)
        expected, got = python.decode_records(records), c.decode_records(records)
        assert len(got) == len(expected) == len(cases)
        for case, e, g in zip(cases, expected, got, strict=True):
            assert g == e, case
            assert [type(x) for x in g[5]] == [type(x) for x in e[5]], case
        assert len({id(ev[3]) for ev in got}) > 100  # the process changed and got new versions
