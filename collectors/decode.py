"""Raw probe records -> `rules.record` events, keeping the process table up to date.

Input: parsed records (`Record`: the fields of a `pg_hdr` as `HDR.unpack` gives them, then the
list of the payload's `[u16 n][n bytes]` items), from `parse` here or, in the collector, from the
ring reader's C extension, which builds the same tuples. Output: event lists whose `EV_PROC` is
the in-memory process record (the batcher turns it into an index), with ``EV_FDTYPES`` only when
the probe classified the task's fds (the rules name fd.types): other events end at ``EV_NUM``.
Arguments are raw kernel values, positional per `EVENT_PARAMS[type]`: Linux flag bits, ints (fds
and dirfds signed), path strings as the process passed them, tuples as Falco's text
`cip:cport->sip:sport`. `EV_FD` describes the fd an event concerns (opens, sockets, connect,
accept, dup), with the path made absolute against the process's cwd when it was relative to it.

Records that only feed the process table (fork, and exec/exit/chdir when the rules do not ask for
them: not in `published`, or flagged PG_FLAG_UNWANTED by the probe's interest) update the table and
produce no event. This is a hot path: one dict dispatch, list literals; no
logging per event.
"""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Callable, Iterable
from typing import Any, Final

from collectors.errors import CollectorError
from collectors.exeinfo import exe_info
from collectors.header import (
    H_A0,
    H_EVT,
    H_FLAGS,
    H_ITEMS,
    H_LEN,
    H_RET,
    H_TGID,
    H_TID,
    H_TS,
    HDR,
    HDR_SIZE,
    PG_EVT_FORK,
    PG_FLAG_FDTYPES,
    PG_FLAG_TRUNCATED,
    PG_FLAG_UNWANTED,
)
from collectors.proctable import Header, ProcTable
from rules.libs_event_table import GENERIC_SYSCALLS
from rules.record import (
    EVENT_TYPE_IDS,
    EVENT_TYPES,
    FD_LEN,
    GENERIC_TYPE_IDS,
    P_ARGS,
    P_CWD,
    P_EXE,
    P_EXE_FLAGS,
    P_EXEPATH,
    P_GID,
    P_LOGINUID,
    P_PID,
    P_PPID,
    P_TTY,
    P_UID,
    Event,
    Fd,
    Process,
)

_U16: Final = struct.Struct("<H")
_SOCK: Final = struct.Struct("<6H16s16s")
_OPEN_HOW: Final = struct.Struct("<QQQ")
_CAPS: Final = struct.Struct("<6I")
_AT_FDCWD: Final = -100
_O_DIRECTORY: Final = 0o200000
_S_IFMT, _S_IFDIR = 0o170000, 0o040000
_AF_UNIX, _AF_INET, _AF_INET6 = 1, 2, 10
_L4: Final = {6: "tcp", 17: "udp", 1: "icmp", 58: "icmp", 255: "raw"}
_SOCK_TYPE_L4: Final = {1: "tcp", 2: "udp", 3: "raw"}
_EXEC_IDS: Final = (EVENT_TYPE_IDS["execve"], EVENT_TYPE_IDS["execveat"])
_PROCEXIT: Final = EVENT_TYPE_IDS["procexit"]
_CHDIR: Final = EVENT_TYPE_IDS["chdir"]
_FCHDIR: Final = EVENT_TYPE_IDS["fchdir"]
_OPENAT: Final = EVENT_TYPE_IDS["openat"]

Args = list[object]
Record = tuple[Any, ...]  # HDR fields, then (at H_ITEMS) the payload items
Builder = Callable[[Header, list[bytes], Process], tuple[Args, Fd | None]]
# (h, ProcTable.entries, ProcTable.current, boot_to_epoch, evt.num, abspath) -> the whole event,
# its process found as ProcTable.current finds it: collectors/openevent.c
EventBuilder = Callable[
    [Record, dict[int, list[Any]], Callable[[Record], Process], int, int, Callable[..., str | None]], Event
]


# Also a ValueError, as it was before the package had a root: callers that parse records catch it.
class DecodeError(CollectorError, ValueError):
    """A record shorter than its header says (a probe/decoder mismatch, never user input)."""


