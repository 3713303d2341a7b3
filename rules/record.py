"""The in-memory event record: the layout every stage agrees on.

Records are plain positional lists, indexed by the constants below, because the rule engine's
compiled code reads millions of them per second and an index into a list is the cheapest read
Python has. This module is the root of the import graph: collectors build these records, the wire
codec (`collectors.wire`) ships them, enrichers fill the container slot, and `rules` evaluates them.

Three record kinds, all lists:

* **event** ``EV_*``: one syscall (or scheduler event) at exit.
* **process** ``P_*``: the state of one process *version* (a process that execs gets a new version).
  On the wire an event's ``EV_PROC`` and a process's ``P_PARENT`` are indexes into the batch's
  process list (``-1`` for an unknown parent); ``collectors.wire.decode`` replaces them with the
  records themselves, so rule code follows plain references (``ev[EV_PROC][P_PARENT][P_NAME]``).
* **fd** ``F_*``: what the event's file descriptor refers to, or ``None`` when the event has none.
* **container** ``C_*``/``K_*``: container and Kubernetes metadata; never on the event wire. The
  collector sends ``P_CONTAINER_ID`` only and the worker's enrichment puts the container record in
  ``P_CONTAINER`` (``None`` while unknown, so ``k8s.*`` fields are missing, printed ``<NA>``).

Values on the wire are raw kernel values (Linux flag bits, errno as a negative return, IPs as
text); rendering them the way Falco prints them (``O_RDWR|O_CREAT``, ``ENOENT``) is the rule
engine's job. Event parameters are positional per event type, with Falco's parameter names, so
``evt.arg.flags`` and ``evt.arg[1]`` resolve through ``EVENT_PARAMS``.

Changing any layout here is a wire change: bump ``SCHEMA_VERSION``.
"""

from __future__ import annotations

from typing import Any, Final

from rules.libs_event_table import GENERIC_SYSCALLS

SCHEMA_VERSION: Final = 1

Event = list[Any]
Process = list[Any]
Fd = list[Any]
Container = list[Any]

# --- event ---------------------------------------------------------------------------------
EV_TYPE: Final = 0  # int: index into EVENT_TYPES
EV_TS: Final = 1  # int: nanoseconds since the Unix epoch
EV_TID: Final = 2  # int: thread id (host pid namespace)
EV_PROC: Final = 3  # wire: int index into the batch's processes; in memory: the Process record
EV_RES: Final = 4  # int: raw return value (negative errno on failure); evt.rawres
EV_ARGS: Final = 5  # list: parameters, positional per EVENT_PARAMS[EV_TYPE]; None where unknown
EV_FD: Final = 6  # Fd record or None
EV_NUM: Final = 7  # int: per-node event number, starting at 1 (evt.num)
EV_FDTYPES: Final = 8  # bytes or None: the process's fd table at the event (fd.types), see below
EVENT_LEN: Final = 9
# Events written before EV_FDTYPES existed end at EV_NUM; decoding gives them EV_FDTYPES = None.
LEGACY_EVENT_LEN: Final = 8

# --- process -------------------------------------------------------------------------------
P_PID: Final = 0  # int: tgid in the host namespace
P_PPID: Final = 1  # int
P_NAME: Final = 2  # str: comm, at most 15 characters (proc.name)
P_EXE: Final = 3  # str: argv[0] (proc.exe)
P_EXEPATH: Final = 4  # str: canonical executable path (proc.exepath)
P_ARGS: Final = 5  # list[str]: argv[1:] (proc.args; proc.cmdline = name + args)
P_CWD: Final = 6  # str (proc.cwd)
P_TTY: Final = 7  # int: controlling tty device number, 0 when none (proc.tty)
P_UID: Final = 8  # int: effective uid (user.uid)
P_GID: Final = 9  # int: effective gid (group.gid)
P_USER: Final = 10  # str or None: user name (user.name)
P_GROUP: Final = 11  # str or None: group name (group.name)
P_LOGINUID: Final = 12  # int: audit uid, -1 when unset (user.loginuid)
P_LOGINNAME: Final = 13  # str or None (user.loginname)
P_SID: Final = 14  # int: session id
P_SNAME: Final = 15  # str or None: session leader's name (proc.sname)
P_VPID: Final = 16  # int: pid inside the process's pid namespace (proc.vpid)
P_VPGID: Final = 17  # int: process group id inside its pid namespace (proc.vpgid)
P_START: Final = 18  # int: process start, ns since the epoch (proc.duration)
P_CAP_EFF: Final = 19  # int: effective capability bitmask (thread.cap_effective)
P_CAP_PERM: Final = 20  # int: permitted capability bitmask (thread.cap_permitted)
P_CAP_INH: Final = 21  # int: inheritable capability bitmask
P_EXE_FLAGS: Final = 22  # int: EXE_* bits below
P_EXE_INO_CTIME: Final = 23  # int or None: executable inode ctime, ns since the epoch
P_EXE_INO_MTIME: Final = 24  # int or None: executable inode mtime, ns since the epoch
P_ENV: Final = 25  # list[str] or None: environment, when captured (proc.env)
P_CONTAINER_ID: Final = 26  # str: 64-hex container id, or "host"
P_PARENT: Final = 27  # wire: int index of the parent's record in the batch or -1; in memory: Process or None
P_CONTAINER: Final = 28  # Container record or None; filled by enrichment, always None on the wire
P_NODE: Final = 29  # str: the node (host) name the process runs on (evt.hostname)
PROCESS_LEN: Final = 30

