"""Compile, load and attach the probe with bcc: the only module that imports bcc.

`preflight` checks what the probe needs and raises `PreflightError` with the fix (fail closed);
`build_cflags` turns BTF offsets, the syscalls of this kernel and the collector's own pid into `-D`
macros; `load_probe` compiles `probe.bpf.c` with a program for every event type this kernel has,
and `attach`/`detach_type` switch a type's tracepoints live (collectors.interest_maps decides
which). bcc compiles at every start against the installed kernel headers, which are only used for
basic types: every kernel struct is read through the OFF_* offsets.

`python -m collectors.loader --print-source` prints the cflags and the C source that would be
compiled, without root.
"""

from __future__ import annotations

import ctypes
import logging
import os
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from collectors.btf import VMLINUX, Btf, exe_offsets, probe_offsets
from collectors.errors import PreflightError, ProbeError
from rules.libs_event_table import GENERIC_SYSCALLS
from rules.record import EVENT_TYPE_IDS, EVENT_TYPES, FD_EVENT_TYPES, FDTYPE_NAMES, GENERIC_TYPE_IDS

SOURCE: Final = Path(__file__).with_name("probe.bpf.c")
TRACEFS: Final = "/sys/kernel/tracing"
# event types that are not syscalls, and syscalls whose tracepoint has another name on x86_64
_NOT_SYSCALLS: Final = frozenset({"procexit"})
_TRACEPOINT_NAME: Final = {"umount2": "umount", "uname": "newuname"}
BTF_REGS_SINCE: Final = (5, 15)  # bpf_task_pt_regs
# Events that keep the process table right are traced whatever the rules select (Falco's
# libsinsp likewise always adds its state syscalls): exec and exit, and chdir/fchdir, without
# which proc.cwd, and every fd.name relative to it, would go stale.
ALWAYS_TRACED: Final = frozenset({"execve", "execveat", "procexit", "chdir", "fchdir"})
# libs' generic syscalls (PPME_GENERIC_X): one program, pg_generic_exit, serves them all
GENERIC_TYPES: Final = frozenset(EVENT_TYPES[i] for i in GENERIC_TYPE_IDS)
_GENERIC_PROGRAM: Final = "pg_generic_exit"
_GENERIC_NRS: Final = 1 + max(nr for _code, nr in GENERIC_SYSCALLS.values())
# Traced only when the rules (or --event-types) ask for them, never by default: a close follows
# every open, and its probe walks the file's path at enter; the generic syscalls include some of
# a node's most frequent (epoll_pwait, getpid, wait4) and no default rule needs one.
ONLY_WHEN_ASKED: Final = frozenset({"close"}) | GENERIC_TYPES
_BPF_NOEXIST: Final = 1
log = logging.getLogger("peregrine.collector")


@dataclass(slots=True)
class Live:
    """What the probe does now: the syscall types whose tracepoints are attached, and the
    interest in its maps (collectors.interest_maps keeps both): the live generation's trie keys
    and the types with a record, and those of the other generation, deleted at the next switch."""

    attached: set[str] = field(default_factory=set)
    gen: int = 0  # the live generation: switches & 1
    switches: int = 0  # interest_gen
    keys: set[bytes] = field(default_factory=set)
    types: set[str] = field(default_factory=set)
    stale_keys: set[bytes] = field(default_factory=set)
    stale_types: set[str] = field(default_factory=set)


@dataclass(frozen=True, slots=True)
class Probe:
    """A loaded probe: the bcc object and what it traces."""

    bpf: Any
    traced: frozenset[str]  # the types wanted at start: kept whole when no interest applies
    missing: frozenset[str]  # wanted but absent from this kernel
    compiled: frozenset[str] = frozenset()  # the types with a program in the probe
    live: Live = field(default_factory=Live)


