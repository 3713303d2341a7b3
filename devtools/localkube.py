"""Real Kubernetes on this machine, for the tests and (next) `scripts/cluster`, from the binaries
that scripts/setup builds (scripts/setup.d/50-kube-apiserver.sh) and Debian's etcd.

`KubeApi` is etcd + kube-apiserver on loopback: the API server of the k8s tests
(tests/kube_apiserver.py), where nothing happens on its own. Moved here from the tests so that a
command can start the same processes, detached, as the fixture does as children.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from devtools.errors import DevtoolsError

CACHE = Path(os.environ.get("PEREGRINE_CACHE", Path.home() / ".cache" / "peregrine"))
APISERVER = CACHE / "kube-apiserver"
SERVICE_CIDR = "10.0.0.0/24"
READY_TIMEOUT_S = 120.0


class KubeError(DevtoolsError):
    """A component of the local cluster is missing, did not start, or did not become ready."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def binary(name: str) -> Path:
    path = CACHE / name
    if not path.exists():
        raise KubeError(f"no {name} at {path}: run ./scripts/setup")
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
        return {k: v for k, v in asdict(self).items() if k != "popen"}


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
    ``system:masters``; ``extra_args`` are appended to the API server's command line (a later flag
    wins), which is how `Node` turns on the Node authorizer, the ServiceAccount admission plugin
    and the client certificate for the kubelet."""

    root: Path
    etcd_port: int = field(default_factory=free_port)
    etcd_peer_port: int = field(default_factory=free_port)
    port: int = field(default_factory=free_port)
    token: str = field(default_factory=lambda: uuid.uuid4().hex)
    users: dict[str, tuple[str, str]] = field(default_factory=dict)
    extra_args: list[str] = field(default_factory=list)
    etcd: Proc | None = None
    apiserver: Proc | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

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
             "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", f"--secure-port={self.port}",
             f"--cert-dir={r / 'certs'}",
             f"--token-auth-file={r / 'tokens.csv'}",
             "--authorization-mode=RBAC", "--anonymous-auth=false",
             f"--service-account-key-file={r / 'sa.pub'}",
             f"--service-account-signing-key-file={r / 'sa.key'}",
             "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
             f"--service-cluster-ip-range={SERVICE_CIDR}",
             "--disable-admission-plugins=ServiceAccount",
             # loopback is no address to advertise in the kubernetes Endpoints; the Service still exists
             "--endpoint-reconciler-type=none",
             "--allow-privileged=true", "--profiling=false", "--v=1", *self.extra_args],
            r / f"kube-apiserver.{self.starts}.log",
        )
        wait_for(self.apiserver, self.ready)

    def stop(self) -> None:
        """Stop the API server (SIGTERM, then SIGKILL); etcd keeps its data."""
        terminate([p for p in (self.apiserver,) if p is not None])
        self.apiserver = None

    def close(self) -> None:
        self.stop()
        terminate([p for p in (self.etcd,) if p is not None])
        self.etcd = None

    def client(self) -> Any:
        from kubernetes import config as k8s_config

        return k8s_config.new_client_from_config(config_file=str(self.kubeconfig))  # type: ignore[no-untyped-call]

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


def serve_api(root: Path) -> KubeApi:
    """Prepare and start etcd and the API server in root, with the admin kubeconfig written."""
    if shutil.which("etcd") is None:
        raise KubeError("no etcd: run ./scripts/setup (etcd-server is in scripts/apt-packages.txt)")
    api = KubeApi(root)
    api.prepare()
    try:
        api.start_etcd()
        api.start()
    except BaseException:
        api.close()
        raise
    api.write_kubeconfig(api.kubeconfig, api.token, "peregrine-admin")
    return api
