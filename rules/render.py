"""Falco's text for raw syscall values: ``evt.arg.*``, ``evt.args``, ``evt.res``, ``thread.cap_*``.

Falco rules compare rendered text (``evt.arg.flags contains O_CREAT``, ``evt.res = SUCCESS``), and
our wire carries raw Linux values, so this module reproduces libsinsp's printing (falcosecurity/libs
``userspace/libsinsp/event.cpp`` ``get_param_as_str`` and ``sinsp_filtercheck_event.cpp``): a
parameter has a *value* text and sometimes a *resolved* text; ``evt.arg.X`` is the resolved text
when there is one, ``evt.args`` prints ``name=value(resolved)``. What each parameter is comes from
`rules.render_params`, the name tables and Linux constants from `rules.render_flags`.

Some resolutions need more than the raw value. Given the event record (``event=``), fd parameters
naming the event's own fd print ``<f>/etc/shadow``, relative paths are joined onto the process's
cwd (or the event's directory fd), and ptrace's ``data`` follows its request; given
``user_names``/``group_names``, uid/gid parameters print names. Without them the text is what libs
prints when it lacks that state (the number, the path as sent). Remaining differences:
* ``PT_PID`` parameters print the number (libs resolves a known thread's comm);
* a path relative to a directory fd other than the event's own fd stays as sent (libs reads /proc);
* the open-family ``mode`` needs the flags too (the driver zeroes it unless they contain O_CREAT
  or O_TMPFILE): without ``event`` it prints as sent, so collectors send `open_mode` (flags, mode).

Rules read ``evt.arg.*`` per event: `arg_text_fn` hands compiled code the precomputed function of
one (event type, parameter), which passes strings through and caches flag texts per raw value;
`render_arg` is the same behind a dispatch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from typing import Any, Final

from rules import render_flags as rf
from rules import render_params as rp
from rules.record import (
    EV_ARGS,
    EV_FD,
    EV_PROC,
    EVENT_PARAM_INDEX,
    EVENT_PARAMS,
    EVENT_TYPES,
    F_L4PROTO,
    F_NAME,
    F_NUM,
    F_TYPECHAR,
    GENERIC_TYPE_IDS,
    P_CWD,
    Event,
    Fd,
)
from rules.render_paths import resolve_path


def _final(render: rp.Renderer) -> Callable[[Any], str | None]:
    """The evt.arg text from the raw value alone; flag texts are cached per raw value."""

    def text(raw: Any) -> str | None:
        if raw is None:
            return None
        value, resolved = render(raw)
        return resolved or value

    if hasattr(render, "cache_info"):  # a flag table's renderer: cache the final text as well
        return lru_cache(maxsize=4096)(text)
    if render is rp.text:  # strings, the most common parameters, pass through
        return _as_text
    return text


def _as_text(raw: Any) -> str | None:
    return raw if raw.__class__ is str or raw is None else str(raw)


# context-free evt.arg text per event type id and parameter position: the hot path
_TEXT_FNS: Final = tuple(tuple(_final(p.render) for p in specs) for specs in rp.SPECS)
# per event type id, per parameter position: the position of a PT_FSRELPATH's dirfd, else -1
_DIRFD_INDEX: Final = tuple(
    tuple(EVENT_PARAM_INDEX[t][p.dirfd] if p.dirfd else -1 for p in specs) for t, specs in enumerate(rp.SPECS)
)
_FLAGS_INDEX: Final = tuple(index.get("flags", -1) for index in EVENT_PARAM_INDEX)
_PTRACE: Final = EVENT_TYPES.index("ptrace")
_PTRACE_DATA: Final = EVENT_PARAMS[_PTRACE].index("data")
_PTRACE_REQUEST: Final = EVENT_PARAMS[_PTRACE].index("request")
# procexit is a scheduler tracepoint, not a syscall exit, and libs' generic event carries none
# (sinsp_evt::has_return_value): no return value
_NO_RETURN_VALUE: Final = GENERIC_TYPE_IDS | {i for i, name in enumerate(EVENT_TYPES) if name == "procexit"}
_NULL_WHEN_MISSING: Final = frozenset({"args", "tuple"})  # PT_BYTEBUF/PT_SOCKTUPLE print NULL, not <NA>
_L4_CHAR: Final = {"tcp": "t", "udp": "u", "icmp": "i", "raw": "r"}


def fd_text(fd: Fd) -> str:
    """libs ``render_fd`` for a known fd: ``<f>/etc/passwd``, ``<4t>10.0.0.1:4444->10.0.0.2:80``."""
    tc = fd[F_TYPECHAR]
    proto = _L4_CHAR.get(fd[F_L4PROTO] or "", "") if tc in ("4", "6") else ""
    return f"<{tc}{proto}>{fd[F_NAME]}"


def _dir_of(fd: Fd | None, dirfd: Any) -> str | None:
    if fd is None or dirfd != fd[F_NUM] or not fd[F_NAME]:
        return None
    name: str = fd[F_NAME]
    return name if name.endswith("/") else name + "/"


def _with_context(
    type_id: int,
    index: int,
    raw: Any,
    args: Sequence[object] | None,
    event: Event | None,
    user_names: Mapping[int, str] | None,
    group_names: Mapping[int, str] | None,
) -> tuple[str, str]:
    spec = rp.SPECS[type_id][index]
    value, resolved = spec.render(raw)
    if spec.context == rp.USER or spec.context == rp.GROUP:
        names = user_names if spec.context == rp.USER else group_names
        if names is not None and not resolved:
            resolved = names.get(raw & 0xFFFFFFFF) or "<NA>"
        return value, resolved
    if spec.context == rp.OPEN_MODE and args is not None:
        flags = args[_FLAGS_INDEX[type_id]]
        if isinstance(flags, int) and not flags & (rf.LINUX_O_CREAT | rf.LINUX_O_TMPFILE):
            return "0", ""
        return value, resolved
    if type_id == _PTRACE and index == _PTRACE_DATA and args is not None:
        request = args[_PTRACE_REQUEST]
        return rp.ptrace_data(raw, request) if isinstance(request, int) else (value, resolved)
    if event is None:
        return value, resolved
    fd: Fd | None = event[EV_FD]
    if spec.context == rp.FD:
        if fd is not None and raw >= 0 and fd[F_NUM] == raw and fd[F_NAME] is not None:
            resolved = fd_text(fd)
    elif spec.context == rp.PATH and raw and raw[0] != "/" and raw != "<NA>" and args is not None:
        dirfd_index = _DIRFD_INDEX[type_id][index]
        dirfd = args[dirfd_index] if 0 <= dirfd_index < len(args) else rf.LINUX_AT_FDCWD
        if dirfd == rf.LINUX_AT_FDCWD:
            proc = event[EV_PROC]
            cwd = proc[P_CWD] if isinstance(proc, list) else None
            base = None if cwd is None else cwd if cwd.endswith("/") else cwd + "/"
        else:
            base = _dir_of(fd, dirfd)
        if base is not None:
            resolved = resolve_path(base, raw)
    return value, resolved


def render_arg(
    type_id: int,
    param_index: int,
    raw: object,
    *,
    event: Event | None = None,
    user_names: Mapping[int, str] | None = None,
    group_names: Mapping[int, str] | None = None,
) -> str | None:
    """The text of ``evt.arg.<name>``/``evt.arg[N]``: parameter ``param_index`` of event ``type_id``
    (None when the value is missing). ``event`` (the record the value comes from) and the name maps
    add the resolutions described in the module docstring."""
    if event is None and user_names is None and group_names is None:
        return _TEXT_FNS[type_id][param_index](raw)
    if raw is None:
        return None
    args = event[EV_ARGS] if event is not None else None
    value, resolved = _with_context(type_id, param_index, raw, args, event, user_names, group_names)
    return resolved or value


def arg_text_fn(type_id: int, param_index: int) -> Callable[[Any], str | None]:
    """`render_arg` without context, as one function per (event type, parameter), for code that
    knows both when it is compiled: ``fn(raw)`` is ``render_arg(type_id, param_index, raw)``."""
    return _TEXT_FNS[type_id][param_index]


def render_args(
    type_id: int,
    args: Sequence[object],
    *,
    event: Event | None = None,
    user_names: Mapping[int, str] | None = None,
    group_names: Mapping[int, str] | None = None,
) -> str:
    """``evt.args``: ``name=value`` or ``name=value(resolved)`` per parameter, space-separated,
    in libs' parameter order (libs also prints the parameters rules.record does not carry); ""
    for a generic event, whose parameters libs keeps for internal use."""
    if type_id in GENERIC_TYPE_IDS:
        return ""
    parts = []
    names = EVENT_PARAMS[type_id]
    for i in rp.LIBS_ORDER[type_id]:
        name = names[i]
        raw = args[i] if i < len(args) else None
        if raw is None:
            parts.append(f"{name}={'NULL' if name in _NULL_WHEN_MISSING else '<NA>'}")
            continue
        value, resolved = _with_context(type_id, i, raw, args, event, user_names, group_names)
        parts.append(f"{name}={value}({resolved})" if resolved else f"{name}={value}")
    return " ".join(parts)


def libs_arg_index(type_id: int, n: int) -> int | None:
    """``evt.arg[N]`` counts libs' parameters: the position of libs' N-th parameter in the record,
    or None when libs has no such parameter or rules.record does not carry it."""
    names = rp.LIBS_NAMES[type_id]
    return EVENT_PARAM_INDEX[type_id].get(names[n]) if 0 <= n < len(names) else None


def errno_name(rawres: int) -> str:
    """``evt.res``: ``SUCCESS`` for a non-negative return, else the errno name (or the number)."""
    if rawres >= 0:
        return "SUCCESS"
    return rf.ERRNO_NAMES.get(-rawres) or str(rawres)


def evt_res(type_id: int, rawres: int) -> str | None:
    """``evt.res`` for an event type: `errno_name`, except None for events without a return value
    and the plain number for a failed clone/fork (libs reads their PT_PID result as a thread id)."""
    if type_id in _NO_RETURN_VALUE:
        return None
    if rawres >= 0:
        return "SUCCESS"
    return str(rawres) if rp.SPECS[type_id][0].render is rp.dec64 else errno_name(rawres)


@lru_cache(maxsize=1024)
def cap_names(mask: int) -> str:
    """``thread.cap_*``: capability names of the set bits, lowest bit first, space-separated."""
    return " ".join(name for bit, name in enumerate(rf.CAPABILITIES) if mask >> bit & 1)


def fd_type_name(typechar: str) -> str:
    """``fd.type`` for an ``F_TYPECHAR``; ``<NA>`` for unknown types, as libs prints them."""
    return rf.FD_TYPE_NAMES.get(typechar, "<NA>")


# --- evt.is_open_* (libs sinsp_filtercheck_event.cpp, TYPE_ISOPEN_*), on Linux open flags ------
def is_open_read(flags: int) -> bool:
    """Opened for reading: O_RDONLY or O_RDWR (libs counts the invalid access mode 3 as read)."""
    return flags & rf.LINUX_O_ACCMODE != rf.LINUX_O_WRONLY


def is_open_write(flags: int) -> bool:
    """Opened for writing: O_WRONLY or O_RDWR."""
    return flags & rf.LINUX_O_ACCMODE in (rf.LINUX_O_WRONLY, rf.LINUX_O_RDWR)


def is_open_exec(flags: int, mode: int) -> bool:
    """Created with an execute bit: O_CREAT or O_TMPFILE (any of its bits, as the driver tests it)
    and a mode with S_IXUSR, S_IXGRP or S_IXOTH. For ``creat`` pass ``flags=LINUX_O_CREAT``."""
    return bool(flags & (rf.LINUX_O_CREAT | rf.LINUX_O_TMPFILE)) and bool(mode & 0o111)


def is_open_create(flags: int, rawres: int) -> bool:
    """The open created the file: the collector's ``PEREGRINE_O_F_CREATED`` bit, or O_TMPFILE
    (any of its bits, so a directory open counts, as in libs) on success."""
    return bool(flags & rf.PEREGRINE_O_F_CREATED) or (bool(flags & rf.LINUX_O_TMPFILE) and rawres >= 0)


def open_mode(flags: int, mode: int) -> int:
    """The ``mode`` the driver records for open/openat/openat2: 0 unless the open can create."""
    return mode & rf.LINUX_MODE_PERMS if flags & (rf.LINUX_O_CREAT | rf.LINUX_O_TMPFILE) else 0