def wanted_types(asked: frozenset[str] | None) -> frozenset[str]:
    """The event types to trace: those asked for, or (None) every type but ONLY_WHEN_ASKED."""
    return asked if asked is not None else frozenset(EVENT_TYPES) - ONLY_WHEN_ASKED


def tracepoint_name(event_type: str) -> str:
    return _TRACEPOINT_NAME.get(event_type, event_type)


def tracepoint_exists(event_type: str, tracefs: str = TRACEFS) -> bool:
    """Whether this kernel has the sys_exit tracepoint of a syscall (bcc needs its format file)."""
    return Path(tracefs, "events", "syscalls", f"sys_exit_{tracepoint_name(event_type)}", "format").is_file()


def available_types(tracefs: str = TRACEFS) -> frozenset[str]:
    """The event types this kernel can trace: the probe compiles a program for each."""
    return frozenset(n for n in EVENT_TYPES if n in _NOT_SYSCALLS or tracepoint_exists(n, tracefs))


def tracepoints(event_type: str) -> tuple[str, ...]:
    """The syscall tracepoints of one event type (close also reads its file at enter)."""
    exit_tp = f"syscalls:sys_exit_{tracepoint_name(event_type)}"
    return (exit_tp, "syscalls:sys_enter_close") if event_type == "close" else (exit_tp,)


def attach(probe: Probe, event_type: str) -> None:
    """Attach a compiled syscall type's programs (ProbeError with bcc's message): its own, or the
    one program of every generic syscall (probe.bpf.c pg_generic_exit)."""
    generic = event_type in GENERIC_TYPES
    for tp in tracepoints(event_type):
        try:
            fn_name = _GENERIC_PROGRAM if generic else "tracepoint__" + tp.replace(":", "__")
            probe.bpf.attach_tracepoint(tp=tp.encode(), fn_name=fn_name.encode())
        except Exception as exc:  # bcc raises bare Exception
            raise ProbeError(f"cannot attach {tp}: {exc}") from exc
    probe.live.attached.add(event_type)


def detach_type(probe: Probe, event_type: str) -> None:
    for tp in tracepoints(event_type):
        probe.bpf.detach_tracepoint(tp.encode())
    probe.live.attached.discard(event_type)


def thread_size(config_gz: str = "/proc/config.gz") -> int:
    """x86_64 kernel stack size: 16 KiB, doubled under KASAN. A wrong guess cannot go unnoticed:
    the probe checks orig_ax in the registers it finds there against the syscall number."""
    import gzip

    try:
        with gzip.open(config_gz, "rt") as f:
            kasan = any(line.strip() == "CONFIG_KASAN=y" for line in f)
    except OSError:
        kasan = False
    return 32768 if kasan else 16384


def preflight(tracefs: str = TRACEFS, btf_path: str = VMLINUX, modules: str = "/lib/modules") -> None:
    """Raise PreflightError naming the first missing prerequisite and how to fix it."""
    if os.uname().machine != "x86_64":
        machine = os.uname().machine
        raise PreflightError(f"the probe reads x86_64 syscall registers; this machine is {machine}")
    if os.geteuid() != 0:
        raise PreflightError("the collector must run as root (it loads eBPF programs): run it with sudo")
    if not Path(tracefs, "events", "syscalls").is_dir():
        raise PreflightError(
            f"tracefs is not mounted at {tracefs}: mount -t tracefs tracefs {tracefs} "
            "(./scripts/setup does it)"
        )
    build = Path(modules, os.uname().release, "build")
    if not Path(build, "include").is_dir():
        raise PreflightError(
            f"kernel headers missing: {build}/include does not exist; install linux-headers-amd64 and link "
            f"it there (./scripts/setup does it)"
        )
    if not Path(btf_path).is_file():
        raise PreflightError(
            f"{btf_path} missing: the kernel has no BTF (CONFIG_DEBUG_INFO_BTF), so struct offsets cannot "
            "be computed and the collector refuses to start"
        )