def parse(raw: bytes) -> Record:
    """One raw record as the tuple the decoder reads: header fields, then the payload items."""
    if len(raw) < HDR_SIZE:
        raise DecodeError(f"record of {len(raw)} bytes is shorter than the {HDR_SIZE}-byte header")
    h = HDR.unpack_from(raw)
    end = HDR_SIZE + h[H_LEN]
    if end > len(raw):
        raise DecodeError(f"record says {h[H_LEN]} payload bytes, has {len(raw) - HDR_SIZE}")
    return (*h, items(raw, end))


def items(raw: bytes, end: int) -> list[bytes]:
    """The payload items of one record."""
    out = []
    off = HDR_SIZE
    while off + 2 <= end:
        n = _U16.unpack_from(raw, off)[0]
        out.append(raw[off + 2 : off + 2 + n])
        off += 2 + n
    return out


def _str(b: bytes) -> str:
    end = b.find(0)
    return (b if end < 0 else b[:end]).decode("utf-8", "replace")


def _item_str(it: list[bytes], i: int) -> str | None:
    return _str(it[i]) if i < len(it) and it[i] else None


def cwd_path(item: bytes) -> str | None:
    """The directory of a probe working-directory item (probe.h PG_CWD_DEPTH: components leaf
    first, each NUL-terminated, then the root's empty one); None when the walk did not complete."""
    if item != b"\0" and not item.endswith(b"\0\0"):
        return None
    parts = item[:-1].split(b"\0")[:-1]
    return "/" + "/".join(p.decode("utf-8", "replace") for p in reversed(parts))


def strings(block: bytes) -> list[str]:
    """NUL-separated strings (an argv or environment block); a cut block keeps its partial tail."""
    out = [a.decode("utf-8", "replace") for a in block.split(b"\0")]
    if out and out[-1] == "":
        out.pop()
    return out


def _s32(x: int) -> int:
    x &= 0xFFFFFFFF
    return x - 0x100000000 if x & 0x80000000 else x


def _u32(x: int) -> int:
    return x & 0xFFFFFFFF


def abspath(proc: Process, path: str | None, dirfd: int = _AT_FDCWD) -> str | None:
    """An absolute fd.name when the path is absolute or relative to the cwd; else the raw path."""
    if path is None or path.startswith("/"):
        # normpath only when needed: most absolute paths are already canonical
        return os.path.normpath(path) if path and ("/." in path or "//" in path) else path
    cwd = proc[P_CWD]
    if dirfd != _AT_FDCWD or not cwd:
        return path
    return os.path.normpath(os.path.join(cwd, path))


def _file_fd(fd: int, raw: str | None, name: str | None, flags: int) -> Fd:
    """The file an open names. A failed open's fd.num is -1 whatever its errno, as in libs (the
    thread's last event fd is set only by a successful open), so Falco's ``open_file_failed``
    (``fd.num=-1``) holds for ENOENT as for EPERM; evt.rawres and evt.arg.fd keep the errno."""
    f: Fd = [None] * FD_LEN
    f[0] = fd if fd >= 0 else -1
    f[1] = "d" if flags & _O_DIRECTORY else "f"
    f[2] = name if name is not None else ""
    f[3] = raw
    f[9] = f[10] = f[11] = False
    return f


def _ip(family: int, addr: bytes) -> str:
    if family == _AF_INET6:
        return socket.inet_ntop(socket.AF_INET6, addr[:16])
    return socket.inet_ntop(socket.AF_INET, addr[:4])


def parse_sockaddr(b: bytes) -> tuple[int, str, int] | None:
    """(family, address or unix path, port) of a user sockaddr."""
    if len(b) < 2:
        return None
    family = _U16.unpack_from(b, 0)[0]
    if family == _AF_INET and len(b) >= 8:
        return family, socket.inet_ntop(socket.AF_INET, b[4:8]), int.from_bytes(b[2:4], "big")
    if family == _AF_INET6 and len(b) >= 24:
        return family, socket.inet_ntop(socket.AF_INET6, b[8:24]), int.from_bytes(b[2:4], "big")
    if family == _AF_UNIX:
        path = b[2:]
        if path[:1] == b"\0":  # abstract socket, printed with a leading @
            return family, "@" + path[1:].split(b"\0", 1)[0].decode("utf-8", "replace"), 0
        return family, _str(path), 0
    return family, "", 0


