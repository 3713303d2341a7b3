"""The collector refuses to start, with a message that says what to do, when something is missing."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from collectors import loader, service
from collectors.btf import Btf
from collectors.errors import PreflightError, ProbeError
from rules.record import EVENT_TYPES, GENERIC_TYPE_IDS


def _in_child_as_nobody(fn: Callable[[], object]) -> tuple[int, str]:
    """Run fn() in a forked child whose effective uid is nobody: (fn's int result or 1, error)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: whatever happens, never return into pytest
        code, msg = 0, ""
        try:
            os.setegid(65534)
            os.seteuid(65534)
            result = fn()
            code = result if isinstance(result, int) else 0
        except BaseException as exc:  # noqa: BLE001 - reported to the parent
            code, msg = 1, f"{type(exc).__name__}: {exc}"
        finally:
            os.write(w, msg.encode())
            os._exit(code)
    os.close(w)
    with os.fdopen(r) as f:
        msg = f.read()
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), msg


def test_not_root_is_refused() -> None:
    if os.geteuid() != 0:
        with pytest.raises(PreflightError, match="must run as root"):
            loader.preflight()
        return
    code, msg = _in_child_as_nobody(loader.preflight)
    assert code == 1 and msg.startswith("PreflightError: the collector must run as root")


@pytest.mark.skipif(os.geteuid() != 0, reason="the later checks run only as root")
def test_missing_tracefs_headers_and_btf_are_refused(tmp_path: Path) -> None:
    with pytest.raises(PreflightError, match=f"tracefs is not mounted at {tmp_path}"):
        loader.preflight(tracefs=str(tmp_path))
    with pytest.raises(PreflightError, match="kernel headers missing: .*install linux-headers"):
        loader.preflight(modules=str(tmp_path))
    with pytest.raises(PreflightError, match="no BTF .*refuses to start"):
        loader.preflight(btf_path=str(tmp_path / "vmlinux"))


def test_service_reports_preflight_errors_and_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    if os.geteuid() != 0:
        assert service.main(["record", "--out", "/dev/null"]) == 1
        assert "must run as root" in capsys.readouterr().err
        return
    code, msg = _in_child_as_nobody(lambda: service.main(["record", "--out", "/dev/null"]))
    assert (code, msg) == (1, "")


def _fake_tracefs(root: Path, syscalls: set[str]) -> str:
    for name in syscalls:
        d = root / "events" / "syscalls" / f"sys_exit_{name}"
        d.mkdir(parents=True)
        (d / "format").write_text(f"name: sys_exit_{name}\n")
    return str(root)


@pytest.mark.skipif(not os.access("/sys/kernel/btf/vmlinux", os.R_OK), reason="no kernel BTF")
def test_cflags_trace_what_exists_and_name_what_is_missing(tmp_path: Path) -> None:
    btf = Btf.load()
    tracefs = _fake_tracefs(tmp_path, {"openat", "execve", "umount", "chdir"})
    flags, traced, missing = loader.build_cflags(
        btf, {"openat", "umount2", "finit_module"}, 4242, 1 << 20, tracefs=tracefs
    )
    # exec, exit, chdir and fchdir are always attached, for the process table: missing if absent
    assert traced == {"openat", "umount2"}
    assert missing == {"finit_module", "execveat", "fchdir"}
    # every type this kernel has is compiled in, wanted or not, so an interest can attach it live
    assert {"-DHAVE_openat=1", "-DHAVE_umount2=1", "-DHAVE_execve=1", "-DHAVE_chdir=1", "-DSELF_TGID=4242",
            "-DRING_PAGES=256", "-DEV_openat=3", "-DPG_THREAD_SIZE=16384"} <= set(flags)
    assert f"-DPG_NTYPES={len(EVENT_TYPES)}" in flags
    assert loader.available_types(tracefs) == {"openat", "umount2", "execve", "chdir", "procexit"}
    assert not any(f.startswith("-DHAVE_finit_module") for f in flags)
    # fd.types: only the fd events' programs hold the walk of the table (run when the interest asks)
    assert {"-DPG_FDTYPES=1", "-DFDTYPES_openat=1", "-DFDTYPES_execve=0", "-DFDTYPES_umount=0",
            "-DPG_FDT_file=1", "-DPG_FDT_NA=18"} <= set(flags)
    # a kernel before 6.15 has open_tree but not open_tree_attr: the rest is traced
    kernel_6_14 = {"execve", "chdir", "fchdir", "execveat", "open_tree", "close"}
    tracefs = _fake_tracefs(tmp_path / "6.14", kernel_6_14)
    flags, traced, missing = loader.build_cflags(
        btf, {"open_tree", "open_tree_attr", "close"}, 4242, 1 << 20, tracefs=tracefs
    )
    assert missing == {"open_tree_attr"} and {"open_tree", "close"} <= traced
    assert "-DHAVE_close=1" in flags
    # libs' generic syscalls share one program (PG_GENERIC), attached by the loader: no HAVE_ flag
    assert "-DPG_GENERIC=1" in flags and not any(f.startswith("-DHAVE_open_tree") for f in flags)
    with pytest.raises(ProbeError, match="power-of-two"):
        loader.build_cflags(btf, {"openat"}, 1, 3 * 4096, tracefs=tracefs)
    with pytest.raises(ProbeError, match="unknown event type 'nope'"):
        loader.build_cflags(btf, {"nope"}, 1, 4096, tracefs=tracefs)


