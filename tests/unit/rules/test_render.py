"""Behaviour of rules.render beyond the table cases in tests/conformance/data/render_cases.yaml."""

from __future__ import annotations

import pytest

from rules import render, render_params
from rules import render_flags as rf
from rules.record import (
    EV_ARGS,
    EV_FD,
    EV_PROC,
    EV_TYPE,
    EVENT_LEN,
    EVENT_PARAM_INDEX,
    EVENT_PARAMS,
    EVENT_TYPES,
    EXE_FROM_MEMFD,
    EXE_UPPER_LAYER,
    F_L4PROTO,
    F_NAME,
    F_NUM,
    F_TYPECHAR,
    FD_LEN,
    P_CWD,
    PROCESS_LEN,
    event_type_id,
)


def arg(etype: str, param: str, raw: object, **kw: object) -> str | None:
    t = event_type_id(etype)
    return render.render_arg(t, EVENT_PARAM_INDEX[t][param], raw, **kw)  # type: ignore[arg-type]


def test_every_param_of_every_event_type_has_a_libs_renderer() -> None:
    # a parameter without a spec means record.py grew without render_params.py
    for t, params in enumerate(EVENT_PARAMS):
        for p in params:
            assert render_params.param(EVENT_TYPES[t], p) is not None, f"{EVENT_TYPES[t]}.{p}"


def test_none_means_missing() -> None:
    assert arg("open", "flags", None) is None


def test_open_flags_print_in_falco_order_and_o_rdonly_when_no_access_bits() -> None:
    assert arg("open", "flags", 0) == "O_RDONLY"
    assert arg("openat", "flags", rf.LINUX_O_WRONLY | rf.LINUX_O_CREAT | rf.LINUX_O_TRUNC) == (
        "O_TRUNC|O_CREAT|O_WRONLY"
    )
    assert arg("openat2", "flags", rf.LINUX_O_RDWR | rf.LINUX_O_CLOEXEC) == "O_RDWR|O_CLOEXEC"


def test_open_flags_keep_the_driver_quirks() -> None:
    # open_flags_to_scap tests `flags & O_TMPFILE` and `flags & O_SYNC`: any bit of each mask counts
    assert arg("open", "flags", rf.LINUX_O_DIRECTORY) == "O_DIRECTORY|O_RDONLY|O_TMPFILE"
    assert arg("open", "flags", rf.LINUX_O_DSYNC) == "O_SYNC|O_DSYNC|O_RDONLY"


def test_open_flags_extension_bits() -> None:
    flags = rf.LINUX_O_WRONLY | rf.LINUX_O_CREAT | rf.PEREGRINE_O_F_CREATED | rf.PEREGRINE_FD_UPPER_LAYER
    assert arg("open", "flags", flags) == "O_CREAT|O_WRONLY|O_F_CREATED|FD_UPPER_LAYER"
    assert render.is_open_create(flags, 3)


def test_flag_value_without_names_prints_the_driver_value() -> None:
    assert arg("unshare", "flags", 0) == "0"
    assert arg("unshare", "flags", rf.LINUX_CLONE_PIDFD) == "0"  # the driver drops unmapped bits
    assert arg("mount", "flags", 1 << 8) == "256"  # MS_NOSYMFOLLOW: passed through, unnamed


def test_mount_flags_strip_the_old_magic() -> None:
    assert arg("mount", "flags", rf.LINUX_MS_MGC_VAL | 1) == "RDONLY"


def test_enum_tables_print_every_equal_name() -> None:
    assert arg("socket", "domain", rf.LINUX_AF_UNIX) == "AF_LOCAL|AF_UNIX"
    assert arg("socket", "domain", rf.LINUX_AF_NETLINK) == "AF_ROUTE|AF_NETLINK"
    assert arg("socket", "domain", 40) == "AF_UNSPEC"  # AF_VSOCK: unknown to the driver
    assert arg("bpf", "cmd", 10) == "BPF_PROG_TEST_RUN|BPF_PROG_RUN"
    assert arg("bpf", "cmd", 99) == "99"
    assert arg("prctl", "option", 33) == "PR_MCE_KILL|PR_MCE_KILL"


