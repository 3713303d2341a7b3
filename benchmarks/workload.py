"""A realistic, seeded mix of in-memory event records for rule-engine and worker benchmarks.

The mix follows what a Kubernetes node sends once collectors capture only the event types the
rules need: mostly opens (most of them reads of libraries, /proc and config files, one in five
of a path seen only once), then execs, connects, sockets, a few setns/unshare and others.
Processes come from a pool of host and container processes with parent chains and enriched
container records. Almost nothing matches a
rule, as in production; `make_events(..., suspicious=...)` mixes in known triggers if wanted.

Usage: ``events = make_events(100_000, seed=1)`` -> list of event records (`rules.record`).
"""

from __future__ import annotations

import random

from rules import record as R

_HEX = "0123456789abcdef"
O_RDONLY, O_WRONLY, O_RDWR, O_CREAT, O_TRUNC, O_CLOEXEC = 0, 1, 2, 0o100, 0o1000, 0o2000000
AF_UNIX, AF_INET, AF_INET6, AF_NETLINK = 1, 2, 10, 16
CLONE_NEWNS, CLONE_NEWNET = 0x20000, 0x40000000

_READ_PATHS = (
    "/usr/lib/x86_64-linux-gnu/libc.so.6", "/etc/ld.so.cache", "/proc/self/status", "/proc/meminfo",
    "/usr/lib/python3.11/os.py", "/etc/hosts", "/etc/resolv.conf", "/etc/nsswitch.conf",
    "/app/node_modules/express/index.js", "/usr/share/zoneinfo/UTC", "/sys/fs/cgroup/cpu.max",
    "/etc/passwd", "/var/lib/app/data.db", "/usr/lib/jvm/lib/modules", "/etc/ssl/certs/ca-certificates.crt",
)  # fmt: skip
_WRITE_PATHS = (
    "/tmp/app.sock.lock", "/var/log/app/app.log", "/app/cache/blob.bin", "/dev/null", "/tmp/x.json",
)  # fmt: skip
_BINARIES = (
    ("/usr/bin/ls", "ls"), ("/usr/bin/cat", "cat"), ("/usr/local/bin/python3", "python3"),
    ("/usr/local/bin/node", "node"), ("/bin/sh", "sh"), ("/usr/bin/grep", "grep"), ("/usr/bin/java", "java"),
    ("/usr/bin/sleep", "sleep"), ("/usr/bin/date", "date"), ("/usr/sbin/nginx", "nginx"),
)  # fmt: skip
_IMAGES = (
    ("docker.io/library/nginx", "1.27"), ("ghcr.io/acme/api", "v3.2.1"), ("docker.io/library/redis", "7"),
    ("quay.io/prometheus/node-exporter", "v1.8.0"), ("registry.k8s.io/kube-proxy", "v1.31.0"),
)  # fmt: skip
_REMOTES = (("10.96.0.10", 53, "udp"), ("10.244.1.17", 8080, "tcp"), ("142.250.74.36", 443, "tcp"),
            ("172.17.0.3", 6379, "tcp"), ("10.244.2.9", 5432, "tcp"))  # fmt: skip
_API_SERVER = ("10.96.0.1", 443, "tcp")  # kubernetes.default.svc.cluster.local
_SERVERS = (("/usr/local/bin/python3", "python3"), ("/usr/local/bin/node", "node"), ("/usr/bin/java", "java"),
            ("/usr/sbin/nginx", "nginx"), ("/usr/local/bin/envoy", "envoy"))  # fmt: skip
# environments as processes have them: kubelet injects service variables into every container,
# and rules such as "proc.env icontains glibc_tunables" scan all of it
_ENV_HOST = (
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8", "HOME=/root",
    "INVOCATION_ID=5f3c0e6f0d2c4a0c9c1b0a4f1e2d3c4b", "JOURNAL_STREAM=8:23456",
)  # fmt: skip
_ENV_CONTAINER = (
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOSTNAME=api-7f9c6d5b8-x2kqz",
    "HOME=/app", "LANG=C.UTF-8", "APP_ENV=production", "LOG_LEVEL=info",
    "KUBERNETES_SERVICE_HOST=10.96.0.1", "KUBERNETES_SERVICE_PORT=443", "KUBERNETES_SERVICE_PORT_HTTPS=443",
    "KUBERNETES_PORT=tcp://10.96.0.1:443", "KUBERNETES_PORT_443_TCP=tcp://10.96.0.1:443",
    "KUBERNETES_PORT_443_TCP_PROTO=tcp", "KUBERNETES_PORT_443_TCP_PORT=443",
    "KUBERNETES_PORT_443_TCP_ADDR=10.96.0.1", "REDIS_SERVICE_HOST=10.96.14.7", "REDIS_SERVICE_PORT=6379",
    "REDIS_PORT=tcp://10.96.14.7:6379", "API_SERVICE_HOST=10.96.33.2", "API_SERVICE_PORT=8080",
)  # fmt: skip
_RUNTIME = (("/usr/bin/runc", "runc"), ("/usr/bin/containerd-shim-runc-v2", "containerd-shim"))