def build_cflags(
    btf: Btf,
    wanted: Iterable[str],
    self_tgid: int,
    ring_bytes: int,
    tracefs: str = TRACEFS,
) -> tuple[list[str], frozenset[str], frozenset[str]]:
    """cflags for probe.bpf.c, the wanted event types this kernel has, and the wanted ones (or
    ALWAYS_TRACED ones) it lacks. Every type the kernel has is compiled in, so that an interest can
    attach it later; so is the walk of the task's fd table into the fd events' programs, run only
    when an interest asks for it (fd.types, probe.bpf.c pg_put_fdtypes)."""
    page = os.sysconf("SC_PAGE_SIZE")
    pages = max(1, ring_bytes // page)
    if pages & (pages - 1):
        raise ProbeError(f"ring buffer size {ring_bytes} B is not a power-of-two number of pages")
    flags = [f"-D{k}={v}" for k, v in probe_offsets(btf).items()]
    exe, exe_missing = exe_offsets(btf)
    for what in exe_missing:  # optional extras: the fields stay missing, the probe still starts
        log.warning("not in this kernel's BTF, so not read at exec: %s", what)
    flags += [f"-D{k}={v}" for k, v in exe.items()]
    flags += [
        f"-DSELF_TGID={self_tgid}",
        f"-DRING_PAGES={pages}",
        f"-DPG_THREAD_SIZE={thread_size()}",
        f"-I{SOURCE.parent}",
    ]
    flags += [f"-DEV_{name}={i}" for i, name in enumerate(EVENT_TYPES) if i not in GENERIC_TYPE_IDS]
    flags.append(f"-DPG_NTYPES={len(EVENT_TYPES)}")
    flags += fdtypes_cflags()
    flags += regs_cflags(os.uname().release)
    unknown = sorted(set(wanted) - set(EVENT_TYPE_IDS))
    if unknown:
        raise ProbeError(f"unknown event type {unknown[0]!r}")
    available = available_types(tracefs)
    flags += [f"-DHAVE_{name}=1" for name in sorted(available - _NOT_SYSCALLS - GENERIC_TYPES)]
    flags += generic_cflags(available)
    asked = set(wanted) | ALWAYS_TRACED
    return flags, frozenset(set(wanted) & available), frozenset(asked - available)


def regs_cflags(release: str) -> list[str]:
    """PG_BTF_REGS where the kernel has bpf_task_pt_regs (5.15 on): the probe reads the saved
    registers through the task's BTF pointer instead of copying them (probe.bpf.c pg_regs_args)."""
    version = re.match(r"(\d+)\.(\d+)", release)
    if version is None:
        return []
    return ["-DPG_BTF_REGS=1"] if (int(version[1]), int(version[2])) >= BTF_REGS_SINCE else []


def fdtypes_cflags() -> list[str]:
    """PG_FDTYPES and the type codes (1 + the index in FDTYPE_NAMES, "<NA>" as NA);
    FDTYPES_<tracepoint> 1 for the events libs gives fd fields, 0 for every other one."""
    flags = [f"-DFDTYPES_{tracepoint_name(n)}={int(n in FD_EVENT_TYPES)}" for n in EVENT_TYPES
             if n not in GENERIC_TYPES]  # fmt: skip
    flags.append("-DPG_FDTYPES=1")
    flags += [f"-DPG_FDT_{'NA' if n == '<NA>' else n}={i + 1}" for i, n in enumerate(FDTYPE_NAMES)]
    return flags


def load_probe(
    cflags: list[str], traced: frozenset[str], missing: frozenset[str], tracefs: str = TRACEFS
) -> Probe:
    """Compile the probe and attach what the process table needs (exec, fork, exit, chdir): the
    other types wait for an interest (collectors.interest_maps), which attaches them, each loaded
    (verified) when first attached. ProbeError carries bcc's message. Until an interest is applied
    the maps keep only the records the process table needs."""
    try:
        from bcc import BPF
    except ImportError as exc:
        raise PreflightError(
            f"cannot import bcc ({exc}): install Debian's python3-bpfcc and link its bcc package into the "
            "venv (./scripts/setup); the PyPI package named bcc is unrelated"
        ) from None

    class _Unattached(BPF):  # type: ignore[misc]
        """bcc attaches every program it compiles; detaching one then costs a grace period
        (~0.1 s), so nothing is attached until asked."""

        def _trace_autoload(self) -> None:
            pass

    try:
        bpf = _Unattached(src_file=str(SOURCE).encode(), cflags=cflags)
        for event in (b"sched_process_exec", b"sched_process_exit"):
            bpf.attach_tracepoint(tp=b"sched:" + event, fn_name=b"tracepoint__sched__" + event)
        bpf.attach_raw_tracepoint(tp=b"sched_process_fork", fn_name=b"raw_tracepoint__sched_process_fork")
    except Exception as exc:  # bcc raises bare Exception for compile and load failures
        raise ProbeError(f"cannot compile or load {SOURCE}: {exc}") from exc
    probe = Probe(bpf, traced, missing, available_types(tracefs))
    fill_generic(bpf, probe.compiled)
    for name in sorted(ALWAYS_TRACED & probe.compiled - _NOT_SYSCALLS):
        attach(probe, name)
    return probe


def insert_new(table: Any, key: Any, leaf: Any) -> bool:
    """Add an entry to a bcc table unless the key is there already (BPF_NOEXIST): whether added."""
    from bcc.libbcc import lib

    return bool(lib.bpf_update_elem(table.map_fd, ctypes.byref(key), ctypes.byref(leaf), _BPF_NOEXIST) == 0)


# --- libs' generic syscalls: one program attached to each asked syscall's exit tracepoint -------
# Every sys_exit_* tracepoint has the same format (nr, ret), so probe.bpf.c's pg_generic_exit
# serves them all: it reads the record type id from generic_types, indexed by syscall number,
# which is filled here before the program is attached; no C is compiled per syscall.


def generic_cflags(available: Iterable[str]) -> list[str]:
    """PG_GENERIC (the program and its map) when this kernel has a generic syscall, so that an
    interest can attach one live; else nothing."""
    if GENERIC_TYPES.isdisjoint(available):
        return []
    return ["-DPG_GENERIC=1", f"-DPG_GENERIC_NRS={_GENERIC_NRS}"]


def fill_generic(bpf: Any, compiled: Iterable[str]) -> None:
    """Map each generic syscall this kernel has from its number to its record type id: what
    pg_generic_exit reads, wherever `attach` attaches it."""
    names = sorted(GENERIC_TYPES.intersection(compiled))
    if names:
        table = bpf["generic_types"]
        for name in names:
            table[table.Key(GENERIC_SYSCALLS[name][1])] = table.Leaf(EVENT_TYPE_IDS[name])


def detach(probe: Probe) -> None:
    """Detach every program but keep the maps, so final counters and the ring can still be read."""
    bpf = probe.bpf
    for tp in list(bpf.tracepoint_fds):
        bpf.detach_tracepoint(tp)
    for tp in list(bpf.raw_tracepoint_fds):
        bpf.detach_raw_tracepoint(tp)


def main(argv: list[str]) -> int:
    """`--print-source [EVENT_TYPE ...]`: print the cflags and the probe source."""
    if not argv or argv[0] != "--print-source":
        print("usage: python -m collectors.loader --print-source [EVENT_TYPE ...]", file=sys.stderr)
        return 2
    wanted = wanted_types(frozenset(argv[1:]) or None)
    cflags, traced, missing = build_cflags(Btf.load(), wanted, os.getpid(), 16 << 20)
    print("// cflags: " + " ".join(cflags))
    print(f"// traced: {' '.join(sorted(traced))}")
    print(f"// missing on this kernel: {' '.join(sorted(missing)) or '-'}")
    print(SOURCE.read_text(), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