def _sock_fd(fd: int, sa: bytes | None, sk: bytes | None, server: bool) -> Fd | None:
    """fd record of a connected/accepted socket from the kernel socket (sk) or the sockaddr."""
    f: Fd = [None] * FD_LEN
    f[0] = fd
    f[9], f[10], f[11] = server, True, False
    if sk and len(sk) == _SOCK.size:
        family, proto, stype, sport, dport, _pad, saddr, daddr = _SOCK.unpack(sk)
        if family in (_AF_INET, _AF_INET6):
            local, remote = _ip(family, saddr), _ip(family, daddr)
            f[1] = "4" if family == _AF_INET else "6"
            f[4] = _L4.get(proto) or _SOCK_TYPE_L4.get(stype)
            if server:
                f[5], f[6], f[7], f[8] = remote, dport, local, sport
            else:
                f[5], f[6], f[7], f[8] = local, sport, remote, dport
            f[2] = f"{f[5]}:{f[6]}->{f[7]}:{f[8]}"
            return f
    parsed = parse_sockaddr(sa) if sa else None
    if parsed is None:
        return None
    family, addr, port = parsed
    if family == _AF_UNIX:
        f[1], f[2] = "u", addr
        return f
    if family in (_AF_INET, _AF_INET6):
        f[1] = "4" if family == _AF_INET else "6"
        any_ip = "0.0.0.0" if family == _AF_INET else "::"
        f[5], f[6], f[7], f[8] = any_ip, 0, addr, port
        f[2] = f"{any_ip}:0->{addr}:{port}"
        return f
    return None


# --- per event type: (header, items, process) -> (args, fd) --------------------------------
def _exec_failure(h: Header, it: list[bytes], p: Process) -> tuple[Args, Fd | None]:
    argv = [_str(b) for b in it[1:]]
    exe = argv[0] if argv else (_item_str(it, 0) or "")
    return [
        h[H_RET], exe, argv[1:], h[H_TID], p[P_PID], p[P_PPID], p[P_CWD], p[P_TTY], p[P_LOGINUID],
        p[P_EXE_FLAGS], None, None, None, p[P_UID], p[P_GID], _item_str(it, 0),
    ], None


def _open(h: Header, it: list[bytes], p: Process) -> tuple[Args, Fd | None]:
    raw = _item_str(it, 0)
    fd, flags = _s32(h[H_RET]), _u32(h[H_A0 + 1])
    return [fd, raw, flags, _u32(h[H_A0 + 2]), None, None], _file_fd(fd, raw, abspath(p, raw), flags)


def _openat(h: Header, it: list[bytes], p: Process) -> tuple[Args, Fd | None]:
    # the most frequent event: arithmetic inlined
    raw = _str(it[0]) if it and it[0] else None
    ret, dirfd, flags = h[H_RET], h[H_A0] & 0xFFFFFFFF, h[H_A0 + 2] & 0xFFFFFFFF
    fd = ret if -0x80000000 <= ret < 0x80000000 else _s32(ret)
    if dirfd & 0x80000000:
        dirfd -= 0x100000000
    name = abspath(p, raw, dirfd)
    f: Fd = [fd if fd >= 0 else -1, "d" if flags & _O_DIRECTORY else "f", name if name is not None else "",
             raw, None, None, None, None, None, False, False, False]  # fd.num as `_file_fd` says
    return [fd, dirfd, raw, flags, h[H_A0 + 3] & 0xFFFFFFFF, None, None], f


def _openat2(h: Header, it: list[bytes], p: Process) -> tuple[Args, Fd | None]:
    raw = _item_str(it, 0)
    fd, dirfd = _s32(h[H_RET]), _s32(h[H_A0])
    how = it[1] if len(it) > 1 and len(it[1]) == _OPEN_HOW.size else None
    flags, mode, resolve = _OPEN_HOW.unpack(how) if how else (None, None, None)
    fdrec = _file_fd(fd, raw, abspath(p, raw, dirfd), flags or 0)
    return [fd, dirfd, raw, flags, mode, resolve, None, None], fdrec


