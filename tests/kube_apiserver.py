"""A real Kubernetes API server for the k8s tests: etcd plus the kube-apiserver built by
scripts/setup.d/50-kube-apiserver.sh, on loopback with free ports, started once per session.

No controller-manager, scheduler or kubelet runs, so nothing happens on its own: tests create
namespaces, pods with ``spec.nodeName`` set, and then patch the pods' status through the status
subresource to give their containers the ids a kubelet would report. The ServiceAccount admission
plugin is off (no controller makes the ``default`` service accounts). Authentication is a static
token for an admin in ``system:masters``; authorization is RBAC, so the least-privilege test can
check what the k8s-meta role may and may not do.

The fixture can stop and restart the API server (etcd keeps running), and compact etcd, which is
how the tests force a watch to fall behind and get 410 Gone. Logs are kept when a test failed.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config

from benchmarks.processes import stop

CACHE = Path(os.environ.get("PEREGRINE_CACHE", Path.home() / ".cache" / "peregrine"))
APISERVER = CACHE / "kube-apiserver"
SERVICE_CIDR = "10.0.0.0/24"
READY_TIMEOUT_S = 120.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(proc: subprocess.Popen[bytes], probe: Any, what: str, log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}; log: {log}\n{log.read_text()[-3000:]}")
        if probe():
            return
        time.sleep(0.3)
    raise RuntimeError(f"{what} not ready in {READY_TIMEOUT_S}s; log: {log}")


@dataclass
class KubeApi:
    """The running etcd + kube-apiserver pair, and what a client needs to reach it."""

    root: Path
    etcd_port: int = field(default_factory=free_port)
    etcd_peer_port: int = field(default_factory=free_port)
    port: int = field(default_factory=free_port)
    token: str = field(default_factory=lambda: uuid.uuid4().hex)
    etcd: subprocess.Popen[bytes] | None = None
    apiserver: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def kubeconfig(self) -> Path:
        return self.root / "admin.kubeconfig"

    def start_etcd(self) -> None:
        log = self.root / "etcd.log"
        peer = f"http://127.0.0.1:{self.etcd_peer_port}"
        client = f"http://127.0.0.1:{self.etcd_port}"
        self.etcd = subprocess.Popen(
            ["etcd", "--name", "default", "--data-dir", str(self.root / "etcd"),
             "--listen-client-urls", client, "--advertise-client-urls", client,
             "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
             "--initial-cluster", f"default={peer}", "--log-level", "warn"],
            stdout=log.open("ab"), stderr=subprocess.STDOUT,
        )
        _wait(self.etcd, lambda: self._etcd_call("/v3/maintenance/status", {}) is not None, "etcd", log)

    def start(self) -> None:
        """Start (or restart) the API server against the same etcd, port and keys."""
        self.starts += 1
        log = self.root / f"kube-apiserver.{self.starts}.log"
        r = self.root
        self.apiserver = subprocess.Popen(
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
             "--allow-privileged=true", "--profiling=false", "--v=1"],
            stdout=log.open("ab"), stderr=subprocess.STDOUT,
        )
        _wait(self.apiserver, self._ready, "kube-apiserver", log)

    def stop(self) -> None:
        """Stop the API server (SIGTERM, then SIGKILL); etcd keeps its data."""
        stop([p for p in (self.apiserver,) if p is not None])
        self.apiserver = None

    def close(self) -> None:
        self.stop()
        stop([p for p in (self.etcd,) if p is not None])
        self.etcd = None

    def client(self) -> k8s_client.ApiClient:
        return k8s_config.new_client_from_config(config_file=str(self.kubeconfig))

    def write_kubeconfig(self, path: Path, token: str, user: str) -> Path:
        """A kubeconfig for this server that authenticates with a bearer token."""
        ca = self.root / "certs" / "apiserver.crt"
        path.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "test",
            "clusters": [{"name": "test", "cluster": {"server": self.url, "certificate-authority": str(ca)}}],
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
        assert status is not None, "etcd is not answering"
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

    def _ready(self) -> bool:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        req = urllib.request.Request(f"{self.url}/readyz", headers={"Authorization": f"Bearer {self.token}"})
        try:
            with urllib.request.urlopen(req, timeout=5, context=ctx) as resp:
                return bool(resp.status == 200)
        except (urllib.error.URLError, OSError):
            return False


def _prepare(root: Path, api: KubeApi) -> None:
    key, pub = str(root / "sa.key"), str(root / "sa.pub")
    subprocess.run(["openssl", "genrsa", "-out", key, "2048"], check=True, capture_output=True)
    subprocess.run(["openssl", "rsa", "-in", key, "-pubout", "-out", pub], check=True, capture_output=True)
    (root / "tokens.csv").write_text(f'{api.token},peregrine-admin,uid-admin,"system:masters"\n')


def serve(request: pytest.FixtureRequest) -> Iterator[KubeApi]:
    """Start etcd and the API server, hand the running pair out, stop both (the session
    fixture `kube_api` in tests/conftest.py)."""
    if not APISERVER.exists():
        pytest.fail(f"no kube-apiserver at {APISERVER}: run scripts/setup (setup.d/50-kube-apiserver.sh)")
    if shutil.which("etcd") is None:
        pytest.fail("no etcd: run scripts/setup (etcd-server is in scripts/apt-packages.txt)")
    root = Path(tempfile.mkdtemp(prefix="peregrine-kube-"))
    api = KubeApi(root)
    try:
        _prepare(root, api)
        api.start_etcd()
        api.start()
        api.write_kubeconfig(api.kubeconfig, api.token, "peregrine-admin")
        yield api
    finally:
        api.close()
        if getattr(request.session, "peregrine_failed", False):
            print(f"\nkube-apiserver and etcd logs kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


