"""Raw probe records -> events: arguments, fd records, and the process table they maintain.

Records are built with the header layout of probe.h (checked against it in test_header.py). Pids
are above the kernel's pid_max, so no /proc entry can leak into these tests.
"""

from __future__ import annotations

import socket
import struct

import pytest

from collectors import native
from collectors.cgroups import CgroupResolver
from collectors.decode import BUILDERS, DecodeError, Decoder, abspath, cwd_path
from collectors.header import HDR, PG_EVT_FORK, PG_FLAG_FDTYPES, PG_FLAG_UNWANTED
from collectors.proctable import ProcTable
from rules.record import (
    EV_ARGS,
    EV_FD,
    EV_FDTYPES,
    EV_NUM,
    EV_PROC,
    EV_RES,
    EV_TS,
    EVENT_LEN,
    EVENT_PARAMS,
    EVENT_TYPE_IDS,
    EVENT_TYPES,
    F_CIP,
    F_IS_SERVER,
    F_NAME,
    F_NAMERAW,
    F_NUM,
    F_SIP,
    F_SPORT,
    F_TYPECHAR,
    LEGACY_EVENT_LEN,
    P_ARGS,
    P_CONTAINER_ID,
    P_CWD,
    P_ENV,
    P_EXE,
    P_EXEPATH,
    P_LOGINUID,
    P_NAME,
    P_PARENT,
    P_PID,
    P_PPID,
    P_TTY,
    P_UID,
    P_USER,
)

PARENT, CHILD = 5_000_001, 5_000_002
OFFSET = 1_700_000_000 * 10**9


def rec(evt: str | int, tgid: int, *, ret: int = 0, a: tuple[int, ...] = (), items: tuple[bytes, ...] = (),
        ppid: int = 1, uid: int = 0, tty: int = 0, loginuid: int = 0xFFFFFFFF, comm: bytes = b"sh",
        ts: int = 1000, flags: int = 0) -> bytes:
    payload = b"".join(struct.pack("<H", len(i)) + i for i in items)
    args = list(a) + [0] * (6 - len(a))
    evt_id = EVENT_TYPE_IDS[evt] if isinstance(evt, str) else evt
    ids = tgid if evt_id == PG_EVT_FORK or evt in ("execve", "execveat") and ret == 0 else 0
    hdr = HDR.pack(ts, 1, ret, *args, 0, tgid, tgid, ppid, uid, uid, loginuid, tty, ids, ids, ids,
                   evt_id, len(payload), flags, 0, comm)
    return hdr + payload


@pytest.fixture
def decoder() -> Decoder:
    procs = ProcTable("node-a", OFFSET, CgroupResolver(mount=""))
    return Decoder(procs, OFFSET, range(len(EVENT_TYPES)))


def exec_rec(tgid: int, filename: bytes, argv: list[bytes], **kw: object) -> bytes:
    block = b"\0".join(argv) + b"\0"
    return rec("execve", tgid, a=(0, 0, 0x1FF, len(block)), items=(filename + b"\0", block), **kw)  # type: ignore[arg-type]


def test_every_event_type_has_a_builder_giving_its_parameter_count() -> None:
    assert sorted(BUILDERS) == list(range(len(EVENT_TYPES)))
    procs = ProcTable("node-a", OFFSET, CgroupResolver(mount=""))
    for i, name in enumerate(EVENT_TYPES):
        h = HDR.unpack_from(rec(i, PARENT, ret=-1, a=(1, 2, 3, 4, 5, 6)))
        args, _ = BUILDERS[i](h, [b"a\0", b"b\0", b"c\0"], procs.current(h))
        assert len(args) == len(EVENT_PARAMS[i]), name


