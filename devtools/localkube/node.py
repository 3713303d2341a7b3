"""One node: its own etcd and API server, kube-controller-manager, kube-scheduler, containerd
(runc), a kubelet and kube-proxy, so pods really run and reach Services (see the package's
docstring for what it is named after and what it shares with other nodes)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import ssl
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devtools.localkube import host, node_config
from devtools.localkube.api import KubeApi
from devtools.localkube.node_config import CNI_BIN
from devtools.localkube.pause import write_pause_archive
from devtools.localkube.procs import (
    READY_TIMEOUT_S,
    KubeError,
    Proc,
    binary,
    free_port,
    https_ok,
    launch,
    terminate,
    wait_for,
)

STATE_FILE = "peregrine-cluster.json"
PEREGRINE_IMAGE = "peregrine.local/peregrine"  # the tag is the version, scripts/image's ref.name


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

    # -- checks --------------------------------------------------------------------------

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

    # -- up --------------------------------------------------------------------------------------

    def up(self, images: Sequence[Path] = (), timeout: float = READY_TIMEOUT_S) -> None:
        """Start everything, import ``images`` (OCI archives) and wait until the node is Ready and
        the default service account exists (pods are refused until it does)."""
        t0 = time.monotonic()
        self._check()
        self.root.mkdir(parents=True, exist_ok=True)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.node_ip = self.node_ip or host.route_src()
        self.subnet = self.subnet or host.free_subnet(self.name)
        self.sysctls = host.save_sysctls()
        host.mount_tmpfs(self.root / "containerd")
        node_config.write_pki(self)
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
        host.make_cgroup_root(self.cgroup_root)
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
                 lambda: https_ok(f"https://127.0.0.1:{self.scheduler_port}/healthz"))
        wait_for(self.procs["kube-controller-manager"],
                 lambda: https_ok(f"https://127.0.0.1:{self.controller_manager_port}/healthz"))

    def _launch_containerd(self) -> None:
        config = node_config.write_containerd_config(self)
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
        write_pause_archive(archive)
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
        config = node_config.write_kubelet_config(self)
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
        host.kill_shims(self.containerd_socket)
        # the API server before etcd: without etcd it retries until killed (30 s)
        for name in ("kube-apiserver", "etcd"):
            proc = self.procs.get(name)
            if proc is None and self.api is not None:  # started, not yet registered: up() failed
                proc = self.api.apiserver if name == "kube-apiserver" else self.api.etcd
            terminate([proc] if proc is not None else [])
        host.unmount_under(self.root, self.run_dir)
        host.remove_cgroups(self.cgroup_root)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True, check=False)
        host.remove_container_log_links(self.root / "pod-logs")
        host.remove_fixed_paths()
        host.remove_proxy_rules("kube-proxy" in self.procs)
        host.remove_kubelet_rules()
        host.restore_sysctls()
        shutil.rmtree(self.run_dir, ignore_errors=True)
        with contextlib.suppress(OSError):  # shared by every node; the last one removes it
            self.run_dir.parent.rmdir()

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
