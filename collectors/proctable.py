"""The process table: one current `rules.record` process record per live process.

Seeded from /proc at start (the only time /proc is trusted: at consume time a process is often
already gone), then kept by the probe's fork, exec and exit records. Records are never mutated
once built: a changed process (exec, setuid, a new parent after reparenting, a cgroup move, chdir)
gets a new *version*, so events already batched keep the context they happened in. `P_PARENT`
holds the parent's record in memory (the batcher turns it into an index), so the ancestors of a
process stay reachable after they exit, for as long as a descendant needs them.

Per event, `current(h)` compares the header's process context (ppid, uids, tty, session, pid
namespace ids, cgroup) with the record's; only a difference costs more than a dict lookup.
"""

from __future__ import annotations

import grp
import os
import pwd
from typing import Any, Final

from collectors.cgroups import CgroupResolver, container_id_v1, parse_container_id
from collectors.exeinfo import ExeInfo
from collectors.header import (
    H_CGROUP,
    H_COMM,
    H_CTX_END,
    H_CTX_FIRST,
    H_GID,
    H_LOGINUID,
    H_PPID,
    H_PSTART,
    H_SID,
    H_TGID,
    H_TTY,
    H_UID,
    H_VPGID,
    H_VPID,
    LOGINUID_UNSET,
    PG_MAX_STR,
)
from rules.record import (
    EXE_FROM_MEMFD,
    HOST_CONTAINER_ID,
    P_ARGS,
    P_CAP_EFF,
    P_CAP_INH,
    P_CAP_PERM,
    P_CONTAINER_ID,
    P_CWD,
    P_ENV,
    P_EXE,
    P_EXE_FLAGS,
    P_EXE_INO_CTIME,
    P_EXE_INO_MTIME,
    P_EXEPATH,
    P_GID,
    P_GROUP,
    P_LOGINNAME,
    P_LOGINUID,
    P_NAME,
    P_NODE,
    P_PARENT,
    P_PID,
    P_PPID,
    P_SID,
    P_SNAME,
    P_START,
    P_TTY,
    P_UID,
    P_USER,
    P_VPGID,
    P_VPID,
    PROCESS_LEN,
    Process,
)

_CLK_TCK: Final = os.sysconf("SC_CLK_TCK")
_ROOT_CGROUP: Final = 1
Header = tuple[Any, ...]  # HDR.unpack_from: ints, then comm bytes


def _readlink(path: str) -> str | None:
    try:
        return os.readlink(path)
    except OSError:
        return None


def _inode(path: str) -> int | None:
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


def _argv(block: bytes) -> list[str]:
    """Arguments (or environment) from a /proc cmdline (environ) read of at most PG_MAX_STR + 1
    bytes, cut to what the probe captures at exec, so a process seeded at start cannot carry a
    longer command line (1 MB+ of arguments would otherwise reach alerts, logs and every sink)
    than one seen exec'ing."""
    cut = len(block) > PG_MAX_STR
    args = block[:PG_MAX_STR].split(b"\0")
    if not cut or args[-1] == b"":
        args.pop()  # the terminator's empty tail; a cut block keeps its partial last argument
    return [a.decode("utf-8", "replace") for a in args]


def _comm(h: Header) -> str:
    raw = h[H_COMM]
    assert isinstance(raw, bytes)
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace")