def test_fork_exec_and_open_build_a_lineage_with_cwd_and_absolute_fd_names(decoder: Decoder) -> None:
    decoder.procs.chdir(PARENT, "/ignored")  # unknown processes are not invented by chdir
    evs = decoder.decode([
        exec_rec(PARENT, b"/bin/sh", [b"sh", b"-c", b"x"]),
        rec("chdir", PARENT, items=(b"/srv/app\0",)),
        rec(PG_EVT_FORK, PARENT, a=(CHILD, 5)),
        exec_rec(CHILD, b"./tool", [b"./tool", b"--flag"], ppid=PARENT, comm=b"tool"),
        rec("openat", CHILD, ret=3, a=(0xFFFFFF9C, 0, 0o1101, 0o644), items=(b"out/log.txt\0",), ppid=PARENT,
            comm=b"tool"),
    ])
    assert [EVENT_TYPES[e[0]] for e in evs] == ["execve", "chdir", "execve", "openat"]
    assert [e[EV_NUM] for e in evs] == [1, 2, 3, 4]
    assert evs[0][EV_TS] == 1000 + OFFSET
    child = evs[2][EV_PROC]
    assert (child[P_NAME], child[P_EXE], child[P_ARGS]) == ("tool", "./tool", ["--flag"])
    assert child[P_CWD] == "/srv/app"
    assert child[P_EXEPATH] == "/srv/app/tool"
    assert child[P_PPID] == PARENT and child[P_PARENT][P_NAME] == "sh"
    assert child[P_PARENT][P_CWD] == "/srv/app"
    assert child[P_USER] == "root" and child[P_LOGINUID] == -1 and child[P_CONTAINER_ID] == "host"
    args = evs[2][EV_ARGS]
    assert (args[0], args[1], args[2], args[4], args[5], args[6]) == (0, "./tool", ["--flag"], CHILD, PARENT,
                                                                     "/srv/app")
    op = evs[3]
    assert op[EV_ARGS][:5] == [3, -100, "out/log.txt", 0o1101, 0o644]
    assert op[EV_FD][F_NAME] == "/srv/app/out/log.txt" and op[EV_FD][F_NAMERAW] == "out/log.txt"
    assert op[EV_FD][F_TYPECHAR] == "f" and op[EV_PROC] is child


def test_a_changed_context_makes_a_new_version_and_keeps_the_old_one(decoder: Decoder) -> None:
    first, second = decoder.decode([
        rec("setuid", PARENT, a=(1000,), uid=0),
        rec("setuid", PARENT, a=(1000,), uid=1000, tty=34816),
    ])
    assert first[EV_PROC] is not second[EV_PROC]
    assert (first[EV_PROC][P_UID], second[EV_PROC][P_UID], second[EV_PROC][P_TTY]) == (0, 1000, 34816)
    assert first[EV_ARGS] == [0, 1000]


def test_connect_tuple_from_the_kernel_socket_and_unix_paths(decoder: Decoder) -> None:
    sa = struct.pack("!HH4s8x", 0, 8443, socket.inet_aton("10.0.0.1"))
    sa = struct.pack("<H", 2) + sa[2:]
    local, remote = socket.inet_aton("10.1.2.3"), socket.inet_aton("10.0.0.1")
    sk = struct.pack("<6H16s16s", 2, 6, 1, 40000, 8443, 0, local, remote)
    unix = struct.pack("<H", 1) + b"/run/x.sock\0"
    tcp, uds, acc = decoder.decode([
        rec("connect", PARENT, ret=-115, a=(4, 0, len(sa)), items=(sa, sk)),
        rec("connect", PARENT, ret=-2, a=(5, 0, len(unix)), items=(unix,)),
        rec("accept4", PARENT, ret=7, a=(3, 0, 0, 0x80000), items=(sk,)),
    ])
    assert tcp[EV_ARGS] == [-115, "10.1.2.3:40000->10.0.0.1:8443", 4]
    assert tcp[EV_FD][F_TYPECHAR] == "4" and tcp[EV_FD][4] == "tcp"
    assert uds[EV_FD][F_TYPECHAR] == "u" and uds[EV_FD][F_NAME] == "/run/x.sock"
    assert acc[EV_ARGS][0] == 7 and acc[EV_ARGS][1] == "10.0.0.1:8443->10.1.2.3:40000"
    assert acc[EV_ARGS][5] == 0x80000 and acc[EV_FD][9] is True


def test_procexit_drops_the_process_and_splits_the_status(decoder: Decoder) -> None:
    (ev,) = decoder.decode([rec("procexit", PARENT, a=(0x8B,))])  # killed by SIGSEGV, core dumped
    assert ev[EV_ARGS] == [0x8B, 0, 11, True]
    assert decoder.procs.get(PARENT) is None


