"""Falco's text for raw syscall values: ``evt.arg.*``, ``evt.args``, ``evt.res``, ``thread.cap_*``.

Falco rules compare rendered text (``evt.arg.flags contains O_CREAT``, ``evt.res = SUCCESS``), and
our wire carries raw Linux values, so this module reproduces libsinsp's printing
(falcosecurity/libs ``userspace/libsinsp/event.cpp`` ``get_param_as_str``): every parameter has a
*value* text and, for some types, a *resolved* text; ``evt.arg.X`` is the resolved text when there
is one, and ``evt.args`` prints ``name=value(resolved)``. Which parameter of which event uses which
type, print format and name table comes from libs ``driver/event_table.c``; the tables and Linux
constants are in `rules.render_flags`.

Limits, each where libs needs state we do not have here:
* ``PT_PID`` parameters print the number (libs resolves the thread's comm when it knows the thread).
* ``PT_UID``/``PT_GID`` print the number unless the caller passes ``user_names``/``group_names``.
* ``PT_FD`` parameters print the number unless the caller passes the event's fd record and it
  describes that fd; paths are printed as sent (libs joins relative paths onto the cwd).
* The open-family ``mode`` is printed as sent: the driver zeroes it unless the flags contain
  ``O_CREAT`` or ``O_TMPFILE``; collectors do the same with `open_mode`.

Functions here run per event when a rule reads ``evt.arg.*``: rendering goes through one
precomputed function per (event type, parameter), and flag texts are cached per raw value.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from typing import Any, Final

from rules import render_flags as rf
from rules.record import EVENT_PARAMS, EVENT_TYPES, F_L4PROTO, F_NAME, F_NUM, F_TYPECHAR, Fd

# A parameter renderer returns libs' (value text, resolved text); resolved is "" when libs has none.
Renderer = Callable[[Any], tuple[str, str]]

_U32: Final = 0xFFFFFFFF
_U64: Final = (1 << 64) - 1


# --- scalar formats (SET_NUMERIC_FORMAT in event.cpp) ---------------------------------------
def _dec(raw: Any) -> tuple[str, str]:
    return str(raw), ""


def _hex32(raw: int) -> tuple[str, str]:  # PF_HEX on 32 bits: "%X"
    return format(raw & _U32, "X"), ""


def _hex64(raw: int) -> tuple[str, str]:  # PF_HEX on 64 bits: "%" PRIX64
    return format(raw & _U64, "X"), ""


def _oct32(raw: int) -> tuple[str, str]:  # PF_OCT: "%#o", which prints 0 as "0"
    raw &= _U32
    return ("0" + format(raw, "o")) if raw else "0", ""


def _u32(raw: int) -> tuple[str, str]:
    return str(raw & _U32), ""


def _u8(raw: int) -> tuple[str, str]:
    return str(raw & 0xFF), ""


def _text(raw: Any) -> tuple[str, str]:  # PT_CHARBUF, PT_FSPATH, PT_FSRELPATH, PT_SOCKTUPLE
    return raw if isinstance(raw, str) else str(raw), ""


def _bytebuf(raw: Any) -> tuple[str, str]:
    """PT_BYTEBUF in the default format: unprintable bytes become dots; argv is NUL-terminated."""
    if isinstance(raw, list | tuple):
        raw = "".join(f"{a}\0" for a in raw)
    if isinstance(raw, bytes | bytearray):
        raw = raw.decode("latin-1")
    if not raw:
        return "NULL", ""  # libs prints an empty buffer as NULL
    return "".join(c if " " <= c <= "~" else "." for c in raw), ""


def errno_name(rawres: int) -> str:
    """``evt.res``: ``SUCCESS`` for a non-negative return, else the errno name (or the number)."""
    if rawres >= 0:
        return "SUCCESS"
    return rf.ERRNO_NAMES.get(-rawres) or str(rawres)


def _errno(raw: int) -> tuple[str, str]:
    return str(raw), rf.ERRNO_NAMES.get(-raw, "") if raw < 0 else ""


def _signal(raw: int) -> tuple[str, str]:
    raw &= 0xFF
    return str(raw), rf.SIGNAL_NAMES.get(raw, "")


def _fd(raw: int) -> tuple[str, str]:
    """PT_FD without the fd table: AT_FDCWD and errnos resolve, other numbers stay numbers."""
    if raw >= 0:
        return str(raw), ""
    if raw == rf.LINUX_AT_FDCWD:
        return str(raw), "AT_FDCWD"
    return str(raw), rf.ERRNO_NAMES.get(-raw, "")


_L4_CHAR: Final = {"tcp": "t", "udp": "u", "icmp": "i", "raw": "r"}


def fd_text(num: int, fd: Fd) -> str:
    """libs ``render_fd`` for a known fd: ``<f>/etc/passwd``, ``<4t>10.0.0.1:4444->...``."""
    tc = fd[F_TYPECHAR]
    proto = _L4_CHAR.get(fd[F_L4PROTO] or "", "") if tc in ("4", "6") else ""
    return f"<{tc}{proto}>{fd[F_NAME]}"


# --- flag tables (PT_FLAGS*, PT_ENUMFLAGS*, PT_MODE) ------------------------------------------
def _flags_names(entries: tuple[tuple[str, int], ...], val: int) -> str:
    # Table order; a matched name's bits are removed so O_RDWR hides O_WRONLY and O_RDONLY; stop
    # when a name equals the whole value. Leftover bits without a name are not printed.
    initial = val
    names = []
    for name, v in entries:
        if (v == 0 and initial == 0) or (v != 0 and val & v == v and val != 0):
            names.append(name)
            val &= ~v
            if v == initial:
                break
    return "|".join(names)


def _enum_names(entries: tuple[tuple[str, int], ...], val: int) -> str:
    return "|".join(name for name, v in entries if v == val)


def _mode_names(entries: tuple[tuple[str, int], ...], val: int) -> str:
    initial = val
    names = []
    i = 0
    while i < len(entries) and entries[i][1] != initial:
        v = entries[i][1]
        if (v == 0 and initial == 0) or (v != 0 and val & v == v and val != 0):
            names.append(entries[i][0])
            val &= ~v
        i += 1
    if i < len(entries):
        names.append(entries[i][0])
    return "|".join(names)


def _table_renderer(table: rf.FlagTable, width: int, kind: str = "flags") -> Renderer:
    names_of = {"flags": _flags_names, "enum": _enum_names, "mode": _mode_names}[kind]
    entries = table.entries
    to_ppm = table.to_ppm

    @lru_cache(maxsize=4096)
    def render(raw: int) -> tuple[str, str]:
        ppm = to_ppm(raw) & width
        return (_oct32(ppm)[0] if kind == "mode" else str(ppm)), names_of(entries, ppm)

    return render


_FLAGS16: Final = 0xFFFF
_open_flags = _table_renderer(rf.OPEN_FLAGS, _U32)
_exe_flags = _table_renderer(rf.EXECVE_FLAGS, _U32)
_clone_flags = _table_renderer(rf.CLONE_FLAGS, _U32)
_domain = _table_renderer(rf.SOCKET_FAMILIES, _U32, "enum")
_ptrace_request = _table_renderer(rf.PTRACE_REQUESTS, _FLAGS16, "enum")
_chmod_mode = _table_renderer(rf.CHMOD_MODE, _U32, "mode")


_PTRACE: Final = EVENT_TYPES.index("ptrace")
_PTRACE_REQUEST: Final = EVENT_PARAMS[_PTRACE].index("request")


def _ptrace_data(raw: int, request_text: str) -> tuple[str, str]:
    # ppm_fillers.c parse_ptrace_data: these requests carry a signal in "data"
    if request_text in ("PTRACE_CONT", "PTRACE_SINGLESTEP", "PTRACE_DETACH", "PTRACE_SYSCALL"):
        return _signal(raw)
    return _hex64(raw)


# --- which renderer for which (event, parameter): libs driver/event_table.c, latest exit events ---
_UID = "uid"
_GID = "gid"
_COMMON: Final[dict[str, Renderer | str]] = {
    "res": _errno, "fd": _fd, "dirfd": _fd, "name": _text, "path": _text, "tuple": _text,
    "exe": _text, "args": _bytebuf, "tid": _dec, "pid": _dec, "ptid": _dec, "cwd": _text,
    "dev": _hex32, "ino": _dec, "size": _u32, "filename": _text, "oldpath": _text,
    "newpath": _text, "olddirfd": _fd, "newdirfd": _fd, "oldfd": _fd, "newfd": _fd,
    "cap_inheritable": _hex64, "cap_permitted": _hex64, "cap_effective": _hex64,
}  # fmt: skip
_EXECVE: Final[dict[str, Renderer | str]] = {
    "tty": _u32, "loginuid": _UID, "flags": _exe_flags, "uid": _UID, "gid": _GID,
    "trusted_exepath": _text,
}  # fmt: skip
_CLONE: Final[dict[str, Renderer | str]] = {"res": _dec, "flags": _clone_flags, "uid": _u32, "gid": _u32}
_OPEN: Final[dict[str, Renderer | str]] = {"flags": _open_flags, "mode": _oct32}
_DUPS: Final[dict[str, Renderer | str]] = {"res": _fd}

_PER_EVENT: Final[dict[str, dict[str, Renderer | str]]] = {
    "execve": _EXECVE,
    "execveat": _EXECVE,
    "open": _OPEN,
    "openat": _OPEN,
    "openat2": {**_OPEN, "resolve": _table_renderer(rf.OPENAT2_RESOLVE, _U32)},
    "creat": {"mode": _oct32, "creat_flags": _table_renderer(rf.CREAT_FLAGS, _FLAGS16)},
    "accept": {"queuepct": _u8, "queuelen": _u32, "queuemax": _u32},
    "accept4": {"queuepct": _u8, "queuelen": _u32, "queuemax": _u32, "flags": _hex32},
    "listen": {"backlog": _dec},
    "socket": {"domain": _domain, "type": _u32, "proto": _u32},
    "setns": {"nstype": _clone_flags},
    "unshare": {"flags": _clone_flags},
    "clone": _CLONE,
    "clone3": _CLONE,
    "fork": _CLONE,
    "vfork": _CLONE,
    "ptrace": {"addr": _hex64, "data": _hex64, "request": _ptrace_request, "pid": _dec},
    "mount": {"dev": _text, "dir": _text, "type": _text, "flags": _table_renderer(rf.MOUNT_FLAGS, _U32)},
    "umount2": {"flags": _table_renderer(rf.UMOUNT_FLAGS, _U32)},
    "chmod": {"mode": _chmod_mode},
    "fchmod": {"mode": _chmod_mode},
    "fchmodat": {"mode": _chmod_mode},
    "unlinkat": {"flags": _table_renderer(rf.UNLINKAT_FLAGS, _U32)},
    "renameat2": {"flags": _table_renderer(rf.RENAMEAT2_FLAGS, _U32)},
    "symlink": {"target": _text, "linkpath": _text},
    "symlinkat": {"target": _text, "linkdirfd": _fd, "linkpath": _text},
    "linkat": {"olddir": _fd, "newdir": _fd, "flags": _table_renderer(rf.LINKAT_FLAGS, _U32)},
    "mkdir": {"mode": _hex32},
    "mkdirat": {"mode": _hex32},
    "setuid": {"uid": _UID},
    "setgid": {"gid": _GID},
    "setresuid": {"ruid": _UID, "euid": _UID, "suid": _UID},
    "setresgid": {"rgid": _GID, "egid": _GID, "sgid": _GID},
    "setreuid": {"ruid": _UID, "euid": _UID},
    "setregid": {"rgid": _UID, "egid": _UID},  # libs types these as PT_UID
    "bpf": {"cmd": _table_renderer(rf.BPF_COMMANDS, _U32, "enum")},
    "memfd_create": {"flags": _table_renderer(rf.MEMFD_CREATE_FLAGS, _U32)},
    "dup": _DUPS,
    "dup2": _DUPS,
    "dup3": {**_DUPS, "flags": _table_renderer(rf.DUP3_FLAGS, _U32)},
    "init_module": {"length": _dec, "uargs": _text},
    "finit_module": {"uargs": _text, "flags": _table_renderer(rf.FINIT_MODULE_FLAGS, _U32)},
    "userfaultfd": {"flags": _table_renderer(rf.RAW_FILE_FLAGS, _U32)},
    "chdir": {},
    "fchdir": {},
    "kill": {"sig": _signal},
    "prctl": {
        "option": _table_renderer(rf.PRCTL_OPTIONS, _U32, "enum"),
        "arg2_str": _text,
        "arg2_int": _dec,
    },
    "capset": {},
    "procexit": {"status": _errno, "ret": _errno, "sig": _signal, "core": _u8},
}


def _uid_value(raw: int) -> tuple[str, str]:
    raw &= _U32
    return ("-1", "<NONE>") if raw == _U32 else (str(raw), "")


def _param_spec(event: str, param: str) -> Renderer | str:
    spec = _PER_EVENT.get(event, {}).get(param) or _COMMON.get(param)
    return spec if spec is not None else _text


# per event type id, per parameter position: the renderer, or "uid"/"gid" for PT_UID/PT_GID
_SPECS: Final[tuple[tuple[Renderer | str, ...], ...]] = tuple(
    tuple(_param_spec(EVENT_TYPES[t], p) for p in params) for t, params in enumerate(EVENT_PARAMS)
)
# the plain renderer per position (uid/gid print their number)
_RENDERERS: Final[tuple[tuple[Renderer, ...], ...]] = tuple(
    tuple(_uid_value if isinstance(s, str) else s for s in specs) for specs in _SPECS
)
# procexit is a scheduler tracepoint, not a syscall exit: libs gives it no return value
_NO_RETURN_VALUE: Final = frozenset(i for i, name in enumerate(EVENT_TYPES) if name == "procexit")
_NULL_WHEN_EMPTY: Final = frozenset({"args", "tuple"})  # PT_BYTEBUF/PT_SOCKTUPLE print NULL, not <NA>


def _pair(
    type_id: int,
    index: int,
    raw: Any,
    fd: Fd | None,
    user_names: Mapping[int, str] | None,
    group_names: Mapping[int, str] | None,
) -> tuple[str, str]:
    spec = _SPECS[type_id][index]
    if isinstance(spec, str):
        text, resolved = _uid_value(raw)
        names = user_names if spec == _UID else group_names
        if names is not None and not resolved:
            resolved = names.get(raw & _U32) or "<NA>"
        return text, resolved
    if spec is _fd and fd is not None and raw >= 0 and fd[F_NUM] == raw:
        return str(raw), fd_text(raw, fd)
    return spec(raw)


def render_arg(
    type_id: int,
    param_index: int,
    raw: object,
    *,
    fd: Fd | None = None,
    user_names: Mapping[int, str] | None = None,
    group_names: Mapping[int, str] | None = None,
) -> str | None:
    """The text of ``evt.arg.<name>``/``evt.arg[N]``: parameter ``param_index`` of event ``type_id``.

    ``fd`` (the event's fd record) lets an fd parameter with that number print as libs does when
    it knows the fd (``<f>/etc/shadow``); ``user_names``/``group_names`` map ids to the names
    libs prints for uid/gid parameters (``<NA>`` for an id without a name).
    """
    if raw is None:
        return None
    if fd is None and user_names is None and group_names is None:
        text, resolved = _RENDERERS[type_id][param_index](raw)
    else:
        text, resolved = _pair(type_id, param_index, raw, fd, user_names, group_names)
    return resolved or text


def render_args(
    type_id: int,
    args: Sequence[object],
    *,
    fd: Fd | None = None,
    user_names: Mapping[int, str] | None = None,
    group_names: Mapping[int, str] | None = None,
) -> str:
    """``evt.args``: ``name=value`` or ``name=value(resolved)`` for each parameter, space-separated."""
    params = EVENT_PARAMS[type_id]
    parts = []
    for i, name in enumerate(params):
        raw = args[i] if i < len(args) else None
        if raw is None:
            parts.append(f"{name}={'NULL' if name in _NULL_WHEN_EMPTY else '<NA>'}")
            continue
        request = args[_PTRACE_REQUEST] if type_id == _PTRACE and name == "data" else None
        if isinstance(raw, int) and isinstance(request, int):
            text, resolved = _ptrace_data(raw, _ptrace_request(request)[1])
        else:
            text, resolved = _pair(type_id, i, raw, fd, user_names, group_names)
        parts.append(f"{name}={text}({resolved})" if resolved else f"{name}={text}")
    return " ".join(parts)


def evt_res(type_id: int, rawres: int) -> str | None:
    """``evt.res`` for an event type: `errno_name`, except None for events without a return value
    and the plain number for a failed clone/fork (libs reads their PT_PID result as a thread id)."""
    if type_id in _NO_RETURN_VALUE:
        return None
    if rawres >= 0:
        return "SUCCESS"
    return str(rawres) if _SPECS[type_id][0] is _dec else errno_name(rawres)


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