class ProcTable:
    """tgid -> [record, context key, cgroup id]."""

    def __init__(self, node: str, boot_to_epoch_ns: int, cgroups: CgroupResolver) -> None:
        self.node = node
        self.boot_to_epoch = boot_to_epoch_ns
        self.cgroups = cgroups
        self._procs: dict[int, list[Any]] = {}  # tgid -> [record, context, cgroup]
        self._users: dict[int, str | None] = {}
        self._groups: dict[int, str | None] = {}

    def _user(self, uid: int) -> str | None:
        if uid not in self._users:
            try:
                self._users[uid] = pwd.getpwuid(uid).pw_name
            except KeyError:
                self._users[uid] = None
        return self._users[uid]

    def _group(self, gid: int) -> str | None:
        if gid not in self._groups:
            try:
                self._groups[gid] = grp.getgrgid(gid).gr_name
            except KeyError:
                self._groups[gid] = None
        return self._groups[gid]

    @property
    def entries(self) -> dict[int, list[Any]]:
        """tgid -> [record, context key, cgroup id], read-only: the C openat builder
        (collectors/openevent.c) does `current`'s unchanged-process test on it."""
        return self._procs

    def __len__(self) -> int:
        return len(self._procs)

    def get(self, tgid: int) -> Process | None:
        e = self._procs.get(tgid)
        return e[0] if e is not None else None

    # --- per event -------------------------------------------------------------------------
    def current(self, h: Header) -> Process:
        """The record of the event's process, a new version if its context changed."""
        e = self._procs.get(h[H_TGID])
        if e is not None and e[1] == h[H_CTX_FIRST:H_CTX_END] and e[2] == h[H_CGROUP]:
            proc: Process = e[0]
            return proc
        return self._revise(h, e[0] if e is not None else None)

    def _revise(self, h: Header, base: Process | None) -> Process:
        tgid = h[H_TGID]
        assert isinstance(tgid, int)
        if base is None:
            base = self._from_proc(tgid) or self._from_header(h)
        p = list(base)
        self._apply_context(p, h)
        self._procs[tgid] = [p, h[H_CTX_FIRST:H_CTX_END], h[H_CGROUP]]
        return p

    def _apply_context(self, p: Process, h: Header) -> None:
        ppid, uid, gid, loginuid, sid = h[H_PPID], h[H_UID], h[H_GID], h[H_LOGINUID], h[H_SID]
        assert isinstance(ppid, int) and isinstance(uid, int) and isinstance(gid, int)
        assert isinstance(loginuid, int) and isinstance(sid, int)
        p[P_PPID] = ppid
        p[P_PARENT] = self.get(ppid)
        p[P_UID], p[P_GID] = uid, gid
        p[P_USER], p[P_GROUP] = self._user(uid), self._group(gid)
        p[P_LOGINUID] = -1 if loginuid == LOGINUID_UNSET else loginuid
        p[P_LOGINNAME] = self._user(loginuid) if loginuid != LOGINUID_UNSET else None
        if h[H_VPID]:  # exec and fork records carry the session and namespaced ids
            p[P_SID] = sid
            leader = self.get(sid)
            p[P_SNAME] = leader[P_NAME] if leader is not None else (p[P_NAME] if sid == p[P_PID] else None)
            p[P_VPID], p[P_VPGID] = h[H_VPID], h[H_VPGID]
        p[P_TTY] = h[H_TTY]
        cgroup_id = h[H_CGROUP]
        assert isinstance(cgroup_id, int)
        if cgroup_id == _ROOT_CGROUP:
            p[P_CONTAINER_ID] = container_id_v1(p[P_PID])
        else:
            p[P_CONTAINER_ID] = self.cgroups.container_id(cgroup_id)

    def _from_header(self, h: Header) -> Process:
        """A process first seen after it was gone from /proc: what the header tells."""
        p: Process = [None] * PROCESS_LEN
        name = _comm(h)
        pstart = h[H_PSTART]
        assert isinstance(pstart, int)
        p[P_PID] = h[H_TGID]
        p[P_NAME] = p[P_EXE] = p[P_EXEPATH] = name
        p[P_ARGS] = []
        p[P_CWD] = None
        p[P_START] = pstart + self.boot_to_epoch if pstart else None
        p[P_CAP_EFF] = p[P_CAP_PERM] = p[P_CAP_INH] = 0
        p[P_EXE_FLAGS] = 0
        p[P_NODE] = self.node
        return p

    # --- process lifecycle -----------------------------------------------------------------
    def fork(self, h: Header, child_tgid: int, child_start_boot: int) -> None:
        """A new process: a copy of its parent's record, revised by the child's first event."""
        parent = self.current(h)
        child = list(parent)
        child[P_PID] = child_tgid
        child[P_PPID] = parent[P_PID]
        child[P_PARENT] = parent
        child[P_START] = child_start_boot + self.boot_to_epoch
        self._procs[child_tgid] = [child, None, None]

    def exec(
        self,
        h: Header,
        filename: str,
        argv: list[str],
        caps: tuple[int, int, int],
        exe: ExeInfo | None = None,
        cwd: str | None = None,
        env: list[str] | None = None,
    ) -> Process:
        """A successful exec: a new version with the new image (`exe`: its inode, when read), the
        working directory the probe read (`cwd`, None when it could not: then the one this table
        knows, else /proc's) and the environment (`env`, None when not captured: then inherited)."""
        tgid = h[H_TGID]
        assert isinstance(tgid, int)
        e = self._procs.get(tgid)
        old: Process | None = e[0] if e is not None else None
        if old is None:
            old = self._from_proc(tgid) or self._from_header(h)
        p = list(old)
        cwd = cwd or p[P_CWD] or _readlink(f"/proc/{tgid}/cwd")
        exepath = _readlink(f"/proc/{tgid}/exe")
        if exepath is not None and exe is not None and _inode(f"/proc/{tgid}/exe") != exe.ino:
            # the process has exec'd again since this record (nsenter then its command): /proc
            # shows the next image, not this one
            exepath = None
        if exepath is None or not exepath.startswith("/"):
            exepath = filename if filename.startswith("/") or not cwd else os.path.join(cwd, filename)
        p[P_NAME] = _comm(h)
        p[P_EXE] = argv[0] if argv else filename
        p[P_ARGS] = argv[1:]
        p[P_EXEPATH] = os.path.normpath(exepath) if exepath.startswith("/") else exepath
        p[P_CWD] = cwd
        if env is not None:
            p[P_ENV] = env
        p[P_CAP_INH], p[P_CAP_PERM], p[P_CAP_EFF] = caps
        p[P_EXE_FLAGS] = EXE_FROM_MEMFD if exepath.startswith("/memfd:") else 0
        if exe is not None:
            p[P_EXE_FLAGS] |= exe.flags
            p[P_EXE_INO_CTIME], p[P_EXE_INO_MTIME] = exe.ctime_ns, exe.mtime_ns
        else:
            p[P_EXE_INO_CTIME] = p[P_EXE_INO_MTIME] = None
        self._apply_context(p, h)
        self._procs[tgid] = [p, h[H_CTX_FIRST:H_CTX_END], h[H_CGROUP]]
        return p

    def chdir(self, tgid: int, path: str) -> None:
        e = self._procs.get(tgid)
        if e is None:
            return
        p = list(e[0])
        old = p[P_CWD]
        p[P_CWD] = os.path.normpath(os.path.join(old, path)) if old and not path.startswith("/") else path
        e[0] = p

    def exit(self, tgid: int) -> None:
        self._procs.pop(tgid, None)

    def sweep(self) -> int:
        """Forget processes gone from /proc whose exit was never seen (they ended before the probe
        attached, or their exit record was dropped); returns how many. Called rarely: it lists /proc."""
        alive = {int(n) for n in os.listdir("/proc") if n.isdigit()}
        gone = [tgid for tgid in self._procs if tgid not in alive]
        for tgid in gone:
            del self._procs[tgid]
        return len(gone)

    # --- /proc -------------------------------------------------------------------------------
    def seed(self) -> int:
        """Load every readable /proc entry; returns how many. Parents are linked after the scan."""
        for name in os.listdir("/proc"):
            if name.isdigit():
                p = self._from_proc(int(name))
                if p is not None:
                    self._procs[p[P_PID]] = [p, None, None]
        for e in self._procs.values():
            p = e[0]
            p[P_PARENT] = self.get(p[P_PPID])
            leader = self.get(p[P_SID])
            p[P_SNAME] = leader[P_NAME] if leader is not None else None
        return len(self._procs)

    def _from_proc(self, pid: int) -> Process | None:
        base = f"/proc/{pid}"
        try:
            with open(f"{base}/stat", "rb") as f:
                stat = f.read().decode("utf-8", "replace")
            with open(f"{base}/status") as f:
                status = dict(line.split(":\t", 1) for line in f.read().splitlines() if ":\t" in line)
            with open(f"{base}/cmdline", "rb") as f:
                argv = _argv(f.read(PG_MAX_STR + 1))
        except (OSError, ValueError):
            return None
        env: list[str] | None = None
        try:  # as the probe reads it at exec: the first PG_MAX_STR bytes
            with open(f"{base}/environ", "rb") as f:
                env = _argv(f.read(PG_MAX_STR + 1))
        except OSError:
            pass
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        # fields[0] is state (field 3 of stat)
        ppid, pgrp, session, tty_nr, starttime = (int(fields[i]) for i in (1, 2, 3, 4, 19))
        loginuid = LOGINUID_UNSET
        try:
            with open(f"{base}/loginuid") as f:
                loginuid = int(f.read().strip())
        except (OSError, ValueError):
            pass
        p: Process = [None] * PROCESS_LEN
        p[P_PID], p[P_PPID], p[P_NAME] = pid, ppid, name
        p[P_EXE] = argv[0] if argv else name
        p[P_ARGS] = argv[1:]
        p[P_ENV] = env
        p[P_EXEPATH] = _readlink(f"{base}/exe") or p[P_EXE]
        p[P_CWD] = _readlink(f"{base}/cwd")
        p[P_TTY] = tty_nr
        p[P_UID] = int(status.get("Uid", "0 0").split()[1])
        p[P_GID] = int(status.get("Gid", "0 0").split()[1])
        p[P_USER], p[P_GROUP] = self._user(p[P_UID]), self._group(p[P_GID])
        p[P_LOGINUID] = -1 if loginuid == LOGINUID_UNSET else loginuid
        p[P_LOGINNAME] = self._user(loginuid) if loginuid != LOGINUID_UNSET else None
        p[P_SID] = session
        p[P_VPID] = int(status.get("NSpid", str(pid)).split()[-1])
        p[P_VPGID] = int(status.get("NSpgid", str(pgrp)).split()[-1])
        p[P_START] = starttime * 1_000_000_000 // _CLK_TCK + self.boot_to_epoch
        p[P_CAP_INH] = int(status.get("CapInh", "0"), 16)
        p[P_CAP_PERM] = int(status.get("CapPrm", "0"), 16)
        p[P_CAP_EFF] = int(status.get("CapEff", "0"), 16)
        p[P_EXE_FLAGS] = EXE_FROM_MEMFD if str(p[P_EXEPATH]).startswith("/memfd:") else 0
        try:  # the inode times only: the other exe extras come from the probe, at exec
            st = os.stat(f"{base}/exe")
            p[P_EXE_INO_CTIME], p[P_EXE_INO_MTIME] = st.st_ctime_ns, st.st_mtime_ns
        except OSError:
            pass
        p[P_CONTAINER_ID] = HOST_CONTAINER_ID
        try:
            with open(f"{base}/cgroup") as f:
                for line in f:
                    cid = parse_container_id(line.rstrip("\n").split(":", 2)[-1])
                    if cid != HOST_CONTAINER_ID:
                        p[P_CONTAINER_ID] = cid
                        break
        except OSError:
            pass
        p[P_NODE] = self.node
        return p
