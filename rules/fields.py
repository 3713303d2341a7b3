"""The field catalog: every field a condition or an output may name, as one table.

Each row says the field's type, its flags (libs' ``EPF_*``), where the value comes from in the
positional records of `rules.record`, and how to read it: an *extractor*, a Python expression
template the compiler inlines into generated code. Templates are written over these locals, which
the generated function binds once per event (see `BASES`):

    ev  the event              a   ev[EV_ARGS]
    p   the process            pp  the parent process, or an all-None record
    f   the fd, or an all-None record
    c   the container record, or an all-None record

so a missing parent, fd or container reads as ``None`` without a branch, and ``None`` is the one
"missing value" every comparison treats as false. A template may call the helpers in `HELPERS`.
An extractor is a string, or a function ``(arg, event_type_id) -> code`` for fields that take an
argument (``proc.aname[2]``) or whose place depends on the event type (``evt.arg.flags``); given
``event_type_id=None`` it must return code that works for any event (outputs use that form), and it
may return ``"None"`` for "never present on this event type", which the compiler folds away.

Limits, on purpose: the rule engine does no I/O, so ``fd.*ip.name`` read the injected IP -> name
mapping (``_ipn``) instead of DNS, ``evt.buffer`` is always missing (records carry no data
buffers), and ``evt.time`` renders in UTC rather than the host's local time.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import IntFlag, StrEnum

from rules import record as R
from rules import render
from rules import render_flags as rf
from rules import render_params as rp
from rules.affixes import Affixes

Extractor = str | Callable[[str | None, int | None], str]


class FieldType(StrEnum):
    """libs' parameter types, reduced to those the catalog uses."""

    CHARBUF = "CHARBUF"
    FSPATH = "FSPATH"
    INT64 = "INT64"
    UINT64 = "UINT64"
    UINT32 = "UINT32"
    PORT = "PORT"
    BOOL = "BOOL"
    IPADDR = "IPADDR"
    IPNET = "IPNET"
    ABSTIME = "ABSTIME"
    RELTIME = "RELTIME"
    BYTEBUF = "BYTEBUF"


STRING_TYPES = frozenset({FieldType.CHARBUF, FieldType.FSPATH})
NUMERIC_TYPES = frozenset(
    {
        FieldType.INT64, FieldType.UINT64, FieldType.UINT32, FieldType.PORT,
        FieldType.ABSTIME, FieldType.RELTIME,
    }
)


class FieldFlag(IntFlag):
    NONE = 0
    ARG_REQUIRED = 1  # the field needs [arg] (or, for evt.arg/evt.rawarg, .NAME)
    ARG_ALLOWED = 2  # the field takes an optional [arg]
    NO_RHS = 4  # cannot be used as a right-hand field (val(), transformers)
    FILTER_ONLY = 8  # not usable in outputs
    IS_LIST = 16  # the value is a list
    NO_TRANSFORMER = 32  # transformers may not wrap it
    ANY_OF = 64  # the extractor yields a tuple of candidates; a check is true if any candidate passes
    DEPRECATED = 128
    ANCESTORS = 256  # without [N] the value is every strict ancestor's; a check is true if any passes
    FEW_VALUES = 512  # few distinct values (fd.typechar, evt.is_open_read): equality often holds
    NEVER_MISSING = 1024  # the extractor always yields a value (a computed bool), never None


F = FieldFlag


@dataclass(frozen=True, slots=True)
class FieldSpec:
    name: str
    type: FieldType
    flags: FieldFlag
    desc: str
    extract: Extractor
    # For fields whose value may be unknown while the field is present (fd.sip.name with an IP
    # the mapping does not know): code whose None-ness decides presence, so "!=" stays Falco's.
    presence: str | None = None
    # A cheap necessary condition of "field in values", tested first: (read, test of `{t}`, the
    # affixes that test requires of the read).
    implied: Callable[[tuple[object, ...]], tuple[str, str, Affixes]] | None = None

    def code(self, arg: str | None, event_type: int | None) -> str:
        """The extractor's Python expression for this argument and event type."""
        if callable(self.extract):
            return self.extract(arg, event_type)
        return self.extract


