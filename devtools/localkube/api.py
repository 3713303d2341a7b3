"""etcd + kube-apiserver on this machine: alone, the API server of the k8s tests; inside a `Node`,
its control plane."""

from __future__ import annotations

import base64
import json
import shutil
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from devtools.localkube.procs import (
    CACHE,
    KubeError,
    Proc,
    free_port,
    https_ok,
    launch,
    openssl,
    terminate,
    wait_for,
)

APISERVER = CACHE / "kube-apiserver"
SERVICE_CIDR = "10.0.0.0/24"


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
        openssl("genrsa", "-out", key, "2048")
        openssl("rsa", "-in", key, "-pubout", "-out", pub)
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
        return https_ok(f"{self.url}/readyz", self.token)


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