def test_unpublished_types_update_the_table_without_events() -> None:
    procs = ProcTable("node-a", OFFSET, CgroupResolver(mount=""))
    d = Decoder(procs, OFFSET, [EVENT_TYPE_IDS["openat"]])
    assert d.decode([exec_rec(PARENT, b"/bin/ls", [b"ls"]), rec("chdir", PARENT, items=(b"/tmp\0",))]) == []
    p = procs.get(PARENT)
    assert p is not None and p[P_EXEPATH] == "/bin/ls" and p[P_CWD] == "/tmp" and p[P_PID] == PARENT
    assert d.n_read == 2 and d.num == 0


def test_records_the_probe_flags_unwanted_update_the_table_without_events() -> None:
    """Every type published, as the collector decodes: the probe's flag alone says exec, chdir and
    exit are there for the table only (no loaded interest names them)."""
    procs = ProcTable("node-a", OFFSET, CgroupResolver(mount=""))
    d = Decoder(procs, OFFSET, EVENT_TYPE_IDS.values())
    evs = d.decode([
        exec_rec(PARENT, b"/bin/ls", [b"ls"], flags=PG_FLAG_UNWANTED),
        rec("chdir", PARENT, items=(b"/tmp\0",), flags=PG_FLAG_UNWANTED),
        rec("chdir", PARENT, items=(b"/srv\0",)),
    ])
    assert [EVENT_TYPES[e[0]] for e in evs] == ["chdir"]
    p = procs.get(PARENT)
    assert p is not None and p[P_EXEPATH] == "/bin/ls" and p[P_CWD] == "/srv"


def test_failed_exec_and_generic_shapes(decoder: Decoder) -> None:
    fail, mnt, ren = decoder.decode([
        rec("execve", PARENT, ret=-2, items=(b"/nope\0", b"nope\0", b"-x\0")),
        rec("mount", PARENT, ret=-1, a=(0, 0, 0, 0x1000), items=(b"none\0", b"/mnt\0", b"tmpfs\0")),
        rec("renameat2", PARENT, a=(0xFFFFFF9C, 0, 3, 0, 1), items=(b"a\0", b"b\0")),
    ])
    assert fail[EV_RES] == -2 and fail[EV_ARGS][1] == "nope" and fail[EV_ARGS][2] == ["-x"]
    assert mnt[EV_ARGS] == [-1, "none", "/mnt", "tmpfs", 0x1000]
    assert ren[EV_ARGS] == [0, -100, "a", 3, "b", 1]


def test_truncated_records_raise_decode_error(decoder: Decoder) -> None:
    with pytest.raises(DecodeError, match="shorter than"):
        decoder.decode([b"\0" * 10])
    raw = rec("unlink", PARENT, items=(b"/x\0",))
    with pytest.raises(DecodeError, match="payload bytes"):
        decoder.decode([raw[:-2]])


def test_abspath_keeps_dirfd_relative_paths_raw() -> None:
    p = [None] * 30
    p[P_CWD] = "/home/u"
    assert abspath(p, "a/../b") == "/home/u/b"
    assert abspath(p, "b", dirfd=5) == "b"
    assert abspath(p, "/etc//passwd") == "/etc/passwd"


def test_sweep_forgets_processes_gone_from_proc(decoder: Decoder) -> None:
    decoder.decode([rec("setuid", PARENT, a=(0,))])
    assert decoder.procs.get(PARENT) is not None  # above pid_max: never in /proc
    assert decoder.procs.sweep() >= 1
    assert decoder.procs.get(PARENT) is None


def _walked(path: str) -> bytes:
    """The probe's working-directory item for an absolute path: components leaf first, then the root."""
    parts = [c for c in path.split("/") if c]
    return b"".join(c.encode() + b"\0" for c in reversed(parts)) + b"\0"


def test_working_directory_items_read_leaf_first_and_incomplete_walks_are_unknown() -> None:
    assert cwd_path(b"\0") == "/"
    assert cwd_path(_walked("/usr/local/lib")) == "/usr/local/lib"
    assert cwd_path(b"lib\0local\0") is None  # the walk stopped before the root
    assert cwd_path(b"") is None