# --- the locals generated code binds per event, in dependency order --------------------------
BASES: dict[str, str] = {
    "p": f"ev[{R.EV_PROC}]",
    "pp": f"(p[{R.P_PARENT}] or _EP)",
    "c": f"(p[{R.P_CONTAINER}] or _EC)",
    "f": f"(ev[{R.EV_FD}] or _EF)",
    "a": f"ev[{R.EV_ARGS}]",
}
BASE_DEPS: dict[str, tuple[str, ...]] = {"p": (), "pp": ("p",), "c": ("p",), "f": (), "a": ()}
_BASE_RE = re.compile(r"(?<![\w.])(pp|p|c|f|a)\b(?!\s*=[^=])")
_LITERAL_RE = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"")


def bases_of(code: str) -> set[str]:
    """Which `BASES` locals a piece of generated code reads (string literals ignored)."""
    found = set(_BASE_RE.findall(_LITERAL_RE.sub("''", code)))
    for name in list(found):
        found.update(BASE_DEPS[name])
    return found


# Stand-ins for a missing process/fd/container: every slot None, so reads stay inline.
EMPTY_PROCESS: tuple[None, ...] = (None,) * R.PROCESS_LEN
EMPTY_FD: tuple[None, ...] = (None,) * R.FD_LEN
EMPTY_CONTAINER: tuple[None, ...] = (None,) * R.CONTAINER_LEN


# --- helpers the templates call (all return None for a missing input) ------------------------
# proc.cmdline and proc.args take their slots rather than the record, so rules.gate can key a
# memo on (name, args); an ancestor's (proc.acmdline) goes through `_cmdline`.
def _cmdline_of(name: object, args: list[str] | tuple[str, ...] | None) -> str | None:
    if name is None:
        return None
    return f"{name} {' '.join(args)}" if args else str(name)


def _cmdline(p: list[object] | tuple[object, ...]) -> str | None:
    return _cmdline_of(p[R.P_NAME], p[R.P_ARGS])  # type: ignore[arg-type]


def _args(name: object, args: list[str] | tuple[str, ...] | None) -> str | None:
    if args is None and name is None:
        return None
    return " ".join(args) if args else ""


def _env(env: list[str] | tuple[str, ...] | None, key: str | None) -> str | None:
    """proc.env from the P_ENV slot (a list, or the tuple rules.gate keys its memo with)."""
    if env is None:
        return None
    if key is None:
        return " ".join(env)
    prefix = key + "="
    for item in env:
        if item.startswith(prefix):
            return str(item[len(prefix) :])
    return None


def _directory(f: list[object] | tuple[object, ...]) -> str | None:
    name = f[R.F_NAME]
    if name is None or f[R.F_TYPECHAR] not in ("f", "d"):
        return None
    if f[R.F_TYPECHAR] == "d":
        return str(name)
    cut = name.rfind("/")  # type: ignore[attr-defined]
    return "/" if cut == 0 else str(name[:cut])  # type: ignore[index]


def _filename(f: list[object] | tuple[object, ...]) -> str | None:
    name = f[R.F_NAME]
    if name is None or f[R.F_TYPECHAR] != "f":
        return None
    return str(name[name.rfind("/") + 1 :])  # type: ignore[attr-defined,index]


def _ancestor_nodes(p: list[object] | tuple[object, ...]) -> list[list[object]]:
    """Every strict ancestor's record, parent first (bounded, in case a table has a cycle)."""
    out = []
    node = p[R.P_PARENT]
    for _ in range(64):
        if node is None:
            break
        out.append(node)
        node = node[R.P_PARENT]  # type: ignore[index]
    return out  # type: ignore[return-value]


def _ancestor_node(depth: int) -> str:
    """Inline code for the record `depth` generations up (0 = the process itself)."""
    node = "p"
    for _ in range(depth):
        node = f"({node}[{R.P_PARENT}] or _EP)"
    return node


def _ancestor_field(value: Callable[[str], str]) -> Callable[[str | None, int | None], str]:
    """proc.aname-style extractor over `value(node_code)`: [N] walks N parents inline; with no
    index the value is the list of every strict ancestor's value (a filter then matches if any
    ancestor does; see the ANCESTORS flag)."""

    def extract(arg: str | None, event_type: int | None) -> str:
        if arg is None:
            return f"[{value('_n')} for _n in _ancestor_nodes(p)]"
        return value(_ancestor_node(int(arg)))

    return extract


def _mount_dest(mounts: list[list[object]] | None, pattern: str) -> str | None:
    """Destination of the first mount whose source matches `pattern` (a glob), or by position."""
    if mounts is None:
        return None
    if pattern.isdigit():
        idx = int(pattern)
        return str(mounts[idx][1]) if idx < len(mounts) else None
    matcher = _glob_matcher(pattern)
    for mount in mounts:
        if matcher(str(mount[0])):
            return str(mount[1])
    return None