def test_ptrace_request() -> None:
    assert arg("ptrace", "request", rf.LINUX_PTRACE["PTRACE_ATTACH"]) == "PTRACE_ATTACH"
    assert arg("ptrace", "request", 0) == "PTRACE_TRACEME"
    assert arg("ptrace", "request", 0x4206) == "PTRACE_SEIZE"
    assert arg("ptrace", "request", 12345) == "PTRACE_UNKNOWN"


def test_exe_flags() -> None:
    assert arg("execve", "flags", EXE_UPPER_LAYER | EXE_FROM_MEMFD) == "EXE_UPPER_LAYER|EXE_FROM_MEMFD"
    assert arg("execveat", "flags", 0) == "0"


def test_modes() -> None:
    assert arg("open", "mode", 0o644) == "0644"
    assert arg("open", "mode", 0) == "0"
    assert arg("chmod", "mode", 0o4755) == (
        "S_IXOTH|S_IROTH|S_IXGRP|S_IRGRP|S_IXUSR|S_IWUSR|S_IRUSR|S_ISUID"
    )
    assert arg("chmod", "mode", 0o100) == "S_IXUSR"
    assert arg("fchmodat", "mode", 0) == "0"
    assert arg("mkdir", "mode", 0o755) == "1ED"  # PF_HEX
    assert render.open_mode(rf.LINUX_O_RDONLY, 0o777) == 0
    assert render.open_mode(rf.LINUX_O_CREAT, 0o100755) == 0o755


def test_errno_and_res() -> None:
    assert render.errno_name(0) == "SUCCESS"
    assert render.errno_name(5) == "SUCCESS"
    assert render.errno_name(-2) == "ENOENT"
    assert render.errno_name(-115) == "EINPROGRESS"
    assert render.errno_name(-4095) == "-4095"
    assert arg("connect", "res", -111) == "ECONNREFUSED"
    assert arg("connect", "res", 0) == "0"
    assert render.evt_res(event_type_id("open"), -13) == "EACCES"
    assert render.evt_res(event_type_id("clone"), -11) == "-11"
    assert render.evt_res(event_type_id("procexit"), 0) is None


def _event(etype: str, args: list[object], fd: list[object] | None = None, cwd: str = "/") -> list[object]:
    proc: list[object] = [None] * PROCESS_LEN
    proc[P_CWD] = cwd
    ev: list[object] = [None] * EVENT_LEN
    ev[EV_TYPE], ev[EV_ARGS], ev[EV_FD], ev[EV_PROC] = event_type_id(etype), args, fd, proc
    return ev


def _fd(num: int, typechar: str, name: str, l4: str | None = None) -> list[object]:
    fd: list[object] = [None] * FD_LEN
    fd[F_NUM], fd[F_TYPECHAR], fd[F_NAME], fd[F_L4PROTO] = num, typechar, name, l4
    return fd


def test_fds() -> None:
    assert arg("openat", "dirfd", -100) == "AT_FDCWD"
    assert arg("open", "fd", -2) == "ENOENT"
    assert arg("open", "fd", 3) == "3"
    ev = _event("open", [3, "/etc/shadow", 0, 0, 0, 0], _fd(3, "f", "/etc/shadow"))
    assert arg("open", "fd", 3, event=ev) == "<f>/etc/shadow"
    assert arg("dup2", "newfd", 4, event=ev) == "4"  # not the fd the record describes
    ev = _event("connect", [0, "t", 3], _fd(3, "4", "10.0.0.1:40000->10.0.0.2:443", "tcp"))
    assert arg("connect", "fd", 3, event=ev) == "<4t>10.0.0.1:40000->10.0.0.2:443"
    assert render.render_args(event_type_id("connect"), ev[EV_ARGS], event=ev) == (  # type: ignore[arg-type]
        "res=0 tuple=t fd=3(<4t>10.0.0.1:40000->10.0.0.2:443)"
    )


