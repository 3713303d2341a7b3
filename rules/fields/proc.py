"""proc.* and thread.*: the process, its parent and ancestors, from the process record.

``proc.aname[N]`` walks N parents inline; without an index the value is every strict ancestor's
(a check then holds if one ancestor's does: the ANCESTORS flag).
"""

from __future__ import annotations

from collections.abc import Callable

from rules import record as R
from rules.fields.spec import ABS, BOOL, CH, I64, PATH, REL, U32, F, FieldSpec, opt, proc
from rules.pyexpr import Code, code, fill

_ANC = F.ARG_ALLOWED | F.NO_RHS | F.NO_TRANSFORMER | F.ANCESTORS


def _ancestor_node(depth: int) -> Code:
    """The record `depth` generations up (0 = the process itself)."""
    node = code("p")
    for _ in range(depth):
        node = code(f"(NODE[{R.P_PARENT}] or _EP)", NODE=node)
    return node


def _ancestor_field(value: str) -> Callable[[str | None, int | None], Code]:
    """proc.aname-style extractor over `value`, catalog text reading the record ``N``: [N] walks
    N parents inline; with no index the value is the list of every strict ancestor's value."""

    def extract(arg: str | None, event_type: int | None) -> Code:
        if arg is None:
            return code("[VALUE for _n in _ancestor_nodes(p)]", VALUE=fill(value, N=code("_n")))
        return code(value, N=_ancestor_node(int(arg)))

    return extract


