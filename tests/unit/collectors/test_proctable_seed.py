"""Seeding the process table from /proc, against real processes of this machine."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

from collectors.cgroups import CgroupResolver
from collectors.header import PG_MAX_STR
from collectors.proctable import ProcTable
from rules.record import P_ARGS, P_ENV, P_EXE


@pytest.fixture
def long_argv_process() -> Iterator[int]:
    # 12 arguments of 100 KB: 1.2 MB of command line, under the kernel's per-argument and total limits
    args = [chr(ord("a") + i) * 100_000 for i in range(12)]
    proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()", *args],
                            stdin=subprocess.PIPE)
    try:
        yield proc.pid
    finally:
        proc.kill()
        proc.wait()


def test_a_seeded_command_line_is_cut_where_the_probe_cuts_an_exec(long_argv_process: int) -> None:
    table = ProcTable("node-a", 0, CgroupResolver(mount=""))
    table.seed()
    p = table.get(long_argv_process)
    assert p is not None
    seen = len(p[P_EXE].encode()) + sum(len(a.encode()) + 1 for a in p[P_ARGS]) + 1
    assert seen <= PG_MAX_STR + 1
    assert p[P_ARGS][:2] == ["-c", "import sys; sys.stdin.read()"]
    assert p[P_ARGS][2].startswith("aaaa") and len(p[P_ARGS][2]) < 100_000


def test_a_short_command_line_is_kept_whole() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()", "x y", ""],
                            stdin=subprocess.PIPE)
    try:
        table = ProcTable("node-a", 0, CgroupResolver(mount=""))
        table.seed()
        p = table.get(proc.pid)
        assert p is not None
        assert p[P_ARGS] == ["-c", "import sys; sys.stdin.read()", "x y", ""]
    finally:
        proc.kill()
        proc.wait()


def test_a_seeded_environment_comes_from_proc_cut_where_the_probe_cuts_an_exec() -> None:
    env = {"PEREGRINE_FIRST": "1", "BIG": "x" * 10_000, "PEREGRINE_LAST": "2"}
    proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE,
                            env=env)
    try:
        table = ProcTable("node-a", 0, CgroupResolver(mount=""))
        table.seed()
        p = table.get(proc.pid)
        assert p is not None
        assert p[P_ENV][0] == "PEREGRINE_FIRST=1" and p[P_ENV][1].startswith("BIG=xxx")
        assert len("\0".join(p[P_ENV]).encode()) <= PG_MAX_STR
    finally:
        proc.kill()
        proc.wait()