def _creat(h: Header, it: list[bytes], p: Process) -> tuple[Args, Fd | None]:
    raw = _item_str(it, 0)
    fd = _s32(h[H_RET])
    return [fd, raw, _u32(h[H_A0 + 1]), None, None, None], _file_fd(fd, raw, abspath(p, raw), 0)


def _connect(h: Header, it: list[bytes], p: Process) -> tuple[Args, Fd | None]:
    fd = _s32(h[H_A0])
    f = _sock_fd(fd, it[0] if it else None, it[1] if len(it) > 1 else None, server=False)
    return [h[H_RET], f[2] if f else None, fd], f


def _accept(h: Header, it: list[bytes], p: Process) -> tuple[Args, Fd | None]:
    fd = _s32(h[H_RET])
    f = _sock_fd(fd, None, it[0] if it else None, server=True) if fd >= 0 else None
    args: Args = [fd, f[2] if f else None, None, None, None]
    if h[H_EVT] == EVENT_TYPE_IDS["accept4"]:
        args.append(_s32(h[H_A0 + 3]))
    return args, f


def _listen(h: Header, it: list[bytes], p: Process) -> tuple[Args, Fd | None]:
    """A listening socket, named as Falco names a server socket: its local "ip:port", this process
    the server, no client (fd.cip stays missing); only inet sockets get an fd record."""
    fd = _s32(h[H_A0])
    args: Args = [h[H_RET], fd, _s32(h[H_A0 + 1])]
    sk = it[0] if it and len(it[0]) == _SOCK.size else None
    if sk is None:
        return args, None
    family, proto, stype, sport, _dport, _pad, saddr, _daddr = _SOCK.unpack(sk)
    if family not in (_AF_INET, _AF_INET6):
        return args, None
    ip = _ip(family, saddr)
    f: Fd = [fd, "4" if family == _AF_INET else "6", f"{ip}:{sport}", None,
             _L4.get(proto) or _SOCK_TYPE_L4.get(stype), None, None, ip, sport, True, False, False]
    return args, f


def _open_by_handle_at(h: Header, it: list[bytes], p: Process) -> tuple[Args, Fd | None]:
    """The handle names no path: as libs does, the path is the one the kernel gives the new fd
    (the probe's walk of its f_path), so fd.name is absent when that walk did not complete."""
    fd, flags = _s32(h[H_RET]), _u32(h[H_A0 + 2])
    path = cwd_path(it[0]) if it and it[0] else None
    args: Args = [fd, _s32(h[H_A0]), flags, path, None, None]
    return args, (_file_fd(fd, path, path, flags) if fd >= 0 else None)


def _close(h: Header, it: list[bytes], p: Process) -> tuple[Args, Fd | None]:
    """As libs fills close: fd.* describe what the fd referred to before it was closed. The probe
    walked that file's path at sys_enter_close (at exit the file may already be freed) and gives
    a[1] = 1 << 32 | its i_mode, or 0 when the fd had no file then (fd.num alone, as libs has it
    when its table has no entry: a failed close)."""
    fd, entry = _s32(h[H_A0]), h[H_A0 + 1]
    path = cwd_path(it[0]) if entry >> 32 and it and it[0] else None
    f: Fd = [None] * FD_LEN
    f[0] = fd
    if path is not None:
        f[1] = "d" if entry & _S_IFMT == _S_IFDIR else "f"
        f[2] = path
    f[9] = f[10] = f[11] = False
    return [h[H_RET], fd], f


def _generic_syscall(name: str) -> Builder:
    """libs' generic event: the syscall's PPM_SC code and x86_64 number, nothing else."""
    args: Args = list(GENERIC_SYSCALLS[name])

    def build(h: Header, it: list[bytes], p: Process) -> tuple[Args, Fd | None]:
        return args.copy(), None

    return build


