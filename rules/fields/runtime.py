"""What generated code calls at run time: the helpers field code names, bound as globals.

Every helper returns None for a missing input, so a missing value stays missing. proc.cmdline and
proc.args take their slots rather than the record, so `rules.gate` can key a memo on (name, args);
an ancestor's (proc.acmdline) goes through `_cmdline`.

Limits, on purpose: the rule engine does no I/O, so ``fd.*ip.name`` read the injected IP -> name
mapping (``_ipn``) instead of DNS, ``evt.buffer`` is always missing (records carry no data
buffers), and ``evt.time`` renders in UTC rather than the host's local time.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import lru_cache

from rules import record as R
from rules import render
from rules import render_flags as rf
from rules.globs import glob_matcher

# Stand-ins for a missing process/fd/container: every slot None, so reads stay inline.
EMPTY_PROCESS: tuple[None, ...] = (None,) * R.PROCESS_LEN
EMPTY_FD: tuple[None, ...] = (None,) * R.FD_LEN
EMPTY_CONTAINER: tuple[None, ...] = (None,) * R.CONTAINER_LEN


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
    """proc.env from the P_ENV slot (a list, or the tuple rules.gate keys its memo with). With a
    NAME, as sinsp_threadinfo::get_env: the first non-empty ``NAME=value``, spaces around it
    trimmed, and "" (a value, so ``exists`` holds) when there is none; no value at all only when
    the environment was not captured."""
    if env is None:
        return None
    if key is None:
        return " ".join(env)
    prefix = key + "="
    for item in env:
        if item.startswith(prefix) and len(item) > len(prefix):
            return str(item[len(prefix) :]).strip(" ")
    return ""


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
    return glob_matcher(pattern)


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


def _arg_text_at(ev: list[object], n: int) -> str | None:
    """``evt.arg[N]`` of any event type: libs' N-th parameter, where the record carries it."""
    type_id: int = ev[R.EV_TYPE]  # type: ignore[assignment]
    args = ev[R.EV_ARGS]
    index = render.libs_arg_index(type_id, n)
    if index is None or index >= len(args) or args[index] is None:  # type: ignore[arg-type,index]
        return None
    return render.render_arg(type_id, index, args[index], event=ev)  # type: ignore[index]


def _arg_raw(ev: list[object], name: str) -> object:
    type_id = ev[R.EV_TYPE]
    index = R.EVENT_PARAM_INDEX[type_id].get(name) if type_id < len(R.EVENT_PARAMS) else None  # type: ignore[operator,call-overload]
    return None if index is None else ev[R.EV_ARGS][index]  # type: ignore[index]


_FD_TYPES: Mapping[str, str] = {ch: render.fd_type_name(ch) for ch in rf.FD_TYPE_NAMES}
_SOCKFAMILY: Mapping[str, str] = {"4": "ip", "6": "ip", "u": "unix"}
OPEN_TYPES = frozenset({"open", "openat", "openat2"})
O_MAY_CREATE = rf.LINUX_O_CREAT | rf.LINUX_O_TMPFILE

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
    if name not in OPEN_TYPES:
        return False
    flags = args[params["flags"]] or 0
    if mode == "read":
        return render.is_open_read(flags)
    if mode == "write":
        return render.is_open_write(flags)
    return render.is_open_exec(flags, args[params["mode"]] or 0)


# --- fd.types: the process's fd table (rules.record EV_FDTYPES) --------------------------------
_FD_EVENT_IDS = frozenset(R.EVENT_TYPE_IDS[name] for name in R.FD_EVENT_TYPES)


@lru_cache(maxsize=4096)
def _fdtypes(table: bytes | None) -> tuple[str, ...] | None:
    """fd.types: each type of the open fds once. libs gathers them from an unordered map, so its
    order is unspecified; here it is the order of each type's lowest fd. Cached because a process
    keeps the same table across many events."""
    if table is None:
        return None
    return tuple(R.FDTYPE_NAMES[code - 1] for code in dict.fromkeys(table) if code)


def _fdtype_at(table: bytes | None, fd: int) -> tuple[str, ...] | None:
    """fd.types[N]: the type of fd N as a one-item list; missing when fd N is not open (or beyond
    the captured prefix of the table)."""
    if table is None or not 0 <= fd < len(table) or not table[fd]:
        return None
    return (R.FDTYPE_NAMES[table[fd] - 1],)


def _fdtypes_of(ev: list[object], fd: int | None) -> tuple[str, ...] | None:
    """fd.types, or with `fd` fd.types[fd], of an event. libs extracts it only on events that
    create, use or destroy an fd (sinsp_filtercheck_fd.cpp extract_fd); an event that ends before
    EV_FDTYPES (`rules.record.LEGACY_EVENT_LEN`) has not captured it."""
    if ev[R.EV_TYPE] not in _FD_EVENT_IDS or len(ev) <= R.EV_FDTYPES:
        return None
    table: bytes | None = ev[R.EV_FDTYPES]  # type: ignore[assignment]
    return _fdtypes(table) if fd is None else _fdtype_at(table, fd)


def _tx_each(fn: Callable[[object], object], values: tuple[object, ...] | None) -> tuple[object, ...] | None:
    """A one-value transformer over a list (libs applies it to every value; one failure fails all)."""
    if values is None:
        return None
    out = tuple(fn(v) for v in values)
    return None if any(v is None for v in out) else out


def _tx_join_list(sep: str, values: tuple[object, ...] | None) -> str | None:
    """join(sep, <list field>): libs' join extracts the list and joins its values."""
    return None if values is None else sep.join(str(v) for v in values)


def text_fn_name(type_id: int, index: int) -> str:
    """The global bound to `render.arg_text_fn(type_id, index)` in generated code (`HELPERS`)."""
    return f"_txt{type_id}_{index}"


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
    "_fdtypes_of": _fdtypes_of,
    "_tx_each": _tx_each,
    "_tx_join_list": _tx_join_list,
    **{
        text_fn_name(t, i): render.arg_text_fn(t, i)
        for t, names in enumerate(R.EVENT_PARAMS)
        for i in range(len(names))
    },
}