def _container(rng: random.Random, i: int) -> list[object]:
    cid = "".join(rng.choice(_HEX) for _ in range(64))
    repo, tag = _IMAGES[i % len(_IMAGES)]
    ns = ("default", "payments", "kube-system", "monitoring")[i % 4]
    c: list[object] = [None] * R.CONTAINER_LEN
    c[R.C_ID], c[R.C_NAME], c[R.C_IMAGE] = cid, f"ctr-{i}", f"{repo}:{tag}"
    c[R.C_IMAGE_REPO], c[R.C_IMAGE_TAG], c[R.C_PRIVILEGED] = repo, tag, False
    c[R.C_START_TS], c[R.C_MOUNTS], c[R.C_TYPE] = 1_700_000_000_000_000_000, [], "containerd"
    c[R.K_NS], c[R.K_POD_NAME], c[R.K_POD_UID] = ns, f"pod-{i}-7f9c", f"uid-{i}"
    c[R.K_POD_LABELS], c[R.K_POD_IP] = {"app": f"app{i}"}, f"10.244.0.{i + 10}"
    return c


def _process(
    rng: random.Random, pid: int, exe: tuple[str, str], parent: list[object] | None,
    container: list[object] | None, node: str,
) -> list[object]:  # fmt: skip
    p: list[object] = [None] * R.PROCESS_LEN
    path, name = exe
    p[R.P_PID], p[R.P_PPID] = pid, parent[R.P_PID] if parent else 1
    p[R.P_NAME], p[R.P_EXE], p[R.P_EXEPATH] = name, path, path
    p[R.P_ARGS] = [rng.choice(("-c", "--port=8080", "run", "app.py", "-l"))]
    p[R.P_CWD], p[R.P_TTY] = "/app" if container else "/root", 0
    p[R.P_UID], p[R.P_GID], p[R.P_USER], p[R.P_GROUP] = 1000, 1000, "app", "app"
    p[R.P_LOGINUID], p[R.P_LOGINNAME], p[R.P_SID], p[R.P_SNAME] = -1, None, pid, name
    p[R.P_VPID], p[R.P_VPGID], p[R.P_START] = pid % 1000 + 2, pid % 1000 + 2, 1_700_000_000_000_000_000
    p[R.P_CAP_EFF] = p[R.P_CAP_PERM] = p[R.P_CAP_INH] = 0
    p[R.P_EXE_FLAGS], p[R.P_ENV] = R.EXE_LOWER_LAYER, list(_ENV_CONTAINER if container else _ENV_HOST)
    p[R.P_CONTAINER_ID] = container[R.C_ID] if container else R.HOST_CONTAINER_ID
    p[R.P_PARENT], p[R.P_CONTAINER], p[R.P_NODE] = parent, container, node
    return p


def make_processes(
    rng: random.Random,
    count: int = 200,
    node: str = "node-1",
    binaries: tuple[tuple[str, str], ...] = _BINARIES,
) -> list[list[object]]:
    """Host and container processes with parent chains three to five deep."""
    containers = [_container(rng, i) for i in range(20)]
    systemd = _process(rng, 1, ("/usr/lib/systemd/systemd", "systemd"), None, None, node)
    shim = _process(rng, 900, ("/usr/bin/containerd-shim-runc-v2", "containerd-shim"), systemd, None, node)
    procs = []
    for i in range(count):
        container = containers[i % len(containers)] if i % 5 else None
        root = shim if container else systemd
        top = _process(rng, 1000 + 3 * i, rng.choice(_BINARIES), root, container, node)
        mid = _process(rng, 1001 + 3 * i, rng.choice(_BINARIES), top, container, node)
        procs.append(_process(rng, 1002 + 3 * i, rng.choice(binaries), mid, container, node))
    return procs