def _socket(h: Header, it: list[bytes], p: Process) -> tuple[Args, Fd | None]:
    fd, domain = _s32(h[H_RET]), _s32(h[H_A0])
    f: Fd | None = None
    if fd >= 0:
        f = [None] * FD_LEN
        f[0] = fd
        f[1] = {_AF_INET: "4", _AF_INET6: "6", _AF_UNIX: "u"}.get(domain, "o")
        f[2] = ""
        if domain in (_AF_INET, _AF_INET6):
            f[4] = _SOCK_TYPE_L4.get(_u32(h[H_A0 + 1]) & 0xF)
        f[9] = f[10] = f[11] = False
    return [fd, domain, _u32(h[H_A0 + 1]), _s32(h[H_A0 + 2])], f


def _dup(h: Header, it: list[bytes], p: Process) -> tuple[Args, Fd | None]:
    ret = _s32(h[H_RET])
    args: Args = [ret, _s32(h[H_A0])]
    evt = h[H_EVT]
    if evt != EVENT_TYPE_IDS["dup"]:
        args.append(_s32(h[H_A0 + 1]))
    if evt == EVENT_TYPE_IDS["dup3"]:
        args.append(_u32(h[H_A0 + 2]))
    f: Fd | None = None
    if ret >= 0:
        f = [None] * FD_LEN
        f[0], f[1], f[2] = ret, "o", ""
        f[9] = f[10] = f[11] = False
    return args, f


def _clone(h: Header, it: list[bytes], p: Process) -> tuple[Args, Fd | None]:
    evt = h[H_EVT]
    if evt == EVENT_TYPE_IDS["clone3"]:
        flags = int.from_bytes(it[0], "little") if it and len(it[0]) == 8 else None
    elif evt == EVENT_TYPE_IDS["clone"]:
        flags = h[H_A0]
    else:
        flags = 0
    return [h[H_RET], p[P_EXE], p[P_ARGS], h[H_TID], p[P_PID], p[P_PPID], p[P_CWD], flags,
            p[P_UID], p[P_GID]], None


def _memfd(h: Header, it: list[bytes], p: Process) -> tuple[Args, Fd | None]:
    fd, name = _s32(h[H_RET]), _item_str(it, 0)
    f: Fd | None = None
    if fd >= 0:
        f = [None] * FD_LEN
        f[0], f[1], f[2] = fd, "m", f"memfd:{name}"
        f[9] = f[10] = f[11] = False
    return [fd, name, _u32(h[H_A0 + 1])], f


def _sendto(h: Header, it: list[bytes], p: Process) -> tuple[Args, Fd | None]:
    fd = _s32(h[H_A0])
    f = _sock_fd(fd, it[0], None, server=False) if it and it[0] else None
    return [h[H_RET], fd, h[H_A0 + 2], f[2] if f else None], f


def _prctl(h: Header, it: list[bytes], p: Process) -> tuple[Args, Fd | None]:
    return [h[H_RET], _s32(h[H_A0]), _item_str(it, 0), h[H_A0 + 1]], None


def _capset(h: Header, it: list[bytes], p: Process) -> tuple[Args, Fd | None]:
    if it and len(it[0]) == _CAPS.size:
        e0, p0, i0, e1, p1, i1 = _CAPS.unpack(it[0])
        return [h[H_RET], i0 | i1 << 32, p0 | p1 << 32, e0 | e1 << 32], None
    return [h[H_RET], None, None, None], None


def _procexit(h: Header, it: list[bytes], p: Process) -> tuple[Args, Fd | None]:
    code = h[H_A0]
    assert isinstance(code, int)
    return [code, (code >> 8) & 0xFF, code & 0x7F, bool(code & 0x80)], None


# Generic shapes: ("r" ret, "aN" raw a[N], "sN" a signed int a[N], "uN" u32 a[N], "pK" string item K)
def _generic(spec: tuple[str, ...]) -> Builder:
    def build(h: Header, it: list[bytes], p: Process) -> tuple[Args, Fd | None]:
        out: Args = []
        for s in spec:
            k, n = s[0], int(s[1:]) if len(s) > 1 else 0
            if k == "r":
                out.append(h[H_RET])
            elif k == "a":
                out.append(h[H_A0 + n])
            elif k == "s":
                out.append(_s32(h[H_A0 + n]))
            elif k == "u":
                out.append(_u32(h[H_A0 + n]))
            else:
                out.append(_item_str(it, n))
        return out, None

    return build


