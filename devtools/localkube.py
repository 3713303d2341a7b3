"""Real Kubernetes on this machine, for the tests and `scripts/cluster`, from the binaries that
scripts/setup builds (scripts/setup.d/50-kube-apiserver.sh, 55-kube-node.sh) and Debian's etcd, runc
and CNI plugins. No Docker, no kind, no registry.

`KubeApi` is etcd + kube-apiserver on loopback: alone it is the API server of the k8s tests
(tests/kube_apiserver.py), where nothing happens on its own. `Node` adds a whole single-node
cluster around its own `KubeApi`: kube-controller-manager, kube-scheduler, containerd (runc), a
kubelet and kube-proxy, so pods really run and reach Services. Both run as children of the
caller, or detached (`scripts/cluster up|down|status`, the state in a JSON file) with the same code.

The kubelet on this machine's cgroups (cgroup v1 controllers, an empty cgroup2 hierarchy at
/sys/fs/cgroup/unified) works with ``failCgroupV1: false`` and ``cgroupDriver: cgroupfs``: see the
README section "A real single-node Kubernetes" for what was tried and why.

Everything one node owns is named after it, so two nodes (two test sessions) on one machine do
not meet: its directory, containerd's sockets and state, the kubelet's ports, the cgroup root
``/peregrine-<name>`` (a kubelet removes pod cgroups it does not know under its root), the CNI
bridge and subnet. The kernel settings the kubelet changes (``SYSCTLS``) are restored by the
`Node.close` of the last node.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import io
import ipaddress
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from devtools.errors import DevtoolsError

CACHE = Path(os.environ.get("PEREGRINE_CACHE", Path.home() / ".cache" / "peregrine"))
APISERVER = CACHE / "kube-apiserver"
SERVICE_CIDR = "10.0.0.0/24"
READY_TIMEOUT_S = 120.0
DEFAULT_DIR = Path(os.environ.get("PEREGRINE_CLUSTER_DIR", "/var/lib/peregrine/cluster"))
STATE_FILE = "peregrine-cluster.json"
PAUSE_IMAGE = "peregrine.local/pause:3.10"
PEREGRINE_IMAGE = "peregrine.local/peregrine"  # the tag is the version, scripts/image's ref.name
CGROUP_FS = Path("/sys/fs/cgroup")
CNI_BIN = Path("/usr/lib/cni")  # Debian's containernetworking-plugins
# What the kubelet sets when it starts (setupKernelTunables in pkg/kubelet/cm, "modify" unless
# protectKernelDefaults) plus what the CNI bridge plugin sets for a gateway; saved and restored.
SYSCTLS = (
    "vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic", "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes", "net/ipv4/ip_forward",
)
SYSCTLS_SAVED = Path("/run/peregrine/sysctls.json")


class KubeError(DevtoolsError):
    """A component of the local cluster is missing, did not start, or did not become ready."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def binary(name: str) -> Path:
    path = CACHE / name
    if not path.exists():
        raise KubeError(f"no {name} at {path}: run ./scripts/setup (scripts/setup.d/55-kube-node.sh)")
    return path


# --- processes -------------------------------------------------------------------------------


@dataclass
class Proc:
    """A daemon we started: a child (`popen`) or, after `scripts/cluster up`, a pid from the state
    file, told apart from a recycled pid by its start time."""

    name: str
    pid: int
    started: str
    log: str
    popen: subprocess.Popen[bytes] | None = field(default=None, repr=False, compare=False)

    def alive(self) -> bool:
        if self.popen is not None:
            return self.popen.poll() is None
        return _start_time(self.pid) == self.started

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return Path(self.log).read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    def state(self) -> dict[str, Any]:
        return {"name": self.name, "pid": self.pid, "started": self.started, "log": self.log}


