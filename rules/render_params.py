"""How libsinsp prints each parameter of each event type: its type, print format and name table.

libs ``userspace/libsinsp/event.cpp`` ``get_param_as_str`` gives every parameter a *value* text
and, for some types, a *resolved* text (a flag's names, an errno's name, an fd's path). A
`Renderer` returns that pair, with ``""`` for "no resolved text". The choice per (event type,
parameter) follows libs ``driver/event_table.c`` (the current exit event of each syscall) and the
driver's fillers; the numeric formats follow event.cpp's ``SET_NUMERIC_FORMAT`` (PF_DEC prints
signed, PF_HEX ``%X``, PF_OCT ``%#o``).

Some parameters need state beyond the raw value (the fd table, the user database, the cwd);
`Param.context` names it and `rules.render` supplies it when the caller has it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final

from rules import render_flags as rf
from rules.libs_event_table import GENERIC_SYSCALLS
from rules.record import EVENT_PARAMS, EVENT_TYPES

Renderer = Callable[[Any], tuple[str, str]]

_U32: Final = 0xFFFFFFFF
_U64: Final = (1 << 64) - 1


def _signed(raw: int, bits: int) -> int:
    raw &= (1 << bits) - 1
    return raw - (1 << bits) if raw >> (bits - 1) else raw


def dec64(raw: int) -> tuple[str, str]:  # PT_INT64, PT_UINT64, PT_PID: "%" PRId64
    return str(raw if 0 <= raw < 1 << 63 else _signed(raw, 64)), ""


def dec32(raw: int) -> tuple[str, str]:  # PT_UINT32/PT_INT32 with PF_DEC: "%" PRId32
    return str(raw if 0 <= raw < 1 << 31 else _signed(raw, 32)), ""


def dec8(raw: int) -> tuple[str, str]:  # PT_UINT8 (promoted to int by printf)
    return str(raw & 0xFF), ""


def hex32(raw: int) -> tuple[str, str]:  # PF_HEX on 32 bits
    return format(raw & _U32, "X"), ""


def hex64(raw: int) -> tuple[str, str]:  # PF_HEX on 64 bits
    return format(raw & _U64, "X"), ""


def oct32(raw: int) -> tuple[str, str]:  # PF_OCT: "%#o", which prints 0 as "0"
    raw &= _U32
    return ("0" + format(raw, "o")) if raw else "0", ""


def mode(raw: int) -> tuple[str, str]:  # open/creat mode: open_modes_to_scap keeps permission bits
    return oct32(raw & rf.LINUX_MODE_PERMS)


def accept4_flags(raw: int) -> tuple[str, str]:
    return hex32(rf.socket_flags_to_ppm(raw))


def text(raw: Any) -> tuple[str, str]:  # PT_CHARBUF, PT_FSPATH, PT_FSRELPATH, PT_SOCKTUPLE
    return raw if isinstance(raw, str) else str(raw), ""


def bytebuf(raw: Any) -> tuple[str, str]:
    """PT_BYTEBUF in the default format: unprintable bytes become dots; argv is NUL-terminated."""
    if isinstance(raw, list | tuple):
        raw = "".join(f"{a}\0" for a in raw)
    if isinstance(raw, bytes | bytearray):
        raw = raw.decode("latin-1")
    if not raw:
        return "NULL", ""  # libs prints an empty buffer as NULL
    return "".join(c if " " <= c <= "~" else "." for c in raw), ""


def errno(raw: int) -> tuple[str, str]:  # PT_ERRNO: the errno name resolves negative values
    return str(raw), rf.ERRNO_NAMES.get(-raw, "") if raw < 0 else ""


def signal(raw: int) -> tuple[str, str]:  # PT_SIGTYPE
    raw &= 0xFF
    return str(raw), rf.SIGNAL_NAMES.get(raw, "")


def fd(raw: int) -> tuple[str, str]:
    """PT_FD without the fd table: AT_FDCWD and errnos resolve, other numbers stay numbers."""
    if raw >= 0:
        return str(raw), ""
    if raw == rf.LINUX_AT_FDCWD:
        return str(raw), "AT_FDCWD"
    return str(raw), rf.ERRNO_NAMES.get(-raw, "")


_PPM_SC_NAMES: Final = {code: name for name, (code, _nr) in GENERIC_SYSCALLS.items()}


def syscall_id(raw: int) -> tuple[str, str]:
    """PT_SYSCALLID (the generic event's ``ID``): the PPM_SC code, resolved to the syscall's name."""
    return str(raw & 0xFFFF), _PPM_SC_NAMES.get(raw & 0xFFFF, "")


def uid(raw: int) -> tuple[str, str]:
    """PT_UID/PT_GID without the user database: libs prints "%d", and -1 resolves to <NONE>."""
    raw &= _U32
    return ("-1", "<NONE>") if raw == _U32 else (str(_signed(raw, 32)), "")


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
    # PT_MODE walks until an entry equals the whole value, which it then appends
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


def table(flag_table: rf.FlagTable, width: int = _U32, kind: str = "flags") -> Renderer:
    """The renderer of a flag parameter: Linux value -> PPM value -> (PPM number, names).
    Texts are cached per raw value: a rule reads the same few flag combinations all day."""
    names_of = {"flags": _flags_names, "enum": _enum_names, "mode": _mode_names}[kind]
    entries = flag_table.entries
    to_ppm = flag_table.to_ppm

    @lru_cache(maxsize=4096)
    def render(raw: int) -> tuple[str, str]:
        ppm = to_ppm(raw) & width
        return (oct32(ppm)[0] if kind == "mode" else str(ppm)), names_of(entries, ppm)

    return render


ptrace_request: Final = table(rf.PTRACE_REQUESTS, 0xFFFF, "enum")
_SIGNAL_DATA_REQUESTS: Final = frozenset(
    {"PTRACE_CONT", "PTRACE_SINGLESTEP", "PTRACE_DETACH", "PTRACE_SYSCALL"}
)


def ptrace_data(raw: int, request: int) -> tuple[str, str]:
    """ptrace "data" (PT_DYN): a signal for the requests ppm_fillers.c parse_ptrace_data lists."""
    return signal(raw) if ptrace_request(request)[1] in _SIGNAL_DATA_REQUESTS else hex64(raw)


# --- which renderer for which (event, parameter) -------------------------------------------------
NONE: Final = 0
FD: Final = 1  # PT_FD: libs prints <typechar>name when the fd is in the thread's table
USER: Final = 2  # PT_UID: the user name
GROUP: Final = 3  # PT_GID: the group name
PATH: Final = 4  # PT_FSPATH / PT_FSRELPATH: a relative path joined onto the cwd or dirfd's path
OPEN_MODE: Final = 5  # the driver zeroes an open's mode unless its flags can create a file


@dataclass(frozen=True, slots=True)
class Param:
    render: Renderer  # the value text and resolved text from the raw value alone
    context: int = NONE  # what else libs consults, when `rules.render` is given it
    dirfd: str | None = None  # PT_FSRELPATH: the parameter holding the directory fd


_P_TEXT: Final = Param(text)
_P_PATH: Final = Param(text, PATH)
_P_FD: Final = Param(fd, FD)
_P_UID: Final = Param(uid, USER)
_P_GID: Final = Param(uid, GROUP)


def _rel(dirfd: str) -> Param:
    return Param(text, PATH, dirfd)


_COMMON: Final[dict[str, Param]] = {
    "res": Param(errno), "fd": _P_FD, "dirfd": _P_FD, "olddirfd": _P_FD, "newdirfd": _P_FD,
    "oldfd": _P_FD, "newfd": _P_FD, "tuple": _P_TEXT, "exe": _P_TEXT, "args": Param(bytebuf),
    "tid": Param(dec64), "pid": Param(dec64), "ptid": Param(dec64), "cwd": _P_TEXT,
    "dev": Param(hex32), "ino": Param(dec64), "size": Param(dec32), "ID": Param(syscall_id),
    "nativeID": Param(dec32),
    "cap_inheritable": Param(hex64), "cap_permitted": Param(hex64), "cap_effective": Param(hex64),
}  # fmt: skip
_EXECVE: Final = {
    "tty": Param(dec32), "loginuid": _P_UID, "flags": Param(table(rf.EXECVE_FLAGS)), "uid": _P_UID,
    "gid": _P_GID, "trusted_exepath": _P_PATH,
}  # fmt: skip
_CLONE: Final = {
    "res": Param(dec64), "flags": Param(table(rf.CLONE_FLAGS)), "uid": Param(dec32), "gid": Param(dec32),
}  # fmt: skip
_OPEN_FLAGS: Final = Param(table(rf.OPEN_FLAGS))
_OPEN_MODE: Final = Param(mode, OPEN_MODE)
_MODE: Final = Param(table(rf.CHMOD_MODE, kind="mode"))
_NS_FLAGS: Final = Param(table(rf.CLONE_FLAGS))
_ACCEPT: Final = {"queuepct": Param(dec8), "queuelen": Param(dec32), "queuemax": Param(dec32)}
_RENAMES: Final = {"oldpath": _rel("olddirfd"), "newpath": _rel("newdirfd")}

PER_EVENT: Final[dict[str, dict[str, Param]]] = {
    "execve": _EXECVE,
    "execveat": _EXECVE,
    "open": {"name": _P_PATH, "flags": _OPEN_FLAGS, "mode": _OPEN_MODE},
    "openat": {"name": _rel("dirfd"), "flags": _OPEN_FLAGS, "mode": _OPEN_MODE},
    "openat2": {
        "name": _rel("dirfd"), "flags": _OPEN_FLAGS, "mode": _OPEN_MODE,
        "resolve": Param(table(rf.OPENAT2_RESOLVE)),
    },  # fmt: skip
    "open_by_handle_at": {"mountfd": _P_FD, "flags": _OPEN_FLAGS, "path": _P_PATH},
    "creat": {"name": _P_PATH, "mode": Param(mode), "creat_flags": Param(table(rf.CREAT_FLAGS, 0xFFFF))},
    "accept": _ACCEPT,
    "accept4": {**_ACCEPT, "flags": Param(accept4_flags)},
    "listen": {"backlog": Param(dec32)},
    "socket": {
        "domain": Param(table(rf.SOCKET_FAMILIES, kind="enum")), "type": Param(dec32), "proto": Param(dec32),
    },  # fmt: skip
    "setns": {"nstype": _NS_FLAGS},
    "unshare": {"flags": _NS_FLAGS},
    "clone": _CLONE,
    "clone3": _CLONE,
    "fork": _CLONE,
    "vfork": _CLONE,
    "ptrace": {"addr": Param(hex64), "data": Param(hex64), "request": Param(ptrace_request)},
    "mount": {"dev": _P_TEXT, "dir": _P_PATH, "type": _P_TEXT, "flags": Param(table(rf.MOUNT_FLAGS))},
    "umount2": {"name": _P_PATH, "flags": Param(table(rf.UMOUNT_FLAGS))},
    "chmod": {"filename": _P_PATH, "mode": _MODE},
    "fchmod": {"mode": _MODE},
    "fchmodat": {"filename": _rel("dirfd"), "mode": _MODE},
    "unlink": {"path": _P_PATH},
    "unlinkat": {"name": _rel("dirfd"), "flags": Param(table(rf.UNLINKAT_FLAGS))},
    "rmdir": {"path": _P_PATH},
    "rename": {"oldpath": _P_PATH, "newpath": _P_PATH},
    "renameat": _RENAMES,
    "renameat2": {**_RENAMES, "flags": Param(table(rf.RENAMEAT2_FLAGS))},
    "symlink": {"target": _P_TEXT, "linkpath": _P_PATH},
    "symlinkat": {"target": _P_TEXT, "linkdirfd": _P_FD, "linkpath": _rel("linkdirfd")},
    "link": {"oldpath": _P_PATH, "newpath": _P_PATH},
    "linkat": {
        "olddir": _P_FD, "oldpath": _rel("olddir"), "newdir": _P_FD, "newpath": _rel("newdir"),
        "flags": Param(table(rf.LINKAT_FLAGS)),
    },  # fmt: skip
    "mkdir": {"path": _P_PATH, "mode": Param(hex32)},
    "mkdirat": {"path": _rel("dirfd"), "mode": Param(hex32)},
    "setuid": {"uid": _P_UID},
    "setgid": {"gid": _P_GID},
    "setresuid": {"ruid": _P_UID, "euid": _P_UID, "suid": _P_UID},
    "setresgid": {"rgid": _P_GID, "egid": _P_GID, "sgid": _P_GID},
    "setreuid": {"ruid": _P_UID, "euid": _P_UID},
    "setregid": {"rgid": _P_UID, "egid": _P_UID},  # libs types these as PT_UID
    "bpf": {"cmd": Param(table(rf.BPF_COMMANDS, kind="enum"))},
    "memfd_create": {"name": _P_TEXT, "flags": Param(table(rf.MEMFD_CREATE_FLAGS))},
    "dup": {"res": _P_FD},
    "dup2": {"res": _P_FD},
    "dup3": {"res": _P_FD, "flags": Param(table(rf.DUP3_FLAGS))},
    "init_module": {"length": Param(dec64), "uargs": _P_TEXT},
    "finit_module": {"uargs": _P_TEXT, "flags": Param(table(rf.FINIT_MODULE_FLAGS))},
    "userfaultfd": {"flags": Param(table(rf.RAW_FILE_FLAGS))},
    "chdir": {"path": _P_TEXT},  # PT_CHARBUF: libs does not join it onto the cwd
    "kill": {"sig": Param(signal)},
    "prctl": {
        "option": Param(table(rf.PRCTL_OPTIONS, kind="enum")), "arg2_str": _P_TEXT, "arg2_int": Param(dec64),
    },  # fmt: skip
    "procexit": {"status": Param(errno), "ret": Param(errno), "sig": Param(signal), "core": Param(dec8)},
}


_EXECVE_PARAMS: Final = (
    "res", "exe", "args", "tid", "pid", "ptid", "cwd", "fdlimit", "pgft_maj", "pgft_min", "vm_size",
    "vm_rss", "vm_swap", "comm", "cgroups", "env", "tty", "vpgid", "loginuid", "flags",
    "cap_inheritable", "cap_permitted", "cap_effective", "exe_ino", "exe_ino_ctime", "exe_ino_mtime",
    "uid", "trusted_exepath", "pgid", "gid",
)  # fmt: skip
_CLONE_PARAMS: Final = (
    "res", "exe", "args", "tid", "pid", "ptid", "cwd", "fdlimit", "pgft_maj", "pgft_min", "vm_size",
    "vm_rss", "vm_swap", "comm", "cgroups", "flags", "uid", "gid", "vtid", "vpid", "pidns_init_start_ts",
)  # fmt: skip
# libs' parameter lists where they differ from rules.record's (which carries a subset): evt.arg[N]
# and evt.args follow libs' positions and order. Every other event type has libs' list exactly.
LIBS_PARAMS: Final[dict[str, tuple[str, ...]]] = {
    "execve": (*_EXECVE_PARAMS, "filename"),
    "execveat": _EXECVE_PARAMS,
    "connect": ("res", "tuple", "fd", "addr"),
    "socket": ("fd", "domain", "type", "proto", "flags"),
    "clone": _CLONE_PARAMS,
    "clone3": _CLONE_PARAMS,
    "fork": _CLONE_PARAMS,
    "vfork": _CLONE_PARAMS,
    "init_module": ("res", "img", "length", "uargs"),
    "sendto": ("res", "data", "fd", "size", "tuple"),
    "sendmsg": ("res", "data", "fd", "size", "tuple"),
    "recvfrom": ("res", "data", "tuple", "fd", "size"),
    "recvmsg": ("res", "size", "data", "tuple", "msgcontrol", "fd"),
    "procexit": ("status", "ret", "sig", "core", "reaper_tid"),
}


def libs_params(event: str) -> tuple[str, ...]:
    """The event's parameter names in libs' order (rules.record's names when libs has the same)."""
    return LIBS_PARAMS.get(event) or EVENT_PARAMS[EVENT_TYPES.index(event)]


def param(event: str, name: str) -> Param | None:
    """How libs prints parameter ``name`` of ``event``; None when this module does not know it."""
    return PER_EVENT.get(event, {}).get(name) or _COMMON.get(name)


# per event type id: libs' parameter names, and the positions of ours in libs' order
LIBS_NAMES: Final = tuple(libs_params(name) for name in EVENT_TYPES)
LIBS_ORDER: Final = tuple(
    tuple(params.index(n) for n in LIBS_NAMES[t] if n in params) for t, params in enumerate(EVENT_PARAMS)
)
# per event type id, per parameter position (unknown parameters print as text)
SPECS: Final[tuple[tuple[Param, ...], ...]] = tuple(
    tuple(param(EVENT_TYPES[t], p) or _P_TEXT for p in params) for t, params in enumerate(EVENT_PARAMS)
)