def _glob_matcher(pattern: str) -> Callable[[str], bool]:
    import fnmatch

    rx = re.compile(fnmatch.translate(pattern), re.DOTALL)
    return lambda text: rx.match(text) is not None


def _mounts(mounts: list[list[object]] | None) -> str | None:
    if mounts is None:
        return None
    parts = []
    for source, dest, mode, rw, propagation in mounts:
        parts.append(f"{source}:{dest}:{mode}:{'true' if rw else 'false'}:{propagation}")
    return ",".join(parts)


def _duration(ts: int | None, start: int | None) -> int | None:
    return None if ts is None or not start else ts - start


def _arg_text(ev: list[object], name: str) -> str | None:
    """Generic evt.arg.NAME: find the parameter for this event's type, render it."""
    type_id = ev[R.EV_TYPE]
    index = R.EVENT_PARAM_INDEX[type_id].get(name) if type_id < len(R.EVENT_PARAMS) else None  # type: ignore[operator,call-overload]
    if index is None:
        return None
    return render.render_arg(type_id, index, ev[R.EV_ARGS][index], event=ev)  # type: ignore[arg-type,index]


def _arg_text_at(ev: list[object], index: int) -> str | None:
    type_id = ev[R.EV_TYPE]
    args = ev[R.EV_ARGS]
    if index >= len(args):  # type: ignore[arg-type]
        return None
    return render.render_arg(type_id, index, args[index], event=ev)  # type: ignore[arg-type,index]


def _arg_raw(ev: list[object], name: str) -> object:
    type_id = ev[R.EV_TYPE]
    index = R.EVENT_PARAM_INDEX[type_id].get(name) if type_id < len(R.EVENT_PARAMS) else None  # type: ignore[operator,call-overload]
    return None if index is None else ev[R.EV_ARGS][index]  # type: ignore[index]


_FD_TYPES: Mapping[str, str] = {ch: render.fd_type_name(ch) for ch in rf.FD_TYPE_NAMES}
_SOCKFAMILY: Mapping[str, str] = {"4": "ip", "6": "ip", "u": "unix"}
_OPEN_TYPES = frozenset({"open", "openat", "openat2"})
_O_MAY_CREATE = rf.LINUX_O_CREAT | rf.LINUX_O_TMPFILE


def _directory_implies(values: tuple[object, ...]) -> tuple[str, str, Affixes]:
    """fd.directory = D needs fd.name to be D itself (a directory fd) or to start with D/."""
    prefixes = tuple(str(v).rstrip("/") + "/" for v in values)
    exact = tuple(str(v) for v in values)
    test = f"({{t}}.startswith({prefixes!r}) or {{t}} in {exact!r})"
    return f"f[{R.F_NAME}]", test, Affixes(exact=frozenset(exact), prefixes=frozenset(prefixes))


def _filename_implies(values: tuple[object, ...]) -> tuple[str, str, Affixes]:
    """fd.filename = N needs fd.name to end with /N."""
    suffixes = tuple("/" + str(v) for v in values)
    return f"f[{R.F_NAME}]", f"{{t}}.endswith({suffixes!r})", Affixes(suffixes=frozenset(suffixes))


def _is_open(mode: str) -> Callable[[str | None, int | None], str]:
    """evt.is_open_read/write/exec inlined as bit tests on the event's own flags parameter (the
    same tests as `rules.render.is_open_*`); false on every other event type."""

    def extract(arg: str | None, event_type: int | None) -> str:
        if event_type is None:
            return f"_is_open_generic(ev, {mode!r})"
        name = R.EVENT_TYPES[event_type]
        params = R.EVENT_PARAM_INDEX[event_type]
        if name == "creat":  # libs tests only the exec bits of creat's mode, never read/write
            return f"bool((a[{params['mode']}] or 0) & 0o111)" if mode == "exec" else "False"
        if name not in _OPEN_TYPES:
            return "False"
        flags = f"(a[{params['flags']}] or 0)"
        if mode == "read":
            return f"({flags} & {rf.LINUX_O_ACCMODE}) != {rf.LINUX_O_WRONLY}"
        if mode == "write":
            return f"({flags} & {rf.LINUX_O_ACCMODE}) in ({rf.LINUX_O_WRONLY}, {rf.LINUX_O_RDWR})"
        return f"(bool({flags} & {_O_MAY_CREATE}) and bool((a[{params['mode']}] or 0) & 0o111))"

    return extract