def _fd_file(num: int, path: str) -> list[object]:
    fd: list[object] = [None] * R.FD_LEN
    fd[R.F_NUM], fd[R.F_TYPECHAR], fd[R.F_NAME], fd[R.F_NAMERAW] = num, "f", path, path
    fd[R.F_IS_SERVER] = fd[R.F_CONNECTED] = fd[R.F_NAME_CHANGED] = False
    return fd


def _fd_socket(num: int, lip: str, lport: int, rip: str, rport: int, proto: str) -> list[object]:
    fd: list[object] = [None] * R.FD_LEN
    fd[R.F_NUM], fd[R.F_TYPECHAR], fd[R.F_NAME] = num, "4", f"{lip}:{lport}->{rip}:{rport}"
    fd[R.F_L4PROTO], fd[R.F_CIP], fd[R.F_CPORT], fd[R.F_SIP], fd[R.F_SPORT] = proto, lip, lport, rip, rport
    fd[R.F_IS_SERVER], fd[R.F_CONNECTED], fd[R.F_NAME_CHANGED] = False, True, False
    return fd


def _unique_path(rng: random.Random) -> str:
    """A path seen once: another process's /proc entry, a temporary file, a content-addressed
    cache file. Nodes open many of these, so no cache of paths can answer every open."""
    token = "".join(rng.choice(_HEX) for _ in range(12))
    return rng.choice((f"/proc/{rng.randrange(2, 4_000_000)}/stat", f"/tmp/tmp{token[:8]}/part.json",
                       f"/app/cache/{token}.bin"))  # fmt: skip


def _open_event(rng: random.Random, type_name: str, ts: int, p: list[object], num: int) -> list[object]:
    write = rng.random() < 0.15
    if rng.random() < 0.2:
        path = _unique_path(rng)
    else:
        path = rng.choice(_WRITE_PATHS if write else _READ_PATHS)
    if write:
        flags = O_WRONLY | O_CREAT | O_TRUNC if rng.random() < 0.5 else O_RDWR
    else:
        flags = O_RDONLY | O_CLOEXEC
    fdnum = rng.randrange(3, 64)
    params = R.EVENT_PARAMS[R.EVENT_TYPE_IDS[type_name]]
    # the driver records an open's mode only when the flags can create the file
    mode = 0o644 if flags & O_CREAT else 0
    values = {"fd": fdnum, "dirfd": -100, "name": path, "flags": flags, "mode": mode,
              "dev": 0x803, "ino": rng.randrange(1, 1 << 20), "resolve": 0}  # fmt: skip
    args = [values[name] for name in params]
    return [R.EVENT_TYPE_IDS[type_name], ts, p[R.P_PID], p, fdnum, args, _fd_file(fdnum, path), num]


def _exec_event(rng: random.Random, ts: int, p: list[object], num: int) -> list[object]:
    args = [0, p[R.P_EXE], p[R.P_ARGS], p[R.P_PID], p[R.P_PID], p[R.P_PPID], p[R.P_CWD], p[R.P_TTY], -1,
            p[R.P_EXE_FLAGS], 0, 0, 0, p[R.P_UID], p[R.P_GID], p[R.P_EXEPATH]]  # fmt: skip
    return [R.EVENT_TYPE_IDS["execve"], ts, p[R.P_PID], p, 0, args, None, num]


def _connect_event(rng: random.Random, ts: int, p: list[object], num: int) -> list[object]:
    rip, rport, proto = _API_SERVER if rng.random() < 0.005 else rng.choice(_REMOTES)
    fdnum = rng.randrange(3, 64)
    fd = _fd_socket(fdnum, "10.244.0.12", rng.randrange(32768, 60999), rip, rport, proto)
    res = 0 if rng.random() < 0.9 else -115  # EINPROGRESS for non-blocking connects
    return [R.EVENT_TYPE_IDS["connect"], ts, p[R.P_PID], p, res, [res, fd[R.F_NAME], fdnum], fd, num]


def _socket_event(rng: random.Random, ts: int, p: list[object], num: int) -> list[object]:
    domain = rng.choice((AF_INET, AF_INET, AF_UNIX, AF_INET6, AF_NETLINK))
    fdnum = rng.randrange(3, 64)
    return [R.EVENT_TYPE_IDS["socket"], ts, p[R.P_PID], p, fdnum, [fdnum, domain, 1, 0], None, num]


def _ns_event(rng: random.Random, ts: int, p: list[object], num: int) -> list[object]:
    if rng.random() < 0.5:
        return [R.EVENT_TYPE_IDS["setns"], ts, p[R.P_PID], p, 0, [0, 5, CLONE_NEWNET], None, num]
    return [R.EVENT_TYPE_IDS["unshare"], ts, p[R.P_PID], p, 0, [0, CLONE_NEWNS], None, num]