def test_close_and_generic_syscalls_are_traced_only_when_asked_for() -> None:
    """A collector without --rules or --event-types traces every type but close, which follows
    every open, and libs' generic syscalls (epoll_pwait, getpid, ...); rules or --event-types
    that name them get them."""
    generic = {EVENT_TYPES[i] for i in GENERIC_TYPE_IDS}
    assert loader.wanted_types(None) == frozenset(EVENT_TYPES) - {"close"} - generic
    assert loader.wanted_types(frozenset({"close", "openat", "getpid"})) == {"close", "openat", "getpid"}


@pytest.mark.skipif(not os.access("/sys/kernel/btf/vmlinux", os.R_OK), reason="no kernel BTF")
def test_generic_syscalls_compile_one_program_and_attach_where_the_kernel_has_them(tmp_path: Path) -> None:
    """The generic program and its map are compiled in when the kernel has a generic syscall (an
    interest may attach one live); a generic syscall this kernel lacks is named as missing;
    uname's tracepoint is newuname."""
    btf = Btf.load()
    without = _fake_tracefs(tmp_path / "without", {"execve", "chdir", "fchdir", "execveat", "openat"})
    flags, traced, missing = loader.build_cflags(btf, {"openat"}, 1, 1 << 20, tracefs=without)
    assert not any(f.startswith("-DPG_GENERIC") for f in flags)
    tracefs = _fake_tracefs(tmp_path, {"execve", "chdir", "fchdir", "execveat", "openat", "personality",
                                       "syncfs", "newuname"})  # fmt: skip
    flags, traced, missing = loader.build_cflags(btf, {"openat"}, 1, 1 << 20, tracefs=tracefs)
    assert "-DPG_GENERIC=1" in flags and traced == {"openat"}
    asked = {"personality", "syncfs", "uname", "kexec_load"}
    flags, traced, missing = loader.build_cflags(btf, asked, 1, 1 << 20, tracefs=tracefs)
    assert {"personality", "syncfs", "uname"} <= traced and missing == {"kexec_load"}
    assert {"-DPG_GENERIC=1", "-DPG_GENERIC_NRS=472"} <= set(flags)  # x86_64's highest generic: 471
    # nothing per generic syscall on the compiler's command line
    assert not any("personality" in f or "syncfs" in f or "uname" in f for f in flags)


@pytest.mark.parametrize(("release", "btf_regs"), [
    ("6.18.44-fc-v1300", True), ("5.15.0-91-generic", True), ("5.14.21-150400.24-default", False),
    ("4.18.0-553.el8_10.x86_64", False), ("10.1", True), ("weird", False),
])
def test_registers_through_btf_where_the_kernel_has_bpf_task_pt_regs(release: str, btf_regs: bool) -> None:
    assert loader.regs_cflags(release) == (["-DPG_BTF_REGS=1"] if btf_regs else [])