HOST_CONTAINER_ID: Final = "host"

# P_EXE_FLAGS bits (Falco's execve "flags" parameter: EXE_WRITABLE, EXE_UPPER_LAYER, ...)
EXE_WRITABLE: Final = 1 << 0
EXE_UPPER_LAYER: Final = 1 << 1
EXE_FROM_MEMFD: Final = 1 << 2
EXE_LOWER_LAYER: Final = 1 << 3

# --- fd ------------------------------------------------------------------------------------
F_NUM: Final = 0  # int: fd number, -1 for a failed open (fd.num)
F_TYPECHAR: Final = 1  # str: Falco's fd.typechar: f file, d directory, 4 ipv4, 6 ipv6, u unix, p pipe,
#                          e eventfd, s signalfd, l eventpoll, i inotify, b bpf, m memfd, o other
F_NAME: Final = 2  # str: absolute path, or the connection tuple "cip:cport->sip:sport" (fd.name)
F_NAMERAW: Final = 3  # str or None: the path as the process passed it (fd.nameraw)
F_L4PROTO: Final = 4  # str or None: tcp, udp, icmp, raw (fd.l4proto)
F_CIP: Final = 5  # str or None: client IP (fd.cip)
F_CPORT: Final = 6  # int or None
F_SIP: Final = 7  # str or None: server IP (fd.sip)
F_SPORT: Final = 8  # int or None
F_IS_SERVER: Final = 9  # bool: this process is the server side (accept), so local = server
F_CONNECTED: Final = 10  # bool (fd.connected)
F_NAME_CHANGED: Final = 11  # bool (fd.name_changed)
FD_LEN: Final = 12

# --- EV_FDTYPES: the types of the fds the process has open (libs fd.types) -------------------
# Byte i is the type of fd i: 0 when fd i is not open, else 1 + its index in FDTYPE_NAMES. Only
# the first MAX_FDTYPES_FDS fds are seen (the collector walks a bounded prefix of the table);
# None means "not captured" (the loaded rules do not need it, or the collector predates it).
# The names are libs' sinsp_fdinfo::get_typestring (fdinfo.cpp @48dfd53, lines 99-139); append only.
FDTYPE_NAMES: Final[tuple[str, ...]] = (
    "file", "directory", "ipv4", "ipv6", "unix", "pipe", "event", "signalfd", "eventpoll",
    "inotify", "timerfd", "netlink", "bpf", "userfaultfd", "io_uring", "memfd", "pidfd", "<NA>",
)  # fmt: skip
MAX_FDTYPES_FDS: Final = 64