def _is_open_generic(ev: list[object], mode: str) -> bool:
    """evt.is_open_* for any event (outputs), through `rules.render`'s predicates."""
    type_id: int = ev[R.EV_TYPE]  # type: ignore[assignment]
    if not 0 <= type_id < len(R.EVENT_TYPES):
        return False
    args: list[int | None] = ev[R.EV_ARGS]  # type: ignore[assignment]
    params = R.EVENT_PARAM_INDEX[type_id]
    name = R.EVENT_TYPES[type_id]
    if name == "creat":
        return mode == "exec" and render.is_open_exec(rf.LINUX_O_CREAT, args[params["mode"]] or 0)
    if name not in _OPEN_TYPES:
        return False
    flags = args[params["flags"]] or 0
    if mode == "read":
        return render.is_open_read(flags)
    if mode == "write":
        return render.is_open_write(flags)
    return render.is_open_exec(flags, args[params["mode"]] or 0)


def _evt_arg(raw: bool) -> Callable[[str | None, int | None], str]:
    """evt.arg.NAME / evt.arg[N] (rendered text) and evt.rawarg.NAME (raw value).

    `arg` is the parameter name (".NAME") or, for evt.arg[N], the digits of N."""

    def extract(arg: str | None, event_type: int | None) -> str:
        assert arg is not None
        if event_type is None:
            if arg.isdigit():
                return "None" if raw else f"_arg_text_at(ev, {int(arg)})"
            return f"_arg_raw(ev, {arg!r})" if raw else f"_arg_text(ev, {arg!r})"
        if arg.isdigit():
            index: int | None = int(arg) if int(arg) < len(R.EVENT_PARAMS[event_type]) else None
        else:
            index = R.EVENT_PARAM_INDEX[event_type].get(arg)
        if index is None:
            return "None"
        if raw:
            return f"a[{index}]"
        if _needs_event(event_type, index):
            return f"_render({event_type}, {index}, a[{index}], event=ev)"
        return f"{_text_fn_name(event_type, index)}(a[{index}])"

    return extract


def _text_fn_name(type_id: int, index: int) -> str:
    """The global bound to `render.arg_text_fn(type_id, index)` in generated code (`HELPERS`)."""
    return f"_txt{type_id}_{index}"


def _needs_event(type_id: int, index: int) -> bool:
    """Whether the parameter's text depends on more than its raw value: an fd or path resolved
    through the event's fd and process, an open mode zeroed by its flags, ptrace's data."""
    spec = rp.SPECS[type_id][index]
    if spec.context in (rp.FD, rp.PATH, rp.OPEN_MODE):
        return True
    return R.EVENT_TYPES[type_id] == "ptrace" and R.EVENT_PARAMS[type_id][index] == "data"


def _evt_res(arg: str | None, event_type: int | None) -> str:
    """evt.res as libs prints it for the event's type (`rules.render.evt_res`)."""
    res = f"ev[{R.EV_RES}]"
    if event_type is None:
        return f"(None if {res} is None else _evt_res(ev[{R.EV_TYPE}], {res}))"
    if render.evt_res(event_type, 0) is None:  # no return value at all (procexit)
        return "None"
    return f"(None if {res} is None else _evt_res({event_type}, {res}))"


def _evt_type(arg: str | None, event_type: int | None) -> str:
    return f"_EVENT_TYPES[ev[{R.EV_TYPE}]]" if event_type is None else repr(R.EVENT_TYPES[event_type])


def _local_remote(local: bool, client_slot: int, server_slot: int) -> str:
    """Local end is the server end when this process accepted the connection."""
    first, second = (server_slot, client_slot) if local else (client_slot, server_slot)
    return f"(f[{first}] if f[{R.F_IS_SERVER}] else f[{second}])"


def _ip_names(slot_code: str) -> str:
    return f"(_ipn.get({slot_code}) if {slot_code} is not None else None)"