ROWS: tuple[FieldSpec, ...] = (
    FieldSpec("proc.name", CH, F.NONE, "comm (p[P_NAME])", proc(R.P_NAME)),
    FieldSpec("proc.pname", CH, F.NONE, "parent's comm (pp[P_NAME])", f"pp[{R.P_NAME}]"),
    FieldSpec(
        "proc.aname", CH, _ANC, "N-th ancestor's comm; no index: any strict ancestor",
        _ancestor_field(f"N[{R.P_NAME}]"),
    ),
    FieldSpec("proc.exe", CH, F.NONE, "argv[0] (p[P_EXE])", proc(R.P_EXE)),
    FieldSpec("proc.pexe", CH, F.NONE, "parent's argv[0] (pp[P_EXE])", f"pp[{R.P_EXE}]"),
    FieldSpec(
        "proc.aexe", CH, _ANC, "N-th ancestor's argv[0]",
        _ancestor_field(f"N[{R.P_EXE}]"),
    ),
    FieldSpec("proc.exepath", PATH, F.NONE, "executable path (p[P_EXEPATH])", proc(R.P_EXEPATH)),
    FieldSpec("proc.pexepath", PATH, F.NONE, "parent's executable path", f"pp[{R.P_EXEPATH}]"),
    FieldSpec(
        "proc.aexepath", PATH, _ANC, "N-th ancestor's executable path",
        _ancestor_field(f"N[{R.P_EXEPATH}]"),
    ),
    FieldSpec(
        "proc.cmdline", CH, F.NONE, "comm and args joined by spaces (p[P_NAME], p[P_ARGS])",
        f"_cmdline_of(p[{R.P_NAME}], p[{R.P_ARGS}])",
    ),
    FieldSpec(
        "proc.pcmdline", CH, F.NONE, "parent's cmdline", f"_cmdline_of(pp[{R.P_NAME}], pp[{R.P_ARGS}])"
    ),
    FieldSpec(
        "proc.acmdline", CH, _ANC, "N-th ancestor's cmdline",
        _ancestor_field("_cmdline(N)"),
    ),
    FieldSpec(
        "proc.args", CH, F.NONE, "argv[1:] joined by spaces (p[P_ARGS])",
        f"_args(p[{R.P_NAME}], p[{R.P_ARGS}])",
    ),
    FieldSpec("proc.cwd", PATH, F.NONE, "working directory (p[P_CWD])", proc(R.P_CWD)),
    FieldSpec("proc.tty", U32, F.FEW_VALUES, "controlling tty, 0 if none (p[P_TTY])", proc(R.P_TTY)),
    FieldSpec("proc.pid", I64, F.NONE, "tgid (p[P_PID])", proc(R.P_PID)),
    FieldSpec("proc.ppid", I64, F.NONE, "parent's tgid (p[P_PPID])", proc(R.P_PPID)),
    FieldSpec(
        "proc.apid", I64, _ANC, "N-th ancestor's pid",
        _ancestor_field(f"N[{R.P_PID}]"),
    ),
    FieldSpec("proc.vpid", I64, F.NONE, "pid in its pid namespace (p[P_VPID])", proc(R.P_VPID)),
    FieldSpec("proc.vpgid", I64, F.NONE, "process group id in its namespace (p[P_VPGID])", proc(R.P_VPGID)),
    FieldSpec("proc.sid", I64, F.NONE, "session id (p[P_SID])", proc(R.P_SID)),
    FieldSpec("proc.sname", CH, F.NONE, "session leader's comm (p[P_SNAME])", proc(R.P_SNAME)),
    FieldSpec(
        "proc.is_vpgid_leader", BOOL, F.FEW_VALUES, "vpid == vpgid (p[P_VPID], p[P_VPGID])",
        f"(None if p[{R.P_VPID}] is None else p[{R.P_VPID}] == p[{R.P_VPGID}])",
    ),
    FieldSpec(
        "proc.duration", REL, F.NONE, "ns since the process started (ev[EV_TS] - p[P_START])",
        f"_duration(ev[{R.EV_TS}], p[{R.P_START}])",
    ),
    FieldSpec(
        "proc.ppid.duration", REL, F.NONE, "ns since the parent started",
        f"_duration(ev[{R.EV_TS}], pp[{R.P_START}])",
    ),
    FieldSpec(
        "proc.is_exe_writable", BOOL, F.FEW_VALUES, "EXE_WRITABLE in p[P_EXE_FLAGS]",
        f"(None if p[{R.P_EXE_FLAGS}] is None else bool(p[{R.P_EXE_FLAGS}] & {R.EXE_WRITABLE}))",
    ),
    FieldSpec(
        "proc.is_exe_upper_layer", BOOL, F.FEW_VALUES, "EXE_UPPER_LAYER in p[P_EXE_FLAGS]",
        f"(None if p[{R.P_EXE_FLAGS}] is None else bool(p[{R.P_EXE_FLAGS}] & {R.EXE_UPPER_LAYER}))",
    ),
    FieldSpec(
        "proc.is_exe_lower_layer", BOOL, F.FEW_VALUES, "EXE_LOWER_LAYER in p[P_EXE_FLAGS]",
        f"(None if p[{R.P_EXE_FLAGS}] is None else bool(p[{R.P_EXE_FLAGS}] & {R.EXE_LOWER_LAYER}))",
    ),
    FieldSpec(
        "proc.is_exe_from_memfd", BOOL, F.FEW_VALUES, "EXE_FROM_MEMFD in p[P_EXE_FLAGS]",
        f"(None if p[{R.P_EXE_FLAGS}] is None else bool(p[{R.P_EXE_FLAGS}] & {R.EXE_FROM_MEMFD}))",
    ),
    FieldSpec(
        "proc.exe_ino.ctime", ABS, F.NONE, "executable inode ctime (p[P_EXE_INO_CTIME])",
        proc(R.P_EXE_INO_CTIME),
    ),
    FieldSpec(
        "proc.exe_ino.mtime", ABS, F.NONE, "executable inode mtime (p[P_EXE_INO_MTIME])",
        proc(R.P_EXE_INO_MTIME),
    ),
    FieldSpec(
        "proc.exe_ino.ctime_duration_proc_start", ABS, F.NONE, "p[P_START] - p[P_EXE_INO_CTIME]",
        f"_duration(p[{R.P_START}], p[{R.P_EXE_INO_CTIME}])",
    ),
    FieldSpec(
        "proc.env", CH, F.ARG_ALLOWED, "environment (p[P_ENV]) joined by spaces, or [NAME]'s value",
        lambda arg, t: code(f"_env(p[{R.P_ENV}], KEY)", KEY=arg),
    ),
    FieldSpec("thread.tid", I64, F.NONE, "thread id (ev[EV_TID])", f"ev[{R.EV_TID}]"),
    FieldSpec(
        "thread.cap_effective", CH, F.NONE, "capability names of p[P_CAP_EFF]",
        opt("_caps", proc(R.P_CAP_EFF)),
    ),
    FieldSpec(
        "thread.cap_permitted", CH, F.NONE, "capability names of p[P_CAP_PERM]",
        opt("_caps", proc(R.P_CAP_PERM)),
    ),
    FieldSpec(
        "thread.cap_inheritable", CH, F.NONE, "capability names of p[P_CAP_INH]",
        opt("_caps", proc(R.P_CAP_INH))
    ),
)