def test_relative_paths_join_the_cwd_or_the_dirfd() -> None:
    ev = _event("mkdir", [0, "../bin/x", 0o755], cwd="/usr/lib")
    assert arg("mkdir", "path", "../bin/x", event=ev) == "/usr/bin/x"
    assert arg("mkdir", "path", "../bin/x") == "../bin/x"
    assert render.render_args(event_type_id("mkdir"), ev[EV_ARGS], event=ev) == (  # type: ignore[arg-type]
        "res=0 path=../bin/x(/usr/bin/x) mode=1ED"
    )
    ev = _event("openat", [5, 4, "passwd", 0, 0, 0, 0], _fd(4, "d", "/etc"), cwd="/root/")
    assert arg("openat", "name", "passwd", event=ev) == "/etc/passwd"
    ev = _event("openat", [5, -100, "passwd", 0, 0, 0, 0], None, cwd="/root/")
    assert arg("openat", "name", "passwd", event=ev) == "/root/passwd"
    ev = _event("openat", [5, 7, "passwd", 0, 0, 0, 0], None, cwd="/root/")
    assert arg("openat", "name", "passwd", event=ev) == "passwd"  # dirfd's path unknown here
    ev = _event("chdir", [0, "tmp"], cwd="/")
    assert arg("chdir", "path", "tmp", event=ev) == "tmp"  # PT_CHARBUF in libs
    ev = _event("symlinkat", [0, "../x", -100, "y"], cwd="/a/")
    assert arg("symlinkat", "target", "../x", event=ev) == "../x"
    assert arg("symlinkat", "linkpath", "y", event=ev) == "/a/y"


def test_uids() -> None:
    assert arg("setuid", "uid", 33) == "33"
    assert arg("setuid", "uid", 33, user_names={33: "www-data"}) == "www-data"
    assert arg("setuid", "uid", 34, user_names={33: "www-data"}) == "<NA>"
    assert arg("setuid", "uid", 0xFFFFFFFF) == "<NONE>"
    assert arg("setgid", "gid", 0, group_names={0: "root"}) == "root"
    assert arg("clone", "uid", 1000, user_names={1000: "x"}) == "1000"  # PT_UINT32 in libs
    assert arg("setuid", "uid", 0x80000000) == "-2147483648"  # libs prints "%d"


def test_decimal_formats_are_signed_as_libs_prints_them() -> None:
    assert arg("socket", "type", 0xFFFFFFFF) == "-1"  # PT_UINT32 PF_DEC prints PRId32
    assert arg("open", "ino", (1 << 64) - 1) == "-1"  # PT_UINT64 prints PRId64
    assert arg("accept", "queuepct", 300) == "44"


def test_buffers_and_text() -> None:
    assert arg("execve", "args", ["-c", "id"]) == "-c.id."
    assert arg("execve", "args", []) == "NULL"
    assert arg("symlink", "target", "/etc/passwd") == "/etc/passwd"
    assert arg("connect", "tuple", "10.0.0.1:1->10.0.0.2:2") == "10.0.0.1:1->10.0.0.2:2"
    assert arg("kill", "sig", 9) == "SIGKILL"
    assert arg("kill", "sig", 0) == "0"
    assert arg("capset", "cap_effective", 0x1FF) == "1FF"


def test_render_args_prints_value_and_resolved() -> None:
    t = event_type_id("openat")
    out = render.render_args(t, [3, -100, "/etc/passwd", 0, 0, 2049, 1234])
    assert out == "fd=3 dirfd=-100(AT_FDCWD) name=/etc/passwd flags=1(O_RDONLY) mode=0 dev=801 ino=1234"
    t = event_type_id("ptrace")
    assert render.render_args(t, [0, 0, 9, 7, 1234]) == (
        "res=0 addr=0 data=9(SIGKILL) request=8(PTRACE_CONT) pid=1234"
    )
    attach = render.render_args(t, [0, 0, 9, 16, 1234])
    assert attach == "res=0 addr=0 data=9 request=11(PTRACE_ATTACH) pid=1234"
    assert arg("ptrace", "data", 9, event=_event("ptrace", [0, 0, 9, 7, 1])) == "SIGKILL"
    assert render.render_args(event_type_id("connect"), [0, None, 3]) == "res=0 tuple=NULL fd=3"


@pytest.mark.parametrize(
    ("mask", "text"),
    [
        (0, ""),
        (1 << 21, "CAP_SYS_ADMIN"),
        ((1 << 0) | (1 << 21) | (1 << 40), "CAP_CHOWN CAP_SYS_ADMIN CAP_CHECKPOINT_RESTORE"),
        (1 << 41, ""),  # beyond the names libs knows
    ],
)
def test_cap_names(mask: int, text: str) -> None:
    assert render.cap_names(mask) == text