def test_exec_takes_the_probes_cwd_over_a_stale_inherited_one_and_its_environment(decoder: Decoder) -> None:
    block = b"tool\0"
    env = b"PATH=/bin\0GLIBC_TUNABLES=glibc.malloc.mxfast=0\0"
    evs = decoder.decode([
        exec_rec(PARENT, b"/bin/sh", [b"sh"]),
        rec("chdir", PARENT, items=(b"/stale\0",)),  # the table believes /stale
        rec("execve", PARENT, a=(0, 0, 0, len(block)), items=(b"./tool\0", block, _walked("/srv/real"), env)),
        rec("execve", PARENT, a=(0, 0, 0, len(block)), items=(b"./tool\0", block, b"real\0", b"")),
    ])
    real, cut = evs[2][EV_PROC], evs[3][EV_PROC]
    assert real[P_CWD] == "/srv/real" and evs[2][EV_ARGS][6] == "/srv/real"
    assert real[P_EXEPATH] == "/srv/real/tool"
    assert real[P_ENV] == ["PATH=/bin", "GLIBC_TUNABLES=glibc.malloc.mxfast=0"]
    assert cut[P_CWD] == "/srv/real" and cut[P_ENV] == []  # an incomplete walk keeps the known cwd


def test_chdir_and_fchdir_take_the_walked_directory(decoder: Decoder) -> None:
    evs = decoder.decode([
        exec_rec(PARENT, b"/bin/sh", [b"sh"]),
        rec("chdir", PARENT, items=(b"link\0", _walked("/data/target"))),  # a symlink, resolved
        rec("openat", PARENT, ret=3, a=(0xFFFFFF9C, 0, 0, 0), items=(b"release_agent\0",)),
        rec("fchdir", PARENT, a=(4,), items=(_walked("/sys/fs/cgroup/x"),)),
        rec("openat", PARENT, ret=5, a=(0xFFFFFF9C, 0, 1, 0), items=(b"release_agent\0",)),
        rec("chdir", PARENT, items=(b"sub\0", b"sub\0")),  # the walk stopped early: join, as Falco does
    ])
    assert evs[2][EV_FD][F_NAME] == "/data/target/release_agent"
    assert evs[4][EV_FD][F_NAME] == "/sys/fs/cgroup/x/release_agent"
    assert decoder.procs.get(PARENT)[P_CWD] == "/sys/fs/cgroup/x/sub"  # type: ignore[index]


def test_the_fd_types_item_goes_to_ev_fdtypes_and_nowhere_else() -> None:
    """The probe's table (PG_FLAG_FDTYPES, the last item) becomes EV_FDTYPES, for the Python and
    the C openat builders alike, and builders reading the last item (fchdir's walk) still see theirs;
    a record without it gives an event of the legacy length."""
    table = bytes([1, 1, 1, 3, 0, 6, 6])
    for openat in (None, native.load("openevent", native.OPENEVENT).openat):
        procs = ProcTable("node-a", OFFSET, CgroupResolver(mount=""))
        d = Decoder(procs, OFFSET, range(len(EVENT_TYPES)), openat)
        evs = d.decode([
            exec_rec(PARENT, b"/bin/sh", [b"sh"]),
            rec("fchdir", PARENT, a=(4,), items=(_walked("/srv/x"), table), flags=PG_FLAG_FDTYPES),
            rec("openat", PARENT, ret=7, a=(0xFFFFFF9C, 0, 0, 0), items=(b"f\0", table),
                flags=PG_FLAG_FDTYPES),
            rec("openat", PARENT, ret=8, a=(0xFFFFFF9C, 0, 0, 0), items=(b"g\0",)),
        ])
        assert [len(e) for e in evs] == [LEGACY_EVENT_LEN, EVENT_LEN, EVENT_LEN, LEGACY_EVENT_LEN]
        assert evs[1][EV_FDTYPES] == table and evs[2][EV_FDTYPES] == table
        assert evs[2][EV_FD][F_NAME] == "/srv/x/f" and evs[3][EV_FD][F_NAME] == "/srv/x/g"