def _start_time(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    fields = stat.rsplit(")", 1)[1].split()
    return "" if fields[0] == "Z" else fields[19]


def launch(name: str, cmd: Sequence[str | Path], log: Path, env: Mapping[str, str] | None = None) -> Proc:
    # own session: a Ctrl-C in the terminal of `scripts/cluster up` must not reach the daemons
    with log.open("ab") as out:
        popen = subprocess.Popen(
            [str(c) for c in cmd], stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            env=dict(env) if env is not None else None,
        )
    return Proc(name, popen.pid, _start_time(popen.pid), str(log), popen)


def terminate(procs: Sequence[Proc], timeout: float = 30.0) -> None:
    """SIGTERM all, then SIGKILL what is left after the timeout."""
    live = [p for p in procs if p.alive()]
    for p in live:
        with contextlib.suppress(ProcessLookupError):
            os.kill(p.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for p in live:
        while p.alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        if p.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(p.pid, signal.SIGKILL)
            while p.alive():
                time.sleep(0.05)
        if p.popen is not None:
            p.popen.wait()


def wait_for(proc: Proc, probe: Callable[[], bool], timeout: float = READY_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise KubeError(f"{proc.name} exited; log {proc.log}:\n{proc.log_tail()}")
        if probe():
            return
        time.sleep(0.2)
    raise KubeError(f"{proc.name} not ready in {timeout:.0f}s; log {proc.log}:\n{proc.log_tail()}")


def _https_ok(url: str, token: str | None = None) -> bool:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        req = urllib.request.Request(url, headers=headers)
        with urllib.request.urlopen(req, timeout=5, context=ctx) as r:
            return bool(r.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _openssl(*args: str) -> None:
    done = subprocess.run(["openssl", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise KubeError(f"openssl {' '.join(args)} failed: {done.stderr}")


# --- etcd + kube-apiserver -------------------------------------------------------------------


@dataclass
class KubeApi:
    """The running etcd + kube-apiserver pair, and what a client needs to reach it.

    ``users`` are extra static-token identities (token -> (user, groups)) beside the admin in
    ``system:masters``. The k8s tests' API server authorizes with RBAC alone and has the
    ServiceAccount admission plugin off (no controller makes service accounts there); `Node`
    changes ``authorization`` and ``disabled_admission`` and adds ``extra_args`` (the client
    certificate for the kubelet)."""

    root: Path
    etcd_port: int = field(default_factory=free_port)
    etcd_peer_port: int = field(default_factory=free_port)
    port: int = field(default_factory=free_port)
    token: str = field(default_factory=lambda: uuid.uuid4().hex)
    users: dict[str, tuple[str, str]] = field(default_factory=dict)
    authorization: str = "RBAC"
    disabled_admission: str = "ServiceAccount"
    # Loopback for the k8s tests. A node's pods reach the API server through the `kubernetes`
    # Service, whose endpoint (kept by the "lease" reconciler) is this address: the node's.
    address: str = "127.0.0.1"
    endpoint_reconciler: str = "none"
    extra_args: list[str] = field(default_factory=list)
    etcd: Proc | None = None
    apiserver: Proc | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"https://{self.address}:{self.port}"

    @property
    def kubeconfig(self) -> Path:
        return self.root / "admin.kubeconfig"

    @property
    def ca(self) -> Path:
        """The API server's self-signed serving certificate, which is also its CA."""
        return self.root / "certs" / "apiserver.crt"

    def prepare(self) -> None:
        """Service-account signing keys and the static token file."""
        self.root.mkdir(parents=True, exist_ok=True)
        key, pub = str(self.root / "sa.key"), str(self.root / "sa.pub")
        _openssl("genrsa", "-out", key, "2048")
        _openssl("rsa", "-in", key, "-pubout", "-out", pub)
        lines = [f'{self.token},peregrine-admin,uid-admin,"system:masters"']
        lines += [f'{t},{user},uid-{user},"{groups}"' for t, (user, groups) in self.users.items()]
        (self.root / "tokens.csv").write_text("\n".join(lines) + "\n")

    def start_etcd(self) -> None:
        log = self.root / "etcd.log"
        peer = f"http://127.0.0.1:{self.etcd_peer_port}"
        client = f"http://127.0.0.1:{self.etcd_port}"
        self.etcd = launch(
            "etcd",
            ["etcd", "--name", "default", "--data-dir", str(self.root / "etcd"),
             "--listen-client-urls", client, "--advertise-client-urls", client,
             "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
             "--initial-cluster", f"default={peer}", "--log-level", "warn"],
            log,
        )
        wait_for(self.etcd, lambda: self._etcd_call("/v3/maintenance/status", {}) is not None)

    def start(self) -> None:
        """Start (or restart) the API server against the same etcd, port and keys."""
        if not APISERVER.exists():
            raise KubeError(f"no kube-apiserver at {APISERVER}: run ./scripts/setup (50-kube-apiserver.sh)")
        self.starts += 1
        r = self.root
        self.apiserver = launch(
            "kube-apiserver",
            [str(APISERVER),
             f"--etcd-servers=http://127.0.0.1:{self.etcd_port}",
             f"--bind-address={self.address}", f"--advertise-address={self.address}",
             f"--secure-port={self.port}",
             f"--cert-dir={r / 'certs'}",
             f"--token-auth-file={r / 'tokens.csv'}",
             f"--authorization-mode={self.authorization}", "--anonymous-auth=false",
             f"--service-account-key-file={r / 'sa.pub'}",
             f"--service-account-signing-key-file={r / 'sa.key'}",
             "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
             f"--service-cluster-ip-range={SERVICE_CIDR}",
             f"--disable-admission-plugins={self.disabled_admission}",
             # loopback is no address to advertise in the kubernetes Endpoints; the Service still exists
             f"--endpoint-reconciler-type={self.endpoint_reconciler}",
             "--allow-privileged=true", "--profiling=false", "--v=1", *self.extra_args],
            r / f"kube-apiserver.{self.starts}.log",
        )
        wait_for(self.apiserver, self.ready)

    def stop(self, crash: bool = False) -> None:
        """Stop the API server (SIGTERM, then SIGKILL); etcd keeps its data. ``crash``: SIGKILL
        right after the SIGTERM. A SIGTERM'd server stops listening at once but holds its clients'
        open watches until SIGKILL (30 s later), so an outage that must start now is a crash."""
        terminate([p for p in (self.apiserver,) if p is not None], timeout=0.0 if crash else 30.0)
        self.apiserver = None

    def close(self) -> None:
        self.stop()
        terminate([p for p in (self.etcd,) if p is not None])
        self.etcd = None

    def write_kubeconfig(self, path: Path, token: str, user: str) -> Path:
        """A kubeconfig for this server that authenticates with a bearer token."""
        path.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "test",
            "clusters": [{"name": "test",
                          "cluster": {"server": self.url, "certificate-authority": str(self.ca)}}],
            "users": [{"name": user, "user": {"token": token}}],
            "contexts": [{"name": "test", "context": {"cluster": "test", "user": user}}],
        }))
        return path

    def compact_etcd(self) -> int:
        """Advance etcd's revision with keys the API server never reads, then compact everything
        before it: every resourceVersion a client holds is now too old (the API server says 410)."""
        for i in range(5):
            key = base64.b64encode(f"/peregrine-test/{i}".encode()).decode()
            self._etcd_call("/v3/kv/put", {"key": key, "value": key})
        status = self._etcd_call("/v3/kv/range", {"key": base64.b64encode(b"/peregrine-test/0").decode()})
        if status is None:
            raise KubeError("etcd is not answering")
        revision = int(status["header"]["revision"])
        self._etcd_call("/v3/kv/compaction", {"revision": str(revision), "physical": True})
        return revision

    def _etcd_call(self, path: str, body: dict[str, Any]) -> dict[str, Any] | None:
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.etcd_port}{path}", data=json.dumps(body).encode(), method="POST"
        )
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                result: dict[str, Any] = json.loads(resp.read())
                return result
        except (urllib.error.URLError, OSError):
            return None

    def ready(self) -> bool:
        return _https_ok(f"{self.url}/readyz", self.token)


Api = TypeVar("Api", bound=KubeApi)


def serve_api(root: Path, kind: type[Api] = KubeApi) -> Api:  # type: ignore[assignment]
    """Prepare and start etcd and the API server in root, with the admin kubeconfig written.
    ``kind`` may be a subclass (the tests' adds a Kubernetes client, which devtools may not import)."""
    if shutil.which("etcd") is None:
        raise KubeError("no etcd: run ./scripts/setup (etcd-server is in scripts/apt-packages.txt)")
    api = kind(root)
    api.prepare()
    try:
        api.start_etcd()
        api.start()
    except BaseException:
        api.close()
        raise
    api.write_kubeconfig(api.kubeconfig, api.token, "peregrine-admin")
    return api


# --- the node: controllers, containerd, kubelet ----------------------------------------------


def _route_src() -> str:
    """The address the kubelet registers (the node's InternalIP): the source of the default route.
    Not loopback, which the kubelet refuses, and reachable by the API server on this machine."""
    out = subprocess.run(["ip", "-4", "-j", "route", "get", "192.0.2.255"], capture_output=True, text=True,
                         check=False)
    try:
        return str(json.loads(out.stdout)[0]["prefsrc"])
    except (ValueError, LookupError) as exc:
        raise KubeError(f"no IPv4 default route to take the node's address from: {out.stderr}") from exc


def _free_subnet(seed: str) -> str:
    """A /24 in 10.244.0.0/16 that no route of this machine covers yet (another node's bridge)."""
    out = subprocess.run(["ip", "-4", "-j", "route", "show"], capture_output=True, text=True, check=False)
    used = []
    for r in json.loads(out.stdout or "[]"):
        if r.get("dst", "default") != "default":
            used.append(ipaddress.ip_network(r["dst"], strict=False))
    start = int(hashlib.sha256(seed.encode()).hexdigest(), 16) % 200
    for i in range(200):
        net = ipaddress.ip_network(f"10.244.{(start + i) % 200 + 20}.0/24")
        if not any(net.overlaps(u) for u in used):
            return str(net)
    raise KubeError("no free /24 in 10.244.0.0/16 for the pod network")


def _cgroup_mounts() -> list[Path]:
    """Every cgroup hierarchy mounted under /sys/fs/cgroup (v1 controllers and the v2 one)."""
    mounts = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        if right.split(" ", 1)[0] in ("cgroup", "cgroup2"):
            mounts.append(Path(left.split()[4]))
    return mounts


def _other_running(name: str) -> bool:
    """Is a `name` we built running (another node's; ours is stopped when this is asked)?"""
    names = {str(CACHE / name).encode(), str((CACHE / name).resolve()).encode()}
    for proc in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            if proc.name.isdigit() and (proc / "cmdline").read_bytes().split(b"\0", 1)[0] in names:
                return True
    return False


def _pause_archive(path: Path) -> None:
    """An OCI archive of the sandbox image: the static pause binary (55-kube-node.sh) alone.
    Written here, deterministically, because no registry serves registry.k8s.io/pause."""
    pause = binary("pause").resolve()
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tar.gettarinfo(str(pause), arcname="pause")
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        info.mtime = 0
        with pause.open("rb") as f:
            tar.addfile(info, f)
    blobs: dict[str, bytes] = {}

    def blob(data: bytes, media: str) -> dict[str, Any]:
        digest = hashlib.sha256(data).hexdigest()
        blobs[digest] = data
        return {"mediaType": media, "digest": f"sha256:{digest}", "size": len(data)}

    layer_bytes = layer.getvalue()
    config = {
        "architecture": "amd64", "os": "linux",
        "config": {"Entrypoint": ["/pause"], "User": "65535:65535"},
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{hashlib.sha256(layer_bytes).hexdigest()}"]},
    }
    manifest = {
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": blob(json.dumps(config, sort_keys=True).encode(),
                       "application/vnd.oci.image.config.v1+json"),
        "layers": [blob(layer_bytes, "application/vnd.oci.image.layer.v1.tar")],
    }
    desc = blob(json.dumps(manifest, sort_keys=True).encode(), "application/vnd.oci.image.manifest.v1+json")
    desc["annotations"] = {"io.containerd.image.name": PAUSE_IMAGE,
                           "org.opencontainers.image.ref.name": PAUSE_IMAGE.rsplit(":", 1)[1]}
    with tarfile.open(path, "w") as tar:
        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

        add("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        add("index.json", json.dumps({"schemaVersion": 2, "manifests": [desc]}).encode())
        for digest, data in blobs.items():
            add(f"blobs/sha256/{digest}", data)


@dataclass
class Node:
    """One node named ``name`` whose files all live in ``root``; see the module's docstring."""

    name: str
    root: Path
    node_ip: str = ""
    subnet: str = ""
    kubelet_port: int = field(default_factory=free_port)
    kubelet_healthz_port: int = field(default_factory=free_port)
    scheduler_port: int = field(default_factory=free_port)
    controller_manager_port: int = field(default_factory=free_port)
    proxy_healthz_port: int = field(default_factory=free_port)
    proxy_metrics_port: int = field(default_factory=free_port)
    api: KubeApi | None = None
    procs: dict[str, Proc] = field(default_factory=dict)
    sysctls: dict[str, str] = field(default_factory=dict)
    started_s: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)  # seconds into up() each stage was done

    @property
    def node_name(self) -> str:
        return f"peregrine-{self.name}"

    @property
    def cgroup_root(self) -> str:
        """The kubelet's cgroupRoot: pods are under <this>/kubepods (cgroupfs driver)."""
        return f"/peregrine-{self.name}"

    @property
    def bridge(self) -> str:
        return f"pgbr-{self.name}"[:15]

    @property
    def run_dir(self) -> Path:
        # unix socket paths are limited to 108 bytes; the root may be long, /run is short
        return Path("/run/peregrine") / self.name

    @property
    def containerd_socket(self) -> Path:
        return self.run_dir / "containerd.sock"

    @property
    def kubeconfig(self) -> Path:
        assert self.api is not None
        return self.api.kubeconfig

    # -- checks and files --------------------------------------------------------------------

    def _check(self) -> None:
        if os.geteuid() != 0:
            raise KubeError("a node needs root (containerd, runc, cgroups, mounts)")
        for name in ("kubelet", "kube-scheduler", "kube-controller-manager", "kube-proxy", "crictl", "pause",
                     "containerd/containerd", "containerd/containerd-shim-runc-v2", "containerd/ctr"):
            binary(name)
        for tool, hint in (("runc", "runc"), ("etcd", "etcd-server"), ("ip", "iproute2")):
            if shutil.which(tool) is None:
                raise KubeError(f"no {tool}: run ./scripts/setup ({hint} is in scripts/apt-packages.txt)")
        for plugin in ("bridge", "host-local", "loopback"):
            if not (CNI_BIN / plugin).exists():
                raise KubeError(f"no CNI plugin {CNI_BIN / plugin}: run ./scripts/setup "
                                "(containernetworking-plugins is in scripts/apt-packages.txt)")

    def _pki(self) -> None:
        """A CA the kubelet trusts for client certificates, and the API server's certificate from it
        (kubectl exec and logs go API server -> kubelet; anonymous access to the kubelet stays off)."""
        pki = self.root / "pki"
        pki.mkdir(parents=True, exist_ok=True)
        ca_key, ca = str(pki / "ca.key"), str(pki / "ca.crt")
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out", ca,
                 "-days", "30", "-subj", f"/CN=peregrine-{self.name}-kubelet-client-ca")
        key, csr, crt = str(pki / "apiserver-kubelet.key"), str(pki / "apiserver-kubelet.csr"), \
            str(pki / "apiserver-kubelet.crt")
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr,
                 "-subj", "/O=system:masters/CN=kube-apiserver-kubelet-client")
        _openssl("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-out", crt,
                 "-days", "30")

    def _save_sysctls(self) -> None:
        """The machine's values, kept once for all nodes in /run/peregrine: a second node starting
        while a first runs would otherwise save what the first one's kubelet set."""
        if SYSCTLS_SAVED.exists():
            self.sysctls = json.loads(SYSCTLS_SAVED.read_text())
            return
        self.sysctls = {k: Path("/proc/sys", k).read_text().strip() for k in SYSCTLS}
        SYSCTLS_SAVED.parent.mkdir(parents=True, exist_ok=True)
        SYSCTLS_SAVED.write_text(json.dumps(self.sysctls))

    def _restore_sysctls(self) -> None:
        """By the last node to stop: the others' kubelets still rely on the values."""
        if _other_running("kubelet") or not SYSCTLS_SAVED.exists():
            return
        for key, value in json.loads(SYSCTLS_SAVED.read_text()).items():
            with contextlib.suppress(OSError):
                Path("/proc/sys", key).write_text(value)
        SYSCTLS_SAVED.unlink(missing_ok=True)

    def _containerd_tmpfs(self) -> None:
        """containerd's root (image content and unpacked layers, ~0.5 GB with the project's image)
        on a tmpfs: this machine's disk is mounted with online discard, where deleting the
        unpacked image's files took 40 s; unmounting a tmpfs takes none, and the import is faster."""
        d = self.root / "containerd"
        d.mkdir(parents=True, exist_ok=True)
        if not os.path.ismount(d):
            done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4g,mode=0700", "tmpfs", str(d)],
                                  capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise KubeError(f"cannot mount a tmpfs for containerd at {d}: {done.stderr}")

    def _make_cgroup_root(self) -> None:
        # the kubelet requires its cgroupRoot to exist in every hierarchy; cpuset children start
        # empty and take no tasks until cpus and mems are set, so copy the parent's
        for mount in _cgroup_mounts():
            d = mount / self.cgroup_root.lstrip("/")
            d.mkdir(exist_ok=True)
            for f in ("cpuset.cpus", "cpuset.mems"):
                if (d / f).exists() and not (d / f).read_text().strip():
                    (d / f).write_text((mount / f).read_text())

    def _containerd_config(self) -> Path:
        ctr = self.root / "containerd"
        (self.root / "cni" / "net.d").mkdir(parents=True, exist_ok=True)
        cni = {
            "cniVersion": "1.0.0", "name": f"peregrine-{self.name}",
            "plugins": [{
                # a gateway on the bridge so the host (kubelet probes, tests) reaches pod IPs and pods
                # reach the host; no masquerade: there is nowhere further to go, and no iptables rules
                # are left behind
                "type": "bridge", "bridge": self.bridge, "isGateway": True, "ipMasq": False,
                "hairpinMode": True,
                "ipam": {"type": "host-local", "ranges": [[{"subnet": self.subnet}]],
                         "routes": [{"dst": "0.0.0.0/0"}], "dataDir": str(self.root / "cni" / "ipam")},
            }],
        }
        (self.root / "cni" / "net.d" / "10-peregrine.conflist").write_text(json.dumps(cni, indent=1))
        config = f"""\
version = 3
root = "{ctr / 'root'}"
state = "{self.run_dir / 'state'}"
disabled_plugins = ["io.containerd.nri.v1.nri", "io.containerd.snapshotter.v1.btrfs",
                    "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
                    "io.containerd.snapshotter.v1.erofs", "io.containerd.tracing.processor.v1.otlp",
                    "io.containerd.internal.v1.tracing"]

[grpc]
  address = "{self.containerd_socket}"

[ttrpc]
  address = "{self.run_dir / 'containerd.sock.ttrpc'}"

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = "{PAUSE_IMAGE}"

[plugins."io.containerd.cri.v1.runtime"]
  # root here lacks CAP_SYS_RESOURCE, so no process may lower its oom_score_adj below 0, and runc
  # fails to start a sandbox (-998) or a Guaranteed container (-997) with "failed to update
  # /proc/self/oom_score_adj: Permission denied". This clamps them to containerd's own score (0),
  # the setting made for containerd in user namespaces.
  restrict_oom_score_adj = true
  # the pods' network namespaces under our state directory, unmounted with it by close()
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.cri.v1.runtime".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
        BinaryName = "{shutil.which('runc')}"
        Root = "{self.run_dir / 'runc'}"
        # the cgroupfs driver: this machine's cgroup hierarchies are v1 mounts, not systemd's
        SystemdCgroup = false
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = ["{CNI_BIN}"]
    conf_dir = "{self.root / 'cni' / 'net.d'}"

[plugins."io.containerd.grpc.v1.cri"]
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
"""
        path = ctr / "config.toml"
        ctr.mkdir(parents=True, exist_ok=True)
        path.write_text(config)
        return path

    def _kubelet_config(self) -> Path:
        d = self.root / "kubelet"
        d.mkdir(parents=True, exist_ok=True)
        cfg = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
            # This machine mounts cgroup v1 controllers. Kubelet >= 1.35 refuses them unless told;
            # cgroup v1 is deprecated, not removed, and every kubelet feature the tests use works.
            "failCgroupV1": False,
            "cgroupDriver": "cgroupfs",
            "cgroupRoot": self.cgroup_root,
            "address": self.node_ip, "port": self.kubelet_port,
            "healthzBindAddress": "127.0.0.1", "healthzPort": self.kubelet_healthz_port,
            "readOnlyPort": 0,
            "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": False},
                               "x509": {"clientCAFile": str(self.root / "pki" / "ca.crt")}},
            # only the API server holds a certificate from that CA
            "authorization": {"mode": "AlwaysAllow"},
            "containerRuntimeEndpoint": f"unix://{self.containerd_socket}",
            "failSwapOn": False,
            # the kubelet's own score (default -999) cannot be set here either (no CAP_SYS_RESOURCE)
            "oomScoreAdj": 0,
            "podLogsDir": str(self.root / "pod-logs"),
            "volumePluginDir": str(self.root / "volume-plugins"),
            "resolvConf": "/etc/resolv.conf",
            # a shared test machine: its disk and memory are not this node's to police, and image
            # garbage collection would delete the imported images, which no registry can restore
            "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%",
                             "imagefs.available": "1%", "nodefs.inodesFree": "1%"},
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "serializeImagePulls": False,
            "rotateCertificates": False,
            "serverTLSBootstrap": False,
            # faster status after a pod starts, for the tests' wall time
            "nodeStatusUpdateFrequency": "4s",
            "syncFrequency": "10s",
        }
        path = d / "config.json"
        path.write_text(json.dumps(cfg, indent=1))
        return path

    # -- up --------------------------------------------------------------------------------------

    def up(self, images: Sequence[Path] = (), timeout: float = READY_TIMEOUT_S) -> None:
        """Start everything, import ``images`` (OCI archives) and wait until the node is Ready and
        the default service account exists (pods are refused until it does)."""
        t0 = time.monotonic()
        self._check()
        self.root.mkdir(parents=True, exist_ok=True)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.node_ip = self.node_ip or _route_src()
        self.subnet = self.subnet or _free_subnet(self.name)
        self._save_sysctls()
        self._containerd_tmpfs()
        self._pki()
        self.timings["keys"] = round(time.monotonic() - t0, 1)
        tokens = {uuid.uuid4().hex: (user, group) for user, group in (
            (f"system:node:{self.node_name}", "system:nodes"),
            ("system:kube-scheduler", ""), ("system:kube-controller-manager", ""), ("system:kube-proxy", ""))}
        pki = self.root / "pki"
        api = KubeApi(
            self.root / "api", users=tokens,
            # the Node authorizer gives the kubelet what its node's pods need, RBAC the rest
            authorization="Node,RBAC",
            address=self.node_ip, endpoint_reconciler="lease",
            # pods get service account tokens as anywhere else: the controller manager makes them
            disabled_admission="",
            extra_args=[
                f"--kubelet-client-certificate={pki / 'apiserver-kubelet.crt'}",
                f"--kubelet-client-key={pki / 'apiserver-kubelet.key'}",
                "--kubelet-preferred-address-types=InternalIP",
            ],
        )
        self.api = api
        api.prepare()
        # What does not depend on the API server starts beside it (node up in ~20 s rather than ~30 on
        # 2 busy cores): containerd, then the image imports; etcd, then the API server; then the
        # controllers and the kubelet; then wait for all of it.
        self._launch_containerd()
        api.start_etcd()
        self.timings["etcd"] = round(time.monotonic() - t0, 1)
        self.procs["etcd"] = api.etcd  # type: ignore[assignment]
        self._wait_containerd()
        self.timings["containerd"] = round(time.monotonic() - t0, 1)
        imports = self._start_imports([*self._pause(), *images])
        api.start()
        self.timings["kube-apiserver"] = round(time.monotonic() - t0, 1)
        self.procs["kube-apiserver"] = api.apiserver  # type: ignore[assignment]
        api.write_kubeconfig(api.kubeconfig, api.token, "peregrine-admin")
        kubeconfigs = {
            user: api.write_kubeconfig(self.root / f"{user.rsplit(':', 1)[-1]}.kubeconfig", t, user)
            for t, (user, _) in tokens.items()
        }
        self._start_controllers(kubeconfigs)
        self._start_proxy(kubeconfigs["system:kube-proxy"])
        self._make_cgroup_root()
        self._start_kubelet(kubeconfigs[f"system:node:{self.node_name}"])
        self.timings["kubelet started"] = round(time.monotonic() - t0, 1)
        self._wait_imports(imports)
        self.timings["images imported"] = round(time.monotonic() - t0, 1)
        self._wait_controllers()
        self.timings["controllers"] = round(time.monotonic() - t0, 1)
        self._wait_ready(timeout)
        self.timings["node Ready"] = round(time.monotonic() - t0, 1)
        self.started_s = time.monotonic() - t0

    def _start_controllers(self, kubeconfigs: Mapping[str, Path]) -> None:
        assert self.api is not None
        self.procs["kube-scheduler"] = launch("kube-scheduler", [
            binary("kube-scheduler"), f"--kubeconfig={kubeconfigs['system:kube-scheduler']}",
            "--leader-elect=false", "--bind-address=127.0.0.1", f"--secure-port={self.scheduler_port}",
            "--v=1",
        ], self.root / "kube-scheduler.log")
        self.procs["kube-controller-manager"] = launch("kube-controller-manager", [
            binary("kube-controller-manager"),
            f"--kubeconfig={kubeconfigs['system:kube-controller-manager']}",
            "--leader-elect=false", "--bind-address=127.0.0.1",
            f"--secure-port={self.controller_manager_port}",
            # each controller with its own service account, as kubeadm runs it (the controller
            # manager's own role does not cover e.g. the ReplicaSet controller's writes)
            "--use-service-account-credentials=true",
            f"--service-account-private-key-file={self.api.root / 'sa.key'}",
            f"--root-ca-file={self.api.ca}",  # published to every namespace as kube-root-ca.crt
            # it creates this directory; the default is under /usr/libexec
            f"--flex-volume-plugin-dir={self.root / 'volume-plugins'}",
            "--v=1",
        ], self.root / "kube-controller-manager.log")

    def _start_proxy(self, kubeconfig: Path) -> None:
        """kube-proxy (iptables mode) makes Service IPs work, `kubernetes.default` first: what every
        in-cluster client (k8s-meta) connects to. It is told to leave the machine's conntrack
        sysctls and route_localnet alone."""
        self.procs["kube-proxy"] = launch("kube-proxy", [
            binary("kube-proxy"), f"--kubeconfig={kubeconfig}", f"--hostname-override={self.node_name}",
            "--proxy-mode=iptables", f"--cluster-cidr={self.subnet}",
            f"--healthz-bind-address=127.0.0.1:{self.proxy_healthz_port}",
            f"--metrics-bind-address=127.0.0.1:{self.proxy_metrics_port}",
            "--iptables-localhost-nodeports=false",
            "--conntrack-max-per-core=0", "--conntrack-min=0", "--conntrack-tcp-timeout-established=0",
            "--conntrack-tcp-timeout-close-wait=0", "--conntrack-udp-timeout=0",
            "--conntrack-udp-timeout-stream=0", "--v=1",
        ], self.root / "kube-proxy.log")

    def _wait_controllers(self) -> None:
        wait_for(self.procs["kube-proxy"],
                 lambda: self._get(f"http://127.0.0.1:{self.proxy_healthz_port}/healthz") is not None)
        wait_for(self.procs["kube-scheduler"],
                 lambda: _https_ok(f"https://127.0.0.1:{self.scheduler_port}/healthz"))
        wait_for(self.procs["kube-controller-manager"],
                 lambda: _https_ok(f"https://127.0.0.1:{self.controller_manager_port}/healthz"))

    def _launch_containerd(self) -> None:
        config = self._containerd_config()
        ctr_dir = binary("containerd").resolve()
        # containerd finds its shim (containerd-shim-runc-v2) on PATH
        env = {**os.environ, "PATH": f"{ctr_dir}:{os.environ.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}"}
        self.procs["containerd"] = launch(
            "containerd", [ctr_dir / "containerd", "--config", config, "--log-level", "warn"],
            self.root / "containerd.log", env,
        )

    def _wait_containerd(self) -> None:
        wait_for(self.procs["containerd"], lambda: self.crictl("info", check=False).returncode == 0)

    def _pause(self) -> list[Path]:
        archive = self.root / "pause.oci.tar"
        _pause_archive(archive)
        return [archive]

    def _start_imports(self, archives: Sequence[Path]) -> list[tuple[Path, subprocess.Popen[bytes]]]:
        """OCI archives into containerd's k8s.io namespace (the CRI's), named by their ref.name:
        a full name is kept, a bare tag (scripts/image writes the version) becomes
        peregrine.local/peregrine:<tag>. Runs in the background; `_wait_imports` collects them."""
        started = []
        for archive in archives:
            # the pause archive names itself in full; a --base-name would filter it out
            base = [] if archive.name == "pause.oci.tar" else ["--base-name", PEREGRINE_IMAGE]
            log = (self.root / f"import-{archive.name}.log").open("wb")
            with log:
                proc = subprocess.Popen(
                    [str(binary("containerd/ctr")), "--address", str(self.containerd_socket), "-n", "k8s.io",
                     "images", "import", *base, str(archive)], stdout=log, stderr=subprocess.STDOUT,
                )
            started.append((archive, proc))
        return started

    def _wait_imports(self, started: Sequence[tuple[Path, subprocess.Popen[bytes]]]) -> None:
        for archive, proc in started:
            if proc.wait(timeout=300) != 0:
                log = (self.root / f"import-{archive.name}.log").read_text(errors="replace")
                raise KubeError(f"ctr images import {archive} failed:\n{log}")

    def import_images(self, archives: Sequence[Path]) -> None:
        """Import more OCI archives into the running node's containerd."""
        self._wait_imports(self._start_imports(archives))

    def _start_kubelet(self, kubeconfig: Path) -> None:
        config = self._kubelet_config()
        proc = self.procs["kubelet"] = launch("kubelet", [
            binary("kubelet"), f"--config={config}", f"--kubeconfig={kubeconfig}",
            f"--root-dir={self.root / 'kubelet'}", f"--hostname-override={self.node_name}",
            f"--node-ip={self.node_ip}", "--v=1",
            # its serving certificate; the default is /var/lib/kubelet/pki whatever --root-dir says
            f"--cert-dir={self.root / 'kubelet' / 'pki'}",
        ], self.root / "kubelet.log")
        wait_for(proc, lambda: self._get(f"http://127.0.0.1:{self.kubelet_healthz_port}/healthz") is not None)

    def _get(self, url: str) -> Any:
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                return r.read()
        except (urllib.error.URLError, OSError):
            return None

    def api_get(self, path: str) -> Any:
        """GET from the API server as the admin; None when it answers with an error."""
        assert self.api is not None
        ctx = ssl.create_default_context(cafile=str(self.api.ca))
        req = urllib.request.Request(f"{self.api.url}{path}",
                                     headers={"Authorization": f"Bearer {self.api.token}"})
        try:
            with urllib.request.urlopen(req, timeout=5, context=ctx) as r:
                return json.loads(r.read())
        except (urllib.error.URLError, OSError, ValueError):
            return None

    def ready(self) -> bool:
        node = self.api_get(f"/api/v1/nodes/{self.node_name}")
        if not node:
            return False
        conditions = {c["type"]: c["status"] for c in node.get("status", {}).get("conditions", [])}
        return (conditions.get("Ready") == "True"
                and self.api_get("/api/v1/namespaces/default/serviceaccounts/default") is not None
                and self.api_get("/api/v1/namespaces/default/configmaps/kube-root-ca.crt") is not None)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            dead = [p for p in self.procs.values() if not p.alive()]
            if dead:
                raise KubeError(f"{dead[0].name} exited; log {dead[0].log}:\n{dead[0].log_tail()}")
            if self.ready():
                return
            time.sleep(0.3)
        node = self.api_get(f"/api/v1/nodes/{self.node_name}")
        raise KubeError(f"node {self.node_name} not Ready in {timeout:.0f}s: "
                        f"{json.dumps((node or {}).get('status', {}).get('conditions'))}\n"
                        f"kubelet log {self.procs['kubelet'].log}:\n{self.procs['kubelet'].log_tail()}")

    def crictl(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [str(binary("crictl")), "--runtime-endpoint", f"unix://{self.containerd_socket}",
             "--image-endpoint", f"unix://{self.containerd_socket}", "--timeout", "20s", *args],
            capture_output=True, text=True, check=False, timeout=timeout,
        )
        if check and done.returncode != 0:
            raise KubeError(f"crictl {' '.join(args)} failed: {done.stderr}")
        return done

    def kubectl(self, *args: str, check: bool = True, timeout: float = 60,
                input: str | None = None) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [str(binary("kubectl")), f"--kubeconfig={self.kubeconfig}", *args],
            capture_output=True, text=True, check=False, timeout=timeout, input=input,
        )
        if check and done.returncode != 0:
            raise KubeError(f"kubectl {' '.join(args)} failed: {done.stderr}")
        return done

    # -- down ------------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop everything and leave nothing: processes, containers, mounts, cgroups, the bridge,
        the kernel settings the kubelet changed. Safe to call on a node that is partly up."""
        # controllers first, so nothing makes new pods; the kubelet next (it leaves its pods
        # running when it stops); then every sandbox through the CRI, which also runs CNI DEL
        order = ["kube-scheduler", "kube-controller-manager", "kube-proxy", "kubelet"]
        terminate([self.procs[n] for n in order if n in self.procs])
        containerd = self.procs.get("containerd")
        if containerd is not None and containerd.alive():
            self.crictl("rmp", "--all", "--force", check=False, timeout=120)
        terminate([p for p in (containerd,) if p is not None])
        self._kill_shims()
        # the API server before etcd: without etcd it retries until killed (30 s)
        for name in ("kube-apiserver", "etcd"):
            proc = self.procs.get(name)
            if proc is None and self.api is not None:  # started, not yet registered: up() failed
                proc = self.api.apiserver if name == "kube-apiserver" else self.api.etcd
            terminate([proc] if proc is not None else [])
        self._unmount()
        self._remove_cgroups()
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True, check=False)
        self._remove_container_log_links()
        self._remove_fixed_paths()
        self._remove_proxy_rules()
        self._remove_kubelet_rules()
        self._restore_sysctls()
        shutil.rmtree(self.run_dir, ignore_errors=True)
        with contextlib.suppress(OSError):  # shared by every node; the last one removes it
            self.run_dir.parent.rmdir()

    def _kill_shims(self) -> None:
        """A shim outlives containerd by design; ours are the ones started with our socket."""
        needle = str(self.containerd_socket).encode()
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                cmdline = (proc / "cmdline").read_bytes()
            except OSError:
                continue
            if b"containerd-shim" in cmdline and needle in cmdline:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(proc.name), signal.SIGKILL)

    def _unmount(self) -> None:
        prefixes = (str(self.root) + "/", str(self.run_dir) + "/")
        for _ in range(3):
            mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
            ours = sorted({m for m in mounts if m.startswith(prefixes)}, key=len, reverse=True)
            if not ours:
                return
            for m in ours:
                if subprocess.run(["umount", m], capture_output=True, check=False).returncode != 0:
                    subprocess.run(["umount", "-l", m], capture_output=True, check=False)

    def _remove_cgroups(self) -> None:
        for mount in _cgroup_mounts():
            top = mount / self.cgroup_root.lstrip("/")
            if not top.is_dir():
                continue
            for d in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts),
                            reverse=True) + [top]:
                for _ in range(50):
                    try:
                        d.rmdir()
                        break
                    except FileNotFoundError:
                        break
                    except OSError:
                        # only our containers' processes can be in our cgroups; none may remain
                        with contextlib.suppress(OSError, ValueError):
                            for pid in (d / "cgroup.procs").read_text().split():
                                os.kill(int(pid), signal.SIGKILL)
                        time.sleep(0.1)

    def _remove_fixed_paths(self) -> None:
        """What a kubelet and CNI make at fixed paths, whatever their directories are: the device
        plugin socket (/var/lib/kubelet/device-plugins/kubelet.sock, a constant) and libcni's
        result cache. Removed when no other kubelet runs on the machine."""
        if _other_running("kubelet"):
            return
        with contextlib.suppress(OSError):
            Path("/var/lib/kubelet/device-plugins/kubelet.sock").unlink()
        for d in ("/var/lib/kubelet/device-plugins", "/var/lib/kubelet", "/var/lib/cni/results",
                  "/var/lib/cni"):
            with contextlib.suppress(OSError):
                Path(d).rmdir()  # only if empty: a real kubelet's files are not ours

    def _remove_proxy_rules(self) -> None:
        """kube-proxy's iptables chains are the machine's, not the node's: removed (`kube-proxy
        --cleanup`) when no other node's kube-proxy runs. Two nodes at once share them, and each
        kube-proxy rewrites them whole: the second node's Services win."""
        if "kube-proxy" not in self.procs or _other_running("kube-proxy"):
            return
        subprocess.run([str(binary("kube-proxy")), "--cleanup"], capture_output=True, check=False, timeout=60)

    def _remove_kubelet_rules(self) -> None:
        """Every kubelet makes the same iptables chains, machine-wide, and never removes them: the
        KUBE-IPTABLES-HINT and KUBE-KUBELET-CANARY chains, and KUBE-FIREWALL, which drops packets
        to 127.0.0.0/8 from other sources, jumped to from INPUT and OUTPUT. Removed by the last node
        to stop, for IPv4 and IPv6."""
        if _other_running("kubelet"):
            return
        for tool in ("iptables", "ip6tables"):
            if shutil.which(tool) is None:
                continue
            steps = [["-t", "filter", "-D", "INPUT", "-j", "KUBE-FIREWALL"],
                     ["-t", "filter", "-D", "OUTPUT", "-j", "KUBE-FIREWALL"],
                     ["-t", "filter", "-F", "KUBE-FIREWALL"], ["-t", "filter", "-X", "KUBE-FIREWALL"],
                     ["-t", "mangle", "-X", "KUBE-IPTABLES-HINT"]]
            steps += [["-t", table, "-X", "KUBE-KUBELET-CANARY"] for table in ("mangle", "nat", "filter")]
            for step in steps:  # a chain or rule that is not there is fine
                subprocess.run([tool, "-w", *step], capture_output=True, check=False)

    def _remove_container_log_links(self) -> None:
        # the kubelet links every container's log into /var/log/containers (a fixed path)
        logs = str(self.root / "pod-logs")
        with contextlib.suppress(OSError):
            for link in Path("/var/log/containers").iterdir():
                with contextlib.suppress(OSError):
                    if link.is_symlink() and os.readlink(link).startswith(logs):
                        link.unlink()

    # -- state for `scripts/cluster` -------------------------------------------------------------

    _PORTS = ("kubelet_port", "kubelet_healthz_port", "scheduler_port", "controller_manager_port",
              "proxy_healthz_port", "proxy_metrics_port")

    def save(self) -> None:
        assert self.api is not None
        data = {
            "name": self.name, "node_ip": self.node_ip, "subnet": self.subnet,
            **{k: getattr(self, k) for k in self._PORTS},
            "api": {"port": self.api.port, "etcd_port": self.api.etcd_port,
                    "etcd_peer_port": self.api.etcd_peer_port, "token": self.api.token},
            "sysctls": self.sysctls, "procs": {n: p.state() for n, p in self.procs.items()},
            "kubeconfig": str(self.api.kubeconfig), "started_s": round(self.started_s, 1),
        }
        (self.root / STATE_FILE).write_text(json.dumps(data, indent=1))

    @classmethod
    def load(cls, root: Path) -> Node | None:
        try:
            data = json.loads((root / STATE_FILE).read_text())
        except (OSError, ValueError):
            return None
        a = data["api"]
        api = KubeApi(root / "api", etcd_port=a["etcd_port"], etcd_peer_port=a["etcd_peer_port"],
                      port=a["port"], token=a["token"], address=data["node_ip"])
        node = cls(data["name"], root, node_ip=data["node_ip"], subnet=data["subnet"], api=api,
                   procs={n: Proc(**p) for n, p in data["procs"].items()}, sysctls=data["sysctls"],
                   started_s=data["started_s"], **{k: data[k] for k in cls._PORTS})
        return node


@contextlib.contextmanager
def running(name: str, root: Path, images: Sequence[Path] = ()) -> Iterator[Node]:
    """A node for the duration of the block (the tests' session fixture)."""
    node = Node(name, root)
    try:
        node.up(images)
        yield node
    finally:
        node.close()


def latest_image_archive() -> Path | None:
    """The newest archive scripts/image wrote (the tests call scripts/image for HEAD's)."""
    archives = sorted((CACHE / "image").glob("peregrine-*.oci.tar"), key=lambda p: p.stat().st_mtime)
    return archives[-1] if archives else None


# --- `scripts/cluster up|down|status` ----------------------------------------------------------


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/cluster", description="a real single-node Kubernetes on this machine (root)")
    sub = parser.add_subparsers(dest="action", required=True)
    up = sub.add_parser("up", help="start it (keeps running after this command); no-op if it is up")
    up.add_argument("--image", type=Path, action="append", default=[],
                    help="OCI archive to import into containerd (default: the newest scripts/image archive)")
    for p in (up, sub.add_parser("down", help="stop it and remove what it made"), sub.add_parser("status")):
        p.add_argument("--dir", type=Path, default=DEFAULT_DIR,
                       help=f"its files and logs (default {DEFAULT_DIR})")
        p.add_argument("--name", default="dev",
                       help="node peregrine-NAME, cgroups under /peregrine-NAME (default dev)")
    args = parser.parse_args(argv)
    root: Path = args.dir.resolve()
    try:
        if args.action == "up":
            return _up(root, args.name, args.image)
        if args.action == "down":
            return _down(root)
        return _status(root)
    except KubeError as exc:
        print(f"scripts/cluster {args.action}: {exc}", file=sys.stderr)
        return 1


def _up(root: Path, name: str, images: list[Path]) -> int:
    current = Node.load(root)
    if current is not None:
        if all(p.alive() for p in current.procs.values()) and current.ready():
            print(f"already up: node {current.node_name}; export KUBECONFIG={current.kubeconfig}")
            return 0
        print("a previous cluster is partly up: stopping it first")
        current.close()
    if not images:
        latest = latest_image_archive()
        images = [latest] if latest else []
    shutil.rmtree(root, ignore_errors=True)
    node = Node(name, root)
    try:
        node.up(images)
        node.save()
    except BaseException:
        node.close()
        raise
    print(f"node {node.node_name} Ready in {node.started_s:.1f}s (pods on {node.subnet}, "
          f"cgroups under {node.cgroup_root}, images: {', '.join(map(str, images)) or 'pause only'})")
    print(f"export KUBECONFIG={node.kubeconfig}")
    print(f"crictl: {binary('crictl')} --runtime-endpoint unix://{node.containerd_socket} ps")
    print("stop it with `scripts/cluster down`")
    return 0


def _down(root: Path) -> int:
    node = Node.load(root)
    if node is None:
        print(f"no cluster state in {root}: nothing to stop")
        return 0
    node.close()
    (root / STATE_FILE).unlink(missing_ok=True)
    print(f"cluster {node.node_name} stopped; logs kept in {root}")
    return 0


def _status(root: Path) -> int:
    node = Node.load(root)
    if node is None:
        print("cluster is down")
        return 3
    dead = [n for n, p in node.procs.items() if not p.alive()]
    if dead:
        print(f"cluster is partly down: {', '.join(dead)} not running (run `scripts/cluster down`)")
        return 1
    print(f"cluster is up: node {node.node_name} {'Ready' if node.ready() else 'NOT Ready'}; "
          f"KUBECONFIG={node.kubeconfig}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