_GENERIC: Final[dict[str, tuple[str, ...]]] = {
    "setns": ("r", "s0", "u1"),
    "unshare": ("r", "u0"),
    "ptrace": ("r", "a2", "a3", "s0", "s1"),
    "mount": ("r", "p0", "p1", "p2", "u3"),
    "umount2": ("r", "p0", "u1"),
    "chmod": ("r", "p0", "u1"),
    "fchmod": ("r", "s0", "u1"),
    "fchmodat": ("r", "s0", "p0", "u2"),
    "unlink": ("r", "p0"),
    "unlinkat": ("r", "s0", "p0", "u2"),
    "rmdir": ("r", "p0"),
    "rename": ("r", "p0", "p1"),
    "renameat": ("r", "s0", "p0", "s2", "p1"),
    "renameat2": ("r", "s0", "p0", "s2", "p1", "u4"),
    "symlink": ("r", "p0", "p1"),
    "symlinkat": ("r", "p0", "s1", "p1"),
    "link": ("r", "p0", "p1"),
    "linkat": ("r", "s0", "p0", "s2", "p1", "u4"),
    "mkdir": ("r", "p0", "u1"),
    "mkdirat": ("r", "s0", "p0", "u2"),
    "setuid": ("r", "u0"),
    "setgid": ("r", "u0"),
    "setresuid": ("r", "u0", "u1", "u2"),
    "setresgid": ("r", "u0", "u1", "u2"),
    "setreuid": ("r", "u0", "u1"),
    "setregid": ("r", "u0", "u1"),
    "bpf": ("r", "s0"),
    "init_module": ("r", "a1", "p0"),
    "finit_module": ("r", "s0", "p0", "u2"),
    "userfaultfd": ("r", "u0"),
    "sendmsg": ("r", "s0", "x", "x"),
    "recvfrom": ("r", "s0", "a2", "x"),
    "recvmsg": ("r", "s0", "x", "x"),
    "chdir": ("r", "p0"),
    "fchdir": ("r", "s0"),
    "kill": ("r", "s0", "s1"),
}

_SPECIAL: Final[dict[str, Builder]] = {
    "execve": _exec_failure, "execveat": _exec_failure, "open": _open, "openat": _openat,
    "openat2": _openat2, "creat": _creat, "connect": _connect, "accept": _accept, "accept4": _accept,
    "listen": _listen, "socket": _socket, "dup": _dup, "dup2": _dup, "dup3": _dup, "clone": _clone,
    "clone3": _clone, "fork": _clone, "vfork": _clone, "memfd_create": _memfd, "sendto": _sendto,
    "prctl": _prctl, "capset": _capset, "procexit": _procexit, "open_by_handle_at": _open_by_handle_at,
    "close": _close,
    **{EVENT_TYPES[i]: _generic_syscall(EVENT_TYPES[i]) for i in GENERIC_TYPE_IDS},
}


def _builders() -> dict[int, Builder]:
    out: dict[int, Builder] = {}
    for name, i in EVENT_TYPE_IDS.items():
        if name in _SPECIAL:
            out[i] = _SPECIAL[name]
        else:
            spec = tuple(s if s != "x" else "r" for s in _GENERIC[name])
            # "x" slots are unknown values: build with ret, then blank them
            blanks = [k for k, s in enumerate(_GENERIC[name]) if s == "x"]
            out[i] = _blanked(_generic(spec), blanks) if blanks else _generic(spec)
    return out


def _blanked(b: Builder, blanks: list[int]) -> Builder:
    def build(h: Header, it: list[bytes], p: Process) -> tuple[Args, Fd | None]:
        args, f = b(h, it, p)
        for k in blanks:
            args[k] = None
        return args, f

    return build


BUILDERS: Final = _builders()
assert set(BUILDERS) == set(range(len(EVENT_TYPES))), "every event type needs a builder"