def test_fd_types_and_open_predicates() -> None:
    assert render.fd_type_name("4") == "ipv4"
    assert render.fd_type_name("d") == "directory"
    assert render.fd_type_name("o") == "<NA>"
    assert render.is_open_read(rf.LINUX_O_RDONLY) and render.is_open_read(rf.LINUX_O_RDWR)
    assert not render.is_open_read(rf.LINUX_O_WRONLY)
    assert render.is_open_write(rf.LINUX_O_WRONLY) and render.is_open_write(rf.LINUX_O_RDWR)
    assert not render.is_open_write(rf.LINUX_O_RDONLY)
    assert render.is_open_exec(rf.LINUX_O_CREAT, 0o755)
    assert not render.is_open_exec(rf.LINUX_O_CREAT, 0o644)
    assert not render.is_open_exec(rf.LINUX_O_WRONLY, 0o755)
    assert not render.is_open_create(rf.LINUX_O_CREAT, 3)  # without the collector's created bit
    assert render.is_open_create(rf.LINUX___O_TMPFILE | rf.LINUX_O_DIRECTORY | rf.LINUX_O_RDWR, 3)


def test_render_args_follow_libs_order_and_evt_arg_n_counts_libs_params() -> None:
    t = event_type_id("sendto")
    assert render.render_args(t, [5, 3, 5, "a->b"]) == "res=5 fd=3 size=5 tuple=a->b"
    t = event_type_id("recvmsg")
    assert render.render_args(t, [5, 3, 5, "x"]) == "res=5 size=5 tuple=x fd=3"
    assert render.libs_arg_index(t, 5) == EVENT_PARAM_INDEX[t]["fd"]
    assert render.libs_arg_index(t, 2) is None  # libs' "data": not carried
    assert render.libs_arg_index(t, 9) is None
    t = event_type_id("init_module")
    assert render.libs_arg_index(t, 2) == EVENT_PARAM_INDEX[t]["length"]
    t = event_type_id("execve")
    line = render.render_args(t, [0, "/bin/sh", [], 1, 1, 0, "/", 0, 0, 0, 0, 0, 0, 0, 0, "/bin/sh"])
    assert line.endswith("uid=0 trusted_exepath=/bin/sh gid=0")
    t = event_type_id("open")
    assert render.libs_arg_index(t, 2) == 2


def test_open_mode_follows_the_flags_when_the_event_is_given() -> None:
    args: list[object] = [3, "/tmp/x", rf.LINUX_O_RDONLY, 0o644, 0, 0]
    assert arg("open", "mode", 0o644) == "0644"  # as sent: collectors send open_mode()
    assert arg("open", "mode", 0o644, event=_event("open", args)) == "0"
    line = render.render_args(event_type_id("open"), args)
    assert line.startswith("fd=3 name=/tmp/x flags=1(O_RDONLY) mode=0 ")
    args[2] = rf.LINUX_O_WRONLY | rf.LINUX_O_CREAT
    assert arg("open", "mode", 0o100644, event=_event("open", args)) == "0644"


def test_accept4_flags_print_the_driver_value_in_hex() -> None:
    assert arg("accept4", "flags", rf.LINUX_O_CLOEXEC | rf.LINUX_O_NONBLOCK) == "1040"


def test_the_per_parameter_text_functions_agree_with_the_renderers() -> None:
    for t, specs in enumerate(render_params.SPECS):
        for i, spec in enumerate(specs):
            fn = render.arg_text_fn(t, i)
            assert fn(None) is None
            raws: list[object] = [0, 1, 65, -2, -100, 0x4206]
            if spec.render is render_params.text:
                raws = ["/etc/x", ""]
            elif spec.render is render_params.bytebuf:
                raws = [["a", "b"], []]
            for raw in raws:
                value, resolved = spec.render(raw)
                expected = resolved or value
                assert fn(raw) == expected == render.render_arg(t, i, raw), (EVENT_TYPES[t], i, raw)


def test_the_record_carries_a_subset_of_libs_parameters_in_libs_order() -> None:
    for t, params in enumerate(EVENT_PARAMS):
        libs = render_params.LIBS_NAMES[t]
        assert set(params) <= set(libs), EVENT_TYPES[t]
        in_libs_order = [p for p in libs if p in params]
        assert [params[i] for i in render_params.LIBS_ORDER[t]] == in_libs_order