def _other_event(rng: random.Random, ts: int, p: list[object], num: int) -> list[object]:
    kind = rng.choice(("accept4", "dup2", "chmod", "unlink", "listen"))
    type_id = R.EVENT_TYPE_IDS[kind]
    if kind == "accept4":
        fd = _fd_socket(9, "10.244.0.99", 41000, "10.244.0.12", 8080, "tcp")
        fd[R.F_IS_SERVER] = True
        return [type_id, ts, p[R.P_PID], p, 9, [9, fd[R.F_NAME], 0, 0, 128, 0], fd, num]
    if kind == "dup2":
        return [type_id, ts, p[R.P_PID], p, 1, [1, 5, 1], _fd_file(1, "/dev/pts/0"), num]
    if kind == "chmod":
        return [type_id, ts, p[R.P_PID], p, 0, [0, "/tmp/x.json", 0o644], None, num]
    if kind == "unlink":
        return [type_id, ts, p[R.P_PID], p, 0, [0, "/tmp/x.json"], None, num]
    fd = _fd_socket(7, "0.0.0.0", 8080, "0.0.0.0", 8080, "tcp")
    return [type_id, ts, p[R.P_PID], p, 0, [0, 7, 128], fd, num]


# (weight, maker): opens dominate, as on a real node once collectors filter by event type
_MIX = (
    (0.50, lambda rng, ts, p, n: _open_event(rng, "openat", ts, p, n)),
    (0.06, lambda rng, ts, p, n: _open_event(rng, "open", ts, p, n)),
    (0.02, lambda rng, ts, p, n: _open_event(rng, "openat2", ts, p, n)),
    (0.12, _exec_event),
    (0.12, _connect_event),
    (0.08, _socket_event),
    (0.04, _ns_event),
    (0.06, _other_event),
)
# who does what: servers connect and accept, container runtimes (on the host) switch namespaces
_ACTORS = {_connect_event: "servers", _ns_event: "runtime", _other_event: "servers"}


def make_events(count: int, seed: int = 1, node: str = "node-1") -> list[list[object]]:
    """`count` event records from a seeded generator: the same seed gives the same records."""
    rng = random.Random(seed)
    pools = {
        "any": make_processes(rng, node=node),
        "servers": make_processes(rng, 50, node, _SERVERS),
        "runtime": [p for p in make_processes(rng, 20, node, _RUNTIME) if p[R.P_CONTAINER] is None],
    }
    weights = [w for w, _ in _MIX]
    makers = [m for _, m in _MIX]
    ts = 1_732_780_800_000_000_000
    events = []
    for num, maker in enumerate(rng.choices(makers, weights, k=count), start=1):
        ts += rng.randrange(1_000, 50_000)
        events.append(maker(rng, ts, rng.choice(pools[_ACTORS.get(maker, "any")]), num))
    return events


def rule_hitting_events(literals: list[str], count: int, seed: int) -> list[list[object]]:
    """Workload events whose process names, arguments, terminals, parents, environments and
    paths are often swapped for `literals` (the strings rules compare with), so many events
    reach deep into the rules and many rules match: for tests comparing two ways of evaluating."""
    rng = random.Random(seed)
    events = make_events(count, seed=seed)
    for ev in events:
        proc = list(ev[R.EV_PROC])  # type: ignore[call-overload]
        if rng.random() < 0.7:
            proc[R.P_NAME] = rng.choice(literals)
        if rng.random() < 0.3:
            proc[R.P_ARGS] = [rng.choice(literals)]
        if rng.random() < 0.3:
            proc[R.P_TTY] = 34816
        if rng.random() < 0.2:
            extra = rng.choice(["GLIBC_TUNABLES=x", "HOME=/root", rng.choice(literals)])
            proc[R.P_ENV] = ["PATH=/bin", extra]
        if rng.random() < 0.3 and proc[R.P_PARENT] is not None:
            parent = list(proc[R.P_PARENT])
            parent[R.P_NAME] = rng.choice(literals)
            proc[R.P_PARENT] = parent
        ev[R.EV_PROC] = proc
        fd = ev[R.EV_FD]
        if fd is not None and rng.random() < 0.7:
            fd = list(fd)  # type: ignore[call-overload]
            fd[R.F_NAME] = rng.choice(literals) if rng.random() < 0.5 else "/etc/" + rng.choice(literals)
            ev[R.EV_FD] = fd
    return events