HELPERS: dict[str, object] = {
    "_EP": EMPTY_PROCESS,
    "_EF": EMPTY_FD,
    "_EC": EMPTY_CONTAINER,
    "_EVENT_TYPES": R.EVENT_TYPES,
    "_FD_TYPES": _FD_TYPES,
    "_SOCKFAMILY": _SOCKFAMILY,
    "_cmdline": _cmdline,
    "_cmdline_of": _cmdline_of,
    "_args": _args,
    "_env": _env,
    "_directory": _directory,
    "_filename": _filename,
    "_ancestor_nodes": _ancestor_nodes,
    "_mount_dest": _mount_dest,
    "_mounts": _mounts,
    "_duration": _duration,
    "_arg_text": _arg_text,
    "_arg_text_at": _arg_text_at,
    "_arg_raw": _arg_raw,
    "_render": render.render_arg,
    "_is_open_generic": _is_open_generic,
    "_evt_res": render.evt_res,
    "_caps": render.cap_names,
    "_render_args": render.render_args,
    **{
        _text_fn_name(t, i): render.arg_text_fn(t, i)
        for t, names in enumerate(R.EVENT_PARAMS)
        for i in range(len(names))
    },
}


def _proc(slot: int) -> str:
    return f"p[{slot}]"


def _opt(fn: str, value: str) -> str:
    """Call `fn` only on a present value."""
    return f"(None if {value} is None else {fn}({value}))"


CH, PATH, I64 = FieldType.CHARBUF, FieldType.FSPATH, FieldType.INT64
U64, U32 = FieldType.UINT64, FieldType.UINT32
PORT, BOOL, IP, NET, ABS, REL, BUF = (
    FieldType.PORT,
    FieldType.BOOL,
    FieldType.IPADDR,
    FieldType.IPNET,
    FieldType.ABSTIME,
    FieldType.RELTIME,
    FieldType.BYTEBUF,
)
_OPEN_FLAGS = F.FEW_VALUES | F.NEVER_MISSING
_ANC = F.ARG_ALLOWED | F.NO_RHS | F.NO_TRANSFORMER | F.ANCESTORS

