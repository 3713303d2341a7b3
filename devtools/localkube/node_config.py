"""What a node writes before its daemons start: the kubelet client CA and the API server's client
certificate, the CNI network, containerd's configuration and the kubelet's."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from devtools.localkube.pause import PAUSE_IMAGE
from devtools.localkube.procs import openssl

if TYPE_CHECKING:
    from devtools.localkube.node import Node

CNI_BIN = Path("/usr/lib/cni")  # Debian's containernetworking-plugins


def write_pki(node: Node) -> None:
    """A CA the kubelet trusts for client certificates, and the API server's certificate from it
    (kubectl exec and logs go API server -> kubelet; anonymous access to the kubelet stays off)."""
    pki = node.root / "pki"
    pki.mkdir(parents=True, exist_ok=True)
    ca_key, ca = str(pki / "ca.key"), str(pki / "ca.crt")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out", ca,
             "-days", "30", "-subj", f"/CN=peregrine-{node.name}-kubelet-client-ca")
    key, csr, crt = str(pki / "apiserver-kubelet.key"), str(pki / "apiserver-kubelet.csr"), \
        str(pki / "apiserver-kubelet.crt")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr,
             "-subj", "/O=system:masters/CN=kube-apiserver-kubelet-client")
    openssl("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-out", crt,
             "-days", "30")


def write_containerd_config(node: Node) -> Path:
    ctr = node.root / "containerd"
    (node.root / "cni" / "net.d").mkdir(parents=True, exist_ok=True)
    cni = {
        "cniVersion": "1.0.0", "name": f"peregrine-{node.name}",
        "plugins": [{
            # a gateway on the bridge so the host (kubelet probes, tests) reaches pod IPs and pods
            # reach the host; no masquerade: there is nowhere further to go, and no iptables rules
            # are left behind
            "type": "bridge", "bridge": node.bridge, "isGateway": True, "ipMasq": False,
            "hairpinMode": True,
            "ipam": {"type": "host-local", "ranges": [[{"subnet": node.subnet}]],
                     "routes": [{"dst": "0.0.0.0/0"}], "dataDir": str(node.root / "cni" / "ipam")},
        }],
    }
    (node.root / "cni" / "net.d" / "10-peregrine.conflist").write_text(json.dumps(cni, indent=1))
    config = f"""\
version = 3
root = "{ctr / 'root'}"
state = "{node.run_dir / 'state'}"
disabled_plugins = ["io.containerd.nri.v1.nri", "io.containerd.snapshotter.v1.btrfs",
                    "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
                    "io.containerd.snapshotter.v1.erofs", "io.containerd.tracing.processor.v1.otlp",
                    "io.containerd.internal.v1.tracing"]

[grpc]
  address = "{node.containerd_socket}"

[ttrpc]
  address = "{node.run_dir / 'containerd.sock.ttrpc'}"

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
        Root = "{node.run_dir / 'runc'}"
        # the cgroupfs driver: this machine's cgroup hierarchies are v1 mounts, not systemd's
        SystemdCgroup = false
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = ["{CNI_BIN}"]
    conf_dir = "{node.root / 'cni' / 'net.d'}"

[plugins."io.containerd.grpc.v1.cri"]
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
"""
    path = ctr / "config.toml"
    ctr.mkdir(parents=True, exist_ok=True)
    path.write_text(config)
    return path


def write_kubelet_config(node: Node) -> Path:
    d = node.root / "kubelet"
    d.mkdir(parents=True, exist_ok=True)
    cfg = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
        # This machine mounts cgroup v1 controllers. Kubelet >= 1.35 refuses them unless told;
        # cgroup v1 is deprecated, not removed, and every kubelet feature the tests use works.
        "failCgroupV1": False,
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": node.cgroup_root,
        "address": node.node_ip, "port": node.kubelet_port,
        "healthzBindAddress": "127.0.0.1", "healthzPort": node.kubelet_healthz_port,
        "readOnlyPort": 0,
        "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": False},
                           "x509": {"clientCAFile": str(node.root / "pki" / "ca.crt")}},
        # only the API server holds a certificate from that CA
        "authorization": {"mode": "AlwaysAllow"},
        "containerRuntimeEndpoint": f"unix://{node.containerd_socket}",
        "failSwapOn": False,
        # the kubelet's own score (default -999) cannot be set here either (no CAP_SYS_RESOURCE)
        "oomScoreAdj": 0,
        "podLogsDir": str(node.root / "pod-logs"),
        "volumePluginDir": str(node.root / "volume-plugins"),
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
