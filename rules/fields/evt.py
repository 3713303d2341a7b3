"""evt.* and syscall.type: the event's own fields (type, number, time, result, parameters).

`evt.arg.NAME` and the open-flag fields depend on the event type: specialised to one type they
become one parameter index or a few bit tests; for any type (outputs) a helper finds them.
"""

from __future__ import annotations

from collections.abc import Callable

from rules import record as R
from rules import render
from rules import render_flags as rf
from rules import render_params as rp
from rules.fields.runtime import O_MAY_CREATE, OPEN_TYPES, text_fn_name
from rules.fields.spec import ABS, BOOL, BUF, CH, I64, U64, F, FieldSpec, proc
from rules.pyexpr import Code, code

_OPEN_FLAGS = F.FEW_VALUES | F.NEVER_MISSING


def _is_open(mode: str) -> Callable[[str | None, int | None], Code]:
    """evt.is_open_read/write/exec inlined as bit tests on the event's own flags parameter (the
    same tests as `rules.render.is_open_*`); false on every other event type."""

    def extract(arg: str | None, event_type: int | None) -> Code:
        if event_type is None:
            return code("_is_open_generic(ev, MODE)", MODE=mode)
        name = R.EVENT_TYPES[event_type]
        params = R.EVENT_PARAM_INDEX[event_type]
        if name == "creat":  # libs tests only the exec bits of creat's mode, never read/write
            return code(f"bool((a[{params['mode']}] or 0) & 0o111)" if mode == "exec" else "False")
        if name not in OPEN_TYPES:
            return code("False")
        flags = f"(a[{params['flags']}] or 0)"
        if mode == "read":
            return code(f"({flags} & {rf.LINUX_O_ACCMODE}) != {rf.LINUX_O_WRONLY}")
        if mode == "write":
            return code(f"({flags} & {rf.LINUX_O_ACCMODE}) in ({rf.LINUX_O_WRONLY}, {rf.LINUX_O_RDWR})")
        return code(f"(bool({flags} & {O_MAY_CREATE}) and bool((a[{params['mode']}] or 0) & 0o111))")

    return extract


def _evt_arg(raw: bool) -> Callable[[str | None, int | None], Code]:
    """evt.arg.NAME / evt.arg[N] (rendered text) and evt.rawarg.NAME (raw value).

    `arg` is the parameter name (".NAME") or, for evt.arg[N], the digits of N."""

    def extract(arg: str | None, event_type: int | None) -> Code:
        assert arg is not None
        if event_type is None:
            if arg.isdigit():
                return code("None") if raw else code("_arg_text_at(ev, INDEX)", INDEX=int(arg))
            return code("_arg_raw(ev, NAME)" if raw else "_arg_text(ev, NAME)", NAME=arg)
        if arg.isdigit():
            index = render.libs_arg_index(event_type, int(arg))  # libs' N-th parameter, not ours
        else:
            index = R.EVENT_PARAM_INDEX[event_type].get(arg)
        if index is None:
            return code("None")
        if raw:
            return code(f"a[{index}]")
        if _needs_event(event_type, index):
            return code(f"_render({event_type}, {index}, a[{index}], event=ev)")
        return code(f"{text_fn_name(event_type, index)}(a[{index}])")

    return extract


def _needs_event(type_id: int, index: int) -> bool:
    """Whether the parameter's text depends on more than its raw value: an fd or path resolved
    through the event's fd and process, an open mode zeroed by its flags, ptrace's data."""
    spec = rp.SPECS[type_id][index]
    if spec.context in (rp.FD, rp.PATH, rp.OPEN_MODE):
        return True
    return R.EVENT_TYPES[type_id] == "ptrace" and R.EVENT_PARAMS[type_id][index] == "data"


def _evt_res(arg: str | None, event_type: int | None) -> Code:
    """evt.res as libs prints it for the event's type (`rules.render.evt_res`)."""
    res = f"ev[{R.EV_RES}]"
    if event_type is None:
        return code(f"(None if {res} is None else _evt_res(ev[{R.EV_TYPE}], {res}))")
    if render.evt_res(event_type, 0) is None:  # no return value at all (procexit)
        return code("None")
    return code(f"(None if {res} is None else _evt_res({event_type}, {res}))")


def _evt_type(arg: str | None, event_type: int | None) -> Code:
    if event_type is None:
        return code(f"_EVENT_TYPES[ev[{R.EV_TYPE}]]")
    return code("NAME", NAME=R.EVENT_TYPES[event_type])


ROWS: tuple[FieldSpec, ...] = (
    FieldSpec("evt.type", CH, F.FEW_VALUES, "event type name (EVENT_TYPES[ev[EV_TYPE]])", _evt_type),
    FieldSpec(
        "syscall.type", CH, F.FEW_VALUES, "same as evt.type: every event Peregrine sees is a syscall",
        _evt_type,
    ),
    FieldSpec("evt.num", U64, F.NONE, "per-node event number from 1 (ev[EV_NUM])", f"ev[{R.EV_NUM}]"),
    FieldSpec("evt.time", ABS, F.NONE, "event timestamp, ns since the epoch (ev[EV_TS])", f"ev[{R.EV_TS}]"),
    FieldSpec(
        "evt.rawtime", ABS, F.NONE, "event timestamp, ns since the epoch (ev[EV_TS])",
        f"ev[{R.EV_TS}]",
    ),
    FieldSpec(
        "evt.res", CH, F.FEW_VALUES, "SUCCESS or the errno name of ev[EV_RES] (render.evt_res)",
        _evt_res,
    ),
    FieldSpec("evt.rawres", I64, F.FEW_VALUES, "raw return value (ev[EV_RES])", f"ev[{R.EV_RES}]"),
    FieldSpec(
        "evt.failed", BOOL, F.FEW_VALUES, "ev[EV_RES] < 0",
        f"(None if ev[{R.EV_RES}] is None else ev[{R.EV_RES}] < 0)",
    ),
    FieldSpec("evt.dir", CH, F.DEPRECATED, "always '<': only exit events exist", "'<'"),
    FieldSpec("evt.hostname", CH, F.NONE, "node the process runs on (p[P_NODE])", proc(R.P_NODE)),
    FieldSpec(
        "evt.is_open_read", BOOL, _OPEN_FLAGS, "open flags (ev[EV_ARGS]) allow reading", _is_open("read")
    ),
    FieldSpec(
        "evt.is_open_write", BOOL, _OPEN_FLAGS, "open flags (ev[EV_ARGS]) allow writing", _is_open("write")
    ),
    FieldSpec(
        "evt.is_open_exec", BOOL, _OPEN_FLAGS, "open created a file with an exec bit", _is_open("exec")
    ),
    FieldSpec(
        "evt.arg", CH, F.ARG_REQUIRED, "parameter .NAME or [N] of ev[EV_ARGS], rendered",
        _evt_arg(False),
    ),
    FieldSpec(
        "evt.rawarg", I64, F.ARG_REQUIRED | F.NO_TRANSFORMER, "raw parameter .NAME of ev[EV_ARGS]",
        _evt_arg(True)
    ),
    FieldSpec(
        "evt.args", CH, F.NONE, "all parameters rendered",
        f"_render_args(ev[{R.EV_TYPE}], ev[{R.EV_ARGS}], event=ev)",
    ),
    FieldSpec("evt.buffer", BUF, F.NONE, "data buffer: never carried by Peregrine records", "None"),
)