class Decoder:
    """Stateful decoder: the process table and the per-node event counter live here."""

    def __init__(
        self,
        procs: ProcTable,
        boot_to_epoch_ns: int,
        published: Iterable[int],
        openat: EventBuilder | None = None,
    ) -> None:
        """`openat`: the C builder of openat events (same output as the Python one, faster)."""
        self.procs = procs
        self.openat = openat if _OPENAT in frozenset(published) else None
        self.boot_to_epoch = boot_to_epoch_ns
        self.published = frozenset(published)
        self.num = 0  # evt.num of the last event
        self.n_read = 0
        self.n_truncated = 0

    def decode(self, raws: list[bytes]) -> list[Event]:
        """Raw records (bytes) to events: `parse` then `decode_records`."""
        return self.decode_records([parse(raw) for raw in raws])

    def decode_records(self, records: list[Record]) -> list[Event]:
        out: list[Event] = []
        procs, published, builders, openat = self.procs, self.published, BUILDERS, self.openat
        no_res = GENERIC_TYPE_IDS
        current, table, epoch = procs.current, procs.entries, self.boot_to_epoch
        self.n_read += len(records)
        for h in records:
            evt, flags = h[H_EVT], h[H_FLAGS]
            if flags & PG_FLAG_TRUNCATED:
                self.n_truncated += 1
            # the probe's fd.types table, last: taken off first so every builder sees its items
            fdtypes = h[H_ITEMS].pop() if flags & PG_FLAG_FDTYPES else None
            if evt == _OPENAT and openat is not None:  # the frequent case first
                self.num += 1
                ev = openat(h, table, current, epoch, self.num, abspath)
                if fdtypes is not None:
                    ev.append(fdtypes)
                out.append(ev)
                continue
            if evt == PG_EVT_FORK:
                procs.fork(h, h[H_A0], h[H_A0 + 1])
                continue
            if evt in _EXEC_IDS and h[H_RET] == 0:
                proc = self._exec(h, h[H_ITEMS])
                if evt not in published or flags & PG_FLAG_UNWANTED:
                    continue
                args: Args = [
                    0, proc[P_EXE], proc[P_ARGS], h[H_TID], proc[P_PID], proc[P_PPID], proc[P_CWD],
                    proc[P_TTY], proc[P_LOGINUID], proc[P_EXE_FLAGS], h[H_A0], h[H_A0 + 1], h[H_A0 + 2],
                    proc[P_UID], proc[P_GID], proc[P_EXEPATH],
                ]
                fd: Fd | None = None
            else:
                proc = procs.current(h)
                if evt == _PROCEXIT:
                    procs.exit(h[H_TGID])
                elif (evt == _CHDIR or evt == _FCHDIR) and h[H_RET] == 0:
                    self._chdir(h, evt)
                if evt not in published or flags & PG_FLAG_UNWANTED:
                    continue
                args, fd = builders[evt](h, h[H_ITEMS], proc)
            self.num += 1
            res = None if evt in no_res else h[H_RET]  # libs' generic event has no return value
            ev = [evt, h[H_TS] + epoch, h[H_TID], proc, res, args, fd, self.num]
            if fdtypes is not None:  # without it the event has the legacy length: not captured
                ev.append(fdtypes)
            out.append(ev)
        return out

    def _chdir(self, h: Header, evt: int) -> None:
        """The new working directory: the probe's walk of it, else (a walk cut short) chdir's path
        joined to the old one, as Falco does, or for fchdir what /proc says now."""
        it, tgid = h[H_ITEMS], h[H_TGID]
        walked = it[-1] if it and (evt == _FCHDIR or len(it) > 1) else b""
        cwd = cwd_path(walked) if walked else None
        if cwd is None:
            cwd = _item_str(it, 0) if evt == _CHDIR else _readlink(f"/proc/{tgid}/cwd")
        if cwd:
            self.procs.chdir(tgid, cwd)

    def _exec(self, h: Header, it: list[bytes]) -> Process:
        """Items: filename, argv, working directory, environment, then the image's inode."""
        n = len(it)
        argv = strings(it[1]) if n > 1 else []
        cwd = cwd_path(it[2]) if n > 2 and it[2] else None
        env = strings(it[3]) if n > 3 else None
        exe = exe_info(it[4], h[H_A0 + 2]) if n > 4 else None
        caps = (h[H_A0], h[H_A0 + 1], h[H_A0 + 2])
        return self.procs.exec(h, _item_str(it, 0) or "", argv, caps, exe, cwd, env)


def _readlink(path: str) -> str | None:
    try:
        return os.readlink(path)
    except OSError:
        return None