def test_a_failed_open_has_fd_num_minus_one_and_keeps_its_errno_in_the_arguments() -> None:
    """libs sets the thread's last event fd only on a successful open, so fd.num is -1 for every
    failed one (Falco's open_file_failed: fd.num=-1); evt.rawres and evt.arg.fd keep the errno.
    For the Python and the C openat builders alike, and the rest of the open family."""
    for openat in (None, native.load("openevent", native.OPENEVENT).openat):
        procs = ProcTable("node-a", OFFSET, CgroupResolver(mount=""))
        d = Decoder(procs, OFFSET, range(len(EVENT_TYPES)), openat)
        ok, enoent, eacces, op, creat = d.decode([
            rec("openat", PARENT, ret=3, a=(0xFFFFFF9C, 0, 0, 0), items=(b"/etc/hostname\0",)),
            rec("openat", PARENT, ret=-2, a=(0xFFFFFF9C, 0, 0, 0), items=(b"/etc/nope\0",)),
            rec("openat", PARENT, ret=-13, a=(0xFFFFFF9C, 0, 0, 0), items=(b"/etc/shadow\0",)),
            rec("open", PARENT, ret=-2, a=(0, 0, 0), items=(b"/nope\0",)),
            rec("creat", PARENT, ret=-30, a=(0, 0o644), items=(b"/ro/f\0",)),
        ])
        assert ok[EV_FD][F_NUM] == 3 and ok[EV_ARGS][0] == 3
        for ev, errno in ((enoent, -2), (eacces, -13), (op, -2), (creat, -30)):
            assert ev[EV_FD][F_NUM] == -1 and ev[EV_RES] == errno and ev[EV_ARGS][0] == errno


def test_listen_names_its_socket_as_falco_names_a_server_socket(decoder: Decoder) -> None:
    local = socket.inet_aton("192.0.2.2") + bytes(12)
    sk = struct.pack("<6H16s16s", 2, 6, 1, 8080, 0, 0, local, bytes(16))
    unix = struct.pack("<6H16s16s", 1, 0, 1, 0, 0, 0, bytes(16), bytes(16))
    inet, other, unknown = decoder.decode([
        rec("listen", PARENT, a=(3, 128), items=(sk,)),
        rec("listen", PARENT, a=(4, 16), items=(unix,)),
        rec("listen", PARENT, ret=-9, a=(99, 1), items=(b"",)),
    ])
    assert inet[EV_ARGS] == [0, 3, 128]
    f = inet[EV_FD]
    assert (f[F_NAME], f[F_TYPECHAR], f[4], f[F_SIP], f[F_SPORT], f[F_CIP], f[F_IS_SERVER]) == (
        "192.0.2.2:8080", "4", "tcp", "192.0.2.2", 8080, None, True)
    assert other[EV_FD] is None and unknown[EV_FD] is None and unknown[EV_ARGS] == [-9, 99, 1]


def test_close_names_the_file_walked_at_enter_and_generic_events_have_no_result(decoder: Decoder) -> None:
    file, directory, cut, failed, tree = decoder.decode([
        rec("close", PARENT, a=(3, 1 << 32 | 0o100644), items=(_walked("/tmp/x/f"),)),
        rec("close", PARENT, a=(4, 1 << 32 | 0o040755), items=(_walked("/tmp/x"),)),
        rec("close", PARENT, a=(5, 1 << 32 | 0o140777), items=(b"",)),  # a socket: no path to walk
        rec("close", PARENT, ret=-9, a=(6, 0)),  # no file behind the fd at enter
        rec("open_tree", PARENT, ret=7, a=(0xFFFFFF9C, 0, 0)),
    ])
    assert file[EV_ARGS] == [0, 3] and file[EV_FD][:4] == [3, "f", "/tmp/x/f", None]
    assert directory[EV_FD][:3] == [4, "d", "/tmp/x"]
    assert cut[EV_FD][:3] == [5, None, None] and failed[EV_FD][:3] == [6, None, None]
    assert failed[EV_RES] == -9 and failed[EV_ARGS] == [-9, 6]
    assert tree[EV_ARGS] == [339, 428] and tree[EV_RES] is None and tree[EV_FD] is None