# --- container and Kubernetes metadata (enrichment) ---------------------------------------
C_ID: Final = 0  # str: full container id
C_NAME: Final = 1  # str or None (container.name)
C_IMAGE: Final = 2  # str or None: full image reference (container.image)
C_IMAGE_REPO: Final = 3  # str or None (container.image.repository)
C_IMAGE_TAG: Final = 4  # str or None (container.image.tag)
C_IMAGE_DIGEST: Final = 5  # str or None (container.image.digest)
C_PRIVILEGED: Final = 6  # bool or None (container.privileged)
C_START_TS: Final = 7  # int or None: ns since the epoch (container.start_ts)
C_MOUNTS: Final = 8  # list of [source, dest, mode, rw(bool), propagation] or None (container.mounts)
C_TYPE: Final = 9  # str or None: containerd, cri-o, docker (container.type)
K_NS: Final = 10  # str or None (k8s.ns.name)
K_POD_NAME: Final = 11  # str or None (k8s.pod.name)
K_POD_UID: Final = 12  # str or None (k8s.pod.uid)
K_POD_LABELS: Final = 13  # dict[str, str] or None (k8s.pod.labels, k8s.pod.label[key])
K_POD_IP: Final = 14  # str or None (k8s.pod.ip)
CONTAINER_LEN: Final = 15

# --- event types ---------------------------------------------------------------------------
# libs' generic event (PPME_GENERIC_X) for a syscall it has no event of its own for: the syscall's
# PPM_SC code and its native number (rules.libs_event_table.GENERIC_SYSCALLS); evt.type is the
# syscall's name, and there is no return value (evt.res, evt.rawres, evt.failed are missing)
GENERIC_PARAMS: Final = ("ID", "nativeID")

# (name, parameter names at exit, as Falco's event table names them). The id of an event type is
# its index: append only, never reorder (the wire carries ids).
_LISTED: Final[tuple[tuple[str, tuple[str, ...]], ...]] = (
    ("execve", ("res", "exe", "args", "tid", "pid", "ptid", "cwd", "tty", "loginuid", "flags",
                "cap_inheritable", "cap_permitted", "cap_effective", "uid", "gid", "trusted_exepath")),
    ("execveat", ("res", "exe", "args", "tid", "pid", "ptid", "cwd", "tty", "loginuid", "flags",
                  "cap_inheritable", "cap_permitted", "cap_effective", "uid", "gid", "trusted_exepath")),
    ("open", ("fd", "name", "flags", "mode", "dev", "ino")),
    ("openat", ("fd", "dirfd", "name", "flags", "mode", "dev", "ino")),
    ("openat2", ("fd", "dirfd", "name", "flags", "mode", "resolve", "dev", "ino")),
    ("creat", ("fd", "name", "mode", "dev", "ino", "creat_flags")),
    ("connect", ("res", "tuple", "fd")),
    ("accept", ("fd", "tuple", "queuepct", "queuelen", "queuemax")),
    ("accept4", ("fd", "tuple", "queuepct", "queuelen", "queuemax", "flags")),
    ("listen", ("res", "fd", "backlog")),
    ("socket", ("fd", "domain", "type", "proto")),
    ("setns", ("res", "fd", "nstype")),
    ("unshare", ("res", "flags")),
    ("clone", ("res", "exe", "args", "tid", "pid", "ptid", "cwd", "flags", "uid", "gid")),
    ("clone3", ("res", "exe", "args", "tid", "pid", "ptid", "cwd", "flags", "uid", "gid")),
    ("fork", ("res", "exe", "args", "tid", "pid", "ptid", "cwd", "flags", "uid", "gid")),
    ("vfork", ("res", "exe", "args", "tid", "pid", "ptid", "cwd", "flags", "uid", "gid")),
    ("ptrace", ("res", "addr", "data", "request", "pid")),
    ("mount", ("res", "dev", "dir", "type", "flags")),
    ("umount2", ("res", "name", "flags")),
    ("chmod", ("res", "filename", "mode")),
    ("fchmod", ("res", "fd", "mode")),
    ("fchmodat", ("res", "dirfd", "filename", "mode")),
    ("unlink", ("res", "path")),
    ("unlinkat", ("res", "dirfd", "name", "flags")),
    ("rmdir", ("res", "path")),
    ("rename", ("res", "oldpath", "newpath")),
    ("renameat", ("res", "olddirfd", "oldpath", "newdirfd", "newpath")),
    ("renameat2", ("res", "olddirfd", "oldpath", "newdirfd", "newpath", "flags")),
    ("symlink", ("res", "target", "linkpath")),
    ("symlinkat", ("res", "target", "linkdirfd", "linkpath")),
    ("link", ("res", "oldpath", "newpath")),
    ("linkat", ("res", "olddir", "oldpath", "newdir", "newpath", "flags")),
    ("mkdir", ("res", "path", "mode")),
    ("mkdirat", ("res", "dirfd", "path", "mode")),
    ("setuid", ("res", "uid")),
    ("setgid", ("res", "gid")),
    ("setresuid", ("res", "ruid", "euid", "suid")),
    ("setresgid", ("res", "rgid", "egid", "sgid")),
    ("setreuid", ("res", "ruid", "euid")),
    ("setregid", ("res", "rgid", "egid")),
    ("bpf", ("fd", "cmd")),
    ("memfd_create", ("fd", "name", "flags")),
    ("dup", ("res", "oldfd")),
    ("dup2", ("res", "oldfd", "newfd")),
    ("dup3", ("res", "oldfd", "newfd", "flags")),
    ("init_module", ("res", "length", "uargs")),
    ("finit_module", ("res", "fd", "uargs", "flags")),
    ("userfaultfd", ("res", "flags")),
    ("sendto", ("res", "fd", "size", "tuple")),
    ("sendmsg", ("res", "fd", "size", "tuple")),
    ("recvfrom", ("res", "fd", "size", "tuple")),
    ("recvmsg", ("res", "fd", "size", "tuple")),
    ("chdir", ("res", "path")),
    ("fchdir", ("res", "fd")),
    ("kill", ("res", "pid", "sig")),
    ("prctl", ("res", "option", "arg2_str", "arg2_int")),
    ("capset", ("res", "cap_inheritable", "cap_permitted", "cap_effective")),
    ("procexit", ("status", "ret", "sig", "core")),
    ("open_by_handle_at", ("fd", "mountfd", "flags", "path", "dev", "ino")),
    ("close", ("res", "fd")),
    ("open_tree", GENERIC_PARAMS),
    ("open_tree_attr", GENERIC_PARAMS),
)
# Then every other x86_64 syscall libs sends as its generic event, in the order of libs' PPM_SC
# codes: libs only appends codes, so a syscall it adds later gets the next id and no id moves
# (tests/unit/rules/data/event_type_ids.txt pins them).
_APPENDED: Final = sorted(
    GENERIC_SYSCALLS.keys() - {name for name, _ in _LISTED}, key=lambda name: GENERIC_SYSCALLS[name][0]
)
_EVENT_TABLE: Final = _LISTED + tuple((name, GENERIC_PARAMS) for name in _APPENDED)