# --- single records for tests: fields by name, everything else a plain default ----------------
def _slots(prefixes: tuple[str, ...]) -> dict[str, int]:
    out = {}
    for name, value in vars(R).items():
        for prefix in prefixes:
            if name.startswith(prefix) and isinstance(value, int) and not name.endswith("_LEN"):
                out[name[len(prefix) :].lower()] = value
    return out


_PROC_SLOTS = _slots(("P_",))
_FD_SLOTS = _slots(("F_",))
_CONTAINER_SLOTS = _slots(("C_", "K_"))


def build_process(**fields: object) -> list[object]:
    """A process record: keyword names are the P_* constants in lower case (``name="bash"``);
    ``parent`` and ``container`` may be dicts (built recursively) or records."""
    p: list[object] = [None] * R.PROCESS_LEN
    defaults: dict[str, object] = {
        "pid": 100, "ppid": 1, "name": "bash", "exe": "bash", "exepath": "/usr/bin/bash", "args": [],
        "cwd": "/", "tty": 0, "uid": 0, "gid": 0, "user": "root", "group": "root", "loginuid": -1,
        "sid": 100, "vpid": 100, "vpgid": 100, "start": 1_700_000_000_000_000_000, "cap_eff": 0,
        "cap_perm": 0, "cap_inh": 0, "exe_flags": 0, "container_id": R.HOST_CONTAINER_ID, "node": "node-1",
    }  # fmt: skip
    for key, value in {**defaults, **fields}.items():
        if key == "parent" and isinstance(value, dict):
            value = build_process(**value)
        if key == "container" and isinstance(value, dict):
            value = build_container(**value)
        p[_PROC_SLOTS[key]] = value
    container = p[R.P_CONTAINER]
    if isinstance(container, list) and "container_id" not in fields:
        p[R.P_CONTAINER_ID] = container[R.C_ID]
    return p


def build_container(**fields: object) -> list[object]:
    """A container record: keywords are the C_*/K_* constants in lower case (``image_repo=``, ``ns=``)."""
    c: list[object] = [None] * R.CONTAINER_LEN
    c[R.C_ID] = "3ad7b26ded6d8e7b23da7d48fe889434573036c27ae5a74837233de441c3601e"
    for key, value in fields.items():
        c[_CONTAINER_SLOTS[key]] = value
    return c


def build_fd(**fields: object) -> list[object]:
    """An fd record: keywords are the F_* constants in lower case (``typechar="4"``, ``sip=``)."""
    fd: list[object] = [None] * R.FD_LEN
    fd[R.F_NUM], fd[R.F_TYPECHAR], fd[R.F_NAME] = 3, "f", "/tmp/file"
    fd[R.F_IS_SERVER] = fd[R.F_CONNECTED] = fd[R.F_NAME_CHANGED] = False
    for key, value in fields.items():
        fd[_FD_SLOTS[key]] = value
    return fd


def build_event(
    type_name: str,
    *,
    args: dict[str, object] | None = None,
    res: int = 0,
    proc: dict[str, object] | list[object] | None = None,
    fd: dict[str, object] | list[object] | None = None,
    num: int = 1,
    ts: int = 1_718_000_000_123_456_789,
    tid: int | None = None,
    fdtypes: list[str | None] | None = None,
) -> list[object]:
    """One event record; `args` by Falco parameter name (missing ones are None); `fdtypes` the
    type name of each fd from 0 (None: not open), or None when not captured."""
    type_id = R.EVENT_TYPE_IDS[type_name]
    params = R.EVENT_PARAMS[type_id]
    given = args or {}
    unknown = set(given) - set(params)
    if unknown:
        raise KeyError(f"{type_name} has no parameter(s) {sorted(unknown)}; it has {params}")
    process = build_process(**(proc or {})) if isinstance(proc, dict) or proc is None else proc
    fd_record = build_fd(**fd) if isinstance(fd, dict) else fd
    arg_list = [given.get(name) for name in params]
    table = None if fdtypes is None else fdtypes_table(fdtypes)
    thread = process[R.P_PID] if tid is None else tid
    return [type_id, ts, thread, process, res, arg_list, fd_record, num, table]


def fdtypes_table(types: list[str | None]) -> bytes:
    """An ``EV_FDTYPES`` value from the type name of each fd (None: not open)."""
    return bytes(0 if t is None else R.FDTYPE_NAMES.index(t) + 1 for t in types)