_ROWS: tuple[FieldSpec, ...] = (
    # --- evt.* ---------------------------------------------------------------------------------
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
    FieldSpec("evt.hostname", CH, F.NONE, "node the process runs on (p[P_NODE])", _proc(R.P_NODE)),
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
    # --- proc.* / thread.* ----------------------------------------------------------------------
    FieldSpec("proc.name", CH, F.NONE, "comm (p[P_NAME])", _proc(R.P_NAME)),
    FieldSpec("proc.pname", CH, F.NONE, "parent's comm (pp[P_NAME])", f"pp[{R.P_NAME}]"),
    FieldSpec(
        "proc.aname", CH, _ANC, "N-th ancestor's comm; no index: any strict ancestor",
        _ancestor_field(lambda n: f"{n}[{R.P_NAME}]"),
    ),
    FieldSpec("proc.exe", CH, F.NONE, "argv[0] (p[P_EXE])", _proc(R.P_EXE)),
    FieldSpec("proc.pexe", CH, F.NONE, "parent's argv[0] (pp[P_EXE])", f"pp[{R.P_EXE}]"),
    FieldSpec(
        "proc.aexe", CH, _ANC, "N-th ancestor's argv[0]",
        _ancestor_field(lambda n: f"{n}[{R.P_EXE}]"),
    ),
    FieldSpec("proc.exepath", PATH, F.NONE, "executable path (p[P_EXEPATH])", _proc(R.P_EXEPATH)),
    FieldSpec("proc.pexepath", PATH, F.NONE, "parent's executable path", f"pp[{R.P_EXEPATH}]"),
    FieldSpec(
        "proc.aexepath", PATH, _ANC, "N-th ancestor's executable path",
        _ancestor_field(lambda n: f"{n}[{R.P_EXEPATH}]"),
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
        _ancestor_field(lambda n: f"_cmdline({n})"),
    ),
    FieldSpec(
        "proc.args", CH, F.NONE, "argv[1:] joined by spaces (p[P_ARGS])",
        f"_args(p[{R.P_NAME}], p[{R.P_ARGS}])",
    ),
    FieldSpec("proc.cwd", PATH, F.NONE, "working directory (p[P_CWD])", _proc(R.P_CWD)),
    FieldSpec("proc.tty", U32, F.FEW_VALUES, "controlling tty, 0 if none (p[P_TTY])", _proc(R.P_TTY)),
    FieldSpec("proc.pid", I64, F.NONE, "tgid (p[P_PID])", _proc(R.P_PID)),
    FieldSpec("proc.ppid", I64, F.NONE, "parent's tgid (p[P_PPID])", _proc(R.P_PPID)),
    FieldSpec(
        "proc.apid", I64, _ANC, "N-th ancestor's pid",
        _ancestor_field(lambda n: f"{n}[{R.P_PID}]"),
    ),
    FieldSpec("proc.vpid", I64, F.NONE, "pid in its pid namespace (p[P_VPID])", _proc(R.P_VPID)),
    FieldSpec("proc.vpgid", I64, F.NONE, "process group id in its namespace (p[P_VPGID])", _proc(R.P_VPGID)),
    FieldSpec("proc.sid", I64, F.NONE, "session id (p[P_SID])", _proc(R.P_SID)),
    FieldSpec("proc.sname", CH, F.NONE, "session leader's comm (p[P_SNAME])", _proc(R.P_SNAME)),
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
        _proc(R.P_EXE_INO_CTIME),
    ),
    FieldSpec(
        "proc.exe_ino.mtime", ABS, F.NONE, "executable inode mtime (p[P_EXE_INO_MTIME])",
        _proc(R.P_EXE_INO_MTIME),
    ),
    FieldSpec(
        "proc.exe_ino.ctime_duration_proc_start", ABS, F.NONE, "p[P_START] - p[P_EXE_INO_CTIME]",
        f"_duration(p[{R.P_START}], p[{R.P_EXE_INO_CTIME}])",
    ),
    FieldSpec(
        "proc.env", CH, F.ARG_ALLOWED, "environment (p[P_ENV]) joined by spaces, or [NAME]'s value",
        lambda arg, t: f"_env(p[{R.P_ENV}], {arg!r})",
    ),
    FieldSpec("thread.tid", I64, F.NONE, "thread id (ev[EV_TID])", f"ev[{R.EV_TID}]"),
    FieldSpec(
        "thread.cap_effective", CH, F.NONE, "capability names of p[P_CAP_EFF]",
        _opt("_caps", _proc(R.P_CAP_EFF)),
    ),
    FieldSpec(
        "thread.cap_permitted", CH, F.NONE, "capability names of p[P_CAP_PERM]",
        _opt("_caps", _proc(R.P_CAP_PERM)),
    ),
    FieldSpec(
        "thread.cap_inheritable", CH, F.NONE, "capability names of p[P_CAP_INH]",
        _opt("_caps", _proc(R.P_CAP_INH))
    ),
    # --- user.* / group.* ----------------------------------------------------------------------
    FieldSpec("user.uid", U32, F.FEW_VALUES, "effective uid (p[P_UID])", _proc(R.P_UID)),
    FieldSpec("user.name", CH, F.FEW_VALUES, "user name (p[P_USER])", _proc(R.P_USER)),
    FieldSpec(
        "user.loginuid", I64, F.FEW_VALUES, "audit uid, -1 if unset (p[P_LOGINUID])", _proc(R.P_LOGINUID)
    ),
    FieldSpec("user.loginname", CH, F.NONE, "audit user name (p[P_LOGINNAME])", _proc(R.P_LOGINNAME)),
    FieldSpec("group.gid", U32, F.FEW_VALUES, "effective gid (p[P_GID])", _proc(R.P_GID)),
    FieldSpec("group.name", CH, F.NONE, "group name (p[P_GROUP])", _proc(R.P_GROUP)),
    # --- fd.* -----------------------------------------------------------------------------------
    FieldSpec("fd.num", I64, F.FEW_VALUES, "fd number, -1 on a failed open (f[F_NUM])", f"f[{R.F_NUM}]"),
    FieldSpec("fd.typechar", CH, F.FEW_VALUES, "one-letter fd type (f[F_TYPECHAR])", f"f[{R.F_TYPECHAR}]"),
    FieldSpec(
        "fd.type", CH, F.FEW_VALUES, "fd type name: file, ipv4... (f[F_TYPECHAR])",
        f"_FD_TYPES.get(f[{R.F_TYPECHAR}])",
    ),
    FieldSpec("fd.name", PATH, F.NONE, "path, or the connection tuple (f[F_NAME])", f"f[{R.F_NAME}]"),
    FieldSpec(
        "fd.nameraw", PATH, F.NONE, "path as the process passed it (f[F_NAMERAW])",
        f"f[{R.F_NAMERAW}]",
    ),
    FieldSpec(
        "fd.directory", PATH, F.NONE, "directory of a file fd (f[F_NAME])", "_directory(f)",
        implied=_directory_implies,
    ),
    FieldSpec(
        "fd.filename", CH, F.NONE, "file name of a file fd (f[F_NAME])", "_filename(f)",
        implied=_filename_implies,
    ),
    FieldSpec("fd.l4proto", CH, F.FEW_VALUES, "tcp, udp, icmp or raw (f[F_L4PROTO])", f"f[{R.F_L4PROTO}]"),
    FieldSpec(
        "fd.sockfamily", CH, F.FEW_VALUES, "ip or unix, from f[F_TYPECHAR]",
        f"_SOCKFAMILY.get(f[{R.F_TYPECHAR}])",
    ),
    FieldSpec("fd.cip", IP, F.NONE, "client IP (f[F_CIP])", f"f[{R.F_CIP}]"),
    FieldSpec("fd.sip", IP, F.NONE, "server IP (f[F_SIP])", f"f[{R.F_SIP}]"),
    FieldSpec("fd.lip", IP, F.NONE, "local IP", _local_remote(True, R.F_CIP, R.F_SIP)),
    FieldSpec("fd.rip", IP, F.NONE, "remote IP", _local_remote(False, R.F_CIP, R.F_SIP)),
    FieldSpec("fd.cport", PORT, F.NONE, "client port (f[F_CPORT])", f"f[{R.F_CPORT}]"),
    FieldSpec("fd.sport", PORT, F.NONE, "server port (f[F_SPORT])", f"f[{R.F_SPORT}]"),
    FieldSpec("fd.lport", PORT, F.NONE, "local port", _local_remote(True, R.F_CPORT, R.F_SPORT)),
    FieldSpec("fd.rport", PORT, F.NONE, "remote port", _local_remote(False, R.F_CPORT, R.F_SPORT)),
    FieldSpec(
        "fd.ip", IP, F.FILTER_ONLY | F.ANY_OF, "client or server IP", f"(f[{R.F_CIP}], f[{R.F_SIP}])"
    ),
    FieldSpec(
        "fd.port", PORT, F.FILTER_ONLY | F.ANY_OF, "client or server port",
        f"(f[{R.F_CPORT}], f[{R.F_SPORT}])"
    ),
    FieldSpec(
        "fd.net", NET, F.FILTER_ONLY | F.ANY_OF, "client or server IP, against a CIDR",
        f"(f[{R.F_CIP}], f[{R.F_SIP}])"
    ),
    FieldSpec("fd.cnet", NET, F.FILTER_ONLY, "client IP against a CIDR", f"f[{R.F_CIP}]"),
    FieldSpec("fd.snet", NET, F.FILTER_ONLY, "server IP against a CIDR", f"f[{R.F_SIP}]"),
    FieldSpec(
        "fd.lnet", NET, F.FILTER_ONLY, "local IP against a CIDR",
        _local_remote(True, R.F_CIP, R.F_SIP),
    ),
    FieldSpec(
        "fd.rnet", NET, F.FILTER_ONLY, "remote IP against a CIDR",
        _local_remote(False, R.F_CIP, R.F_SIP),
    ),
    FieldSpec(
        "fd.cip.name", CH, F.NO_RHS, "name of the client IP, from the injected mapping",
        _ip_names(f"f[{R.F_CIP}]"), presence=f"f[{R.F_CIP}]",
    ),
    FieldSpec(
        "fd.sip.name", CH, F.NO_RHS, "name of the server IP, from the injected mapping",
        _ip_names(f"f[{R.F_SIP}]"), presence=f"f[{R.F_SIP}]",
    ),
    FieldSpec(
        "fd.lip.name", CH, F.NO_RHS, "name of the local IP, from the injected mapping",
        _ip_names(_local_remote(True, R.F_CIP, R.F_SIP)), presence=_local_remote(True, R.F_CIP, R.F_SIP),
    ),
    FieldSpec(
        "fd.rip.name", CH, F.NO_RHS, "name of the remote IP, from the injected mapping",
        _ip_names(_local_remote(False, R.F_CIP, R.F_SIP)), presence=_local_remote(False, R.F_CIP, R.F_SIP),
    ),
    FieldSpec(
        "fd.connected", BOOL, F.FEW_VALUES, "socket is connected (f[F_CONNECTED])", f"f[{R.F_CONNECTED}]"
    ),
    FieldSpec(
        "fd.name_changed", BOOL, F.FEW_VALUES, "the event changed the fd's name (f[F_NAME_CHANGED])",
        f"f[{R.F_NAME_CHANGED}]"
    ),
    # --- container.* / k8s.* (enrichment) -------------------------------------------------------
    FieldSpec(
        "container.id", CH, F.FEW_VALUES, "12-char container id, or 'host' (p[P_CONTAINER_ID])",
        f"(None if p[{R.P_CONTAINER_ID}] is None else p[{R.P_CONTAINER_ID}][:12])",
    ),
    FieldSpec(
        "container.full_id", CH, F.NONE, "full container id (p[P_CONTAINER_ID])",
        _proc(R.P_CONTAINER_ID),
    ),
    FieldSpec("container.name", CH, F.NONE, "container name (c[C_NAME])", f"c[{R.C_NAME}]"),
    FieldSpec("container.image", CH, F.NONE, "image reference (c[C_IMAGE])", f"c[{R.C_IMAGE}]"),
    FieldSpec(
        "container.image.repository", CH, F.NONE, "image repository (c[C_IMAGE_REPO])",
        f"c[{R.C_IMAGE_REPO}]",
    ),
    FieldSpec("container.image.tag", CH, F.NONE, "image tag (c[C_IMAGE_TAG])", f"c[{R.C_IMAGE_TAG}]"),
    FieldSpec(
        "container.image.digest", CH, F.NONE, "image digest (c[C_IMAGE_DIGEST])",
        f"c[{R.C_IMAGE_DIGEST}]",
    ),
    FieldSpec(
        "container.type", CH, F.NONE, "runtime: containerd, cri-o, docker (c[C_TYPE])",
        f"c[{R.C_TYPE}]",
    ),
    FieldSpec(
        "container.privileged", BOOL, F.FEW_VALUES, "runs privileged (c[C_PRIVILEGED])",
        f"c[{R.C_PRIVILEGED}]",
    ),
    FieldSpec("container.start_ts", ABS, F.NONE, "container start, ns (c[C_START_TS])", f"c[{R.C_START_TS}]"),
    FieldSpec(
        "container.mounts", CH, F.NONE, "source:dest:mode:rw:propagation, comma-separated",
        f"_mounts(c[{R.C_MOUNTS}])",
    ),
    FieldSpec(
        "container.mount.dest", CH, F.ARG_REQUIRED,
        "destination of the mount whose source matches [glob] or [N]",
        lambda arg, t: f"_mount_dest(c[{R.C_MOUNTS}], {arg!r})",
    ),
    FieldSpec("k8s.ns.name", CH, F.FEW_VALUES, "Kubernetes namespace (c[K_NS])", f"c[{R.K_NS}]"),
    FieldSpec("k8s.pod.name", CH, F.NONE, "pod name (c[K_POD_NAME])", f"c[{R.K_POD_NAME}]"),
    FieldSpec("k8s.pod.uid", CH, F.NONE, "pod uid (c[K_POD_UID])", f"c[{R.K_POD_UID}]"),
    FieldSpec("k8s.pod.ip", IP, F.NONE, "pod IP (c[K_POD_IP])", f"c[{R.K_POD_IP}]"),
    FieldSpec(
        "k8s.pod.label", CH, F.ARG_REQUIRED, "value of pod label [key] (c[K_POD_LABELS])",
        lambda arg, t: f"(c[{R.K_POD_LABELS}] or {{}}).get({arg!r})",
    ),
)

FIELDS: Mapping[str, FieldSpec] = {row.name: row for row in _ROWS}
# Families whose parameter name follows a dot (evt.arg.flags): the dotted tail is the argument.
_DOTTED_ARG_FAMILIES = ("evt.arg", "evt.rawarg")


def lookup(name: str, arg: str | None) -> tuple[FieldSpec, str | None] | None:
    """The row for a field as written, with its effective argument; None if there is none.

    ``evt.arg.flags`` resolves to the ``evt.arg`` row with argument ``flags``, if some event type
    has a parameter of that name (libs' "unknown event argument" otherwise)."""
    spec = FIELDS.get(name)
    if spec is not None:
        return spec, arg
    for family in _DOTTED_ARG_FAMILIES:
        if name.startswith(family + ".") and arg is None:
            param = name[len(family) + 1 :]
            if param in _ALL_PARAMS:
                return FIELDS[family], param
    return None


_ALL_PARAMS = frozenset(p for params in R.EVENT_PARAMS for p in params)