EVENT_TYPES: Final[tuple[str, ...]] = tuple(name for name, _ in _EVENT_TABLE)
EVENT_PARAMS: Final[tuple[tuple[str, ...], ...]] = tuple(params for _, params in _EVENT_TABLE)
EVENT_TYPE_IDS: Final[dict[str, int]] = {name: i for i, name in enumerate(EVENT_TYPES)}
GENERIC_TYPE_IDS: Final = frozenset(i for i, params in enumerate(EVENT_PARAMS) if params is GENERIC_PARAMS)
# name -> position, per event type id: evt.arg.NAME compiles to one list index
EVENT_PARAM_INDEX: Final[tuple[dict[str, int], ...]] = tuple(
    {p: i for i, p in enumerate(params)} for params in EVENT_PARAMS
)


def event_type_id(name: str) -> int:
    """Id of an event type by its Falco name; KeyError names the unknown type."""
    try:
        return EVENT_TYPE_IDS[name]
    except KeyError:
        raise KeyError(f"unknown event type {name!r}") from None


# Event types libs flags EF_CREATES_FD, EF_USES_FD or EF_DESTROYS_FD (driver/event_table.c @48dfd53,
# the current exit event of each): only on these does libs extract fd.* fields (sinsp_filtercheck_fd.cpp
# extract_fd), fd.types included. tests/unit/rules/test_fdtypes.py checks this against libs' table.
FD_EVENT_TYPES: Final = frozenset({
    "open", "openat", "openat2", "creat", "connect", "accept", "accept4", "listen", "socket", "setns",
    "fchmod", "fchmodat", "unlinkat", "symlinkat", "mkdirat", "bpf", "memfd_create", "dup", "dup2",
    "dup3", "finit_module", "userfaultfd", "sendto", "sendmsg", "recvfrom", "recvmsg", "fchdir",
    "open_by_handle_at", "close",
})  # fmt: skip
