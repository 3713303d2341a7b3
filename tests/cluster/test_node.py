"""Pods really run on this machine: a kubelet and containerd made them, and Peregrine's container
identity holds on the cgroups they made (the point: until now it was tested only on cgroups the
tests created themselves).

One pod of the project's image runs `sleep` for the module. The checks: the node is Ready with the
runtime we built; the pod is Running; `kubectl exec` runs in it (API server -> kubelet -> CRI
streaming); the id `crictl ps` shows is the pod's ``containerID``; the container's process is in
cgroups whose paths `collectors.cgroups` parses into that id, both from /proc/PID/cgroup (cgroup v1
nodes) and from the cgroup2 inode the eBPF probe reports (`bpf_get_current_cgroup_id`); a
Deployment gets its pod through the controller manager and the scheduler; a pod reaches a listener
on the host (where Kafka stays), and the API server through the `kubernetes` Service (kube-proxy).
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from collectors.cgroups import (
    CgroupResolver,
    cgroup2_mount,
    container_id_v1,
    parse_container_id,
    parse_pod_uid,
)
from devtools.localkube.node import Node

pytestmark = [pytest.mark.kubelet, pytest.mark.root]


def get(node: Node, *args: str) -> Any:
    return json.loads(node.kubectl("get", "-o", "json", *args).stdout)


def wait_running(node: Node, namespace: str, selector: list[str], timeout: float = 90) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    pods: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        pods = get(node, "pods", "-n", namespace, *selector)["items"]
        if pods and pods[0]["status"].get("phase") == "Running":
            return pods[0]
        time.sleep(0.5)
    events = node.kubectl("get", "events", "-n", namespace, check=False).stdout
    raise AssertionError(f"no Running pod for {selector} in {timeout}s: {json.dumps(pods)[:2000]}\n{events}")


@pytest.fixture(scope="module")
def sleeper(kube_node: Node, image_ref: str) -> Iterator[dict[str, Any]]:
    """A pod of the project's image running `sleep`, as the kubelet reports it once Running."""
    name = f"sleeper-{uuid.uuid4().hex[:6]}"
    pod = {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
        "spec": {"containers": [{"name": "main", "image": image_ref, "imagePullPolicy": "Never",
                                 "command": ["sleep", "infinity"]}],
                 "terminationGracePeriodSeconds": 1},
    }
    kube_node.kubectl("apply", "-f", "-", input=json.dumps(pod))
    yield wait_running(kube_node, "default", [f"--field-selector=metadata.name={name}"])
    kube_node.kubectl("delete", "pod", name, "--wait=false", check=False)


def container_pid(node: Node, container_id: str) -> int:
    info = json.loads(node.crictl("inspect", container_id).stdout)
    return int(info["info"]["pid"])


def test_node_is_ready_with_our_runtime(kube_node: Node) -> None:
    status = get(kube_node, "node", kube_node.node_name)["status"]
    conditions = {c["type"]: c["status"] for c in status["conditions"]}
    assert conditions["Ready"] == "True", status["conditions"]
    info = status["nodeInfo"]
    assert info["kubeletVersion"] == "v1.37.2"
    assert info["containerRuntimeVersion"].startswith("containerd://2."), info
    assert {"type": "InternalIP", "address": kube_node.node_ip} in status["addresses"]


def test_pod_runs_and_exec_reaches_it(kube_node: Node, sleeper: dict[str, Any]) -> None:
    name = sleeper["metadata"]["name"]
    assert sleeper["spec"]["nodeName"] == kube_node.node_name  # placed by the scheduler
    whoami = kube_node.kubectl("exec", name, "--", "id", "-u").stdout.strip()
    assert whoami == "10001"  # the image's non-root user
    helped = kube_node.kubectl("exec", name, "--", "peregrine", "--help").stdout
    assert "usage: peregrine <command>" in helped


def test_crictl_container_id_is_the_pods_container_id(kube_node: Node, sleeper: dict[str, Any]) -> None:
    (status,) = sleeper["status"]["containerStatuses"]
    runtime, _, pod_cid = status["containerID"].partition("://")
    assert runtime == "containerd"
    listed = json.loads(kube_node.crictl("ps", "--name", "^main$", "-o", "json").stdout)["containers"]
    ours = [c for c in listed if c["labels"].get("io.kubernetes.pod.uid") == sleeper["metadata"]["uid"]]
    assert [c["id"] for c in ours] == [pod_cid]


def test_container_identity_from_kubelet_made_cgroups(kube_node: Node, sleeper: dict[str, Any]) -> None:
    cid = sleeper["status"]["containerStatuses"][0]["containerID"].partition("://")[2]
    uid = sleeper["metadata"]["uid"]
    pid = container_pid(kube_node, cid)
    lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    print("\n" + "\n".join(lines))
    # what a collector on a cgroup v1 node does with the live process
    assert container_id_v1(pid) == cid
    paths = {line.split(":", 2)[1]: line.split(":", 2)[2] for line in lines}
    # the kubelet's cgroupfs layout: <cgroupRoot>/kubepods/<qos>/pod<uid>/<container id>
    expected = f"{kube_node.cgroup_root}/kubepods/besteffort/pod{uid}/{cid}"
    assert paths["memory"] == expected
    assert parse_container_id(paths["memory"]) == cid and parse_pod_uid(paths["memory"]) == uid

    # What the eBPF probe reports is the cgroup2 id (the inode of the task's v2 directory). On this
    # hybrid machine runc also places the container in the v2 hierarchy, so the resolver the
    # collector uses finds the container from that id alone.
    mount = cgroup2_mount()
    assert mount is not None and "" in paths, lines
    inode = os.stat(f"{mount}{paths['']}").st_ino
    resolver = CgroupResolver(mount)
    try:
        assert resolver.container_id(inode) == cid
    finally:
        resolver.close()


def test_deployment_gets_a_pod_through_the_controllers(kube_node: Node, image_ref: str) -> None:
    name = f"deploy-{uuid.uuid4().hex[:6]}"
    labels = {"app": name}
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": "default"},
        "spec": {"replicas": 1, "selector": {"matchLabels": labels}, "template": {
            "metadata": {"labels": labels},
            "spec": {"containers": [{"name": "main", "image": image_ref, "imagePullPolicy": "Never",
                                     "command": ["sleep", "infinity"]}],
                     "terminationGracePeriodSeconds": 1}}},
    }
    kube_node.kubectl("apply", "-f", "-", input=json.dumps(deployment))
    try:
        pod = wait_running(kube_node, "default", ["-l", f"app={name}"])
        assert pod["metadata"]["ownerReferences"][0]["kind"] == "ReplicaSet"
        # the token the kubelet mounted came from the TokenRequest API, for the default account
        sa = "/var/run/secrets/kubernetes.io/serviceaccount"
        token = kube_node.kubectl("exec", pod["metadata"]["name"], "--", "cat", f"{sa}/token").stdout
        assert token.count(".") == 2
    finally:
        kube_node.kubectl("delete", "deployment", name, "--wait=false", check=False)


def test_pods_reach_a_service_on_the_host(kube_node: Node, sleeper: dict[str, Any]) -> None:
    """Kafka stays outside the cluster, on the host: a pod reaches a host listener on the node's
    address through the bridge's gateway (no masquerade needed; the address is the host's own)."""
    with socket.create_server((kube_node.node_ip, 0)) as server:
        port = server.getsockname()[1]
        server.settimeout(20)
        code = f"import socket; socket.create_connection(({kube_node.node_ip!r}, {port}), 10).sendall(b'hi')"
        pod = sleeper["metadata"]["name"]
        done = kube_node.kubectl("exec", pod, "--", "python3", "-c", code, check=False)
        assert done.returncode == 0, done.stderr
        conn, (peer, _) = server.accept()
        with conn:
            assert conn.recv(2) == b"hi"
    assert peer == sleeper["status"]["podIP"]  # from the pod's own address, not translated


def test_pods_reach_the_api_server_through_the_kubernetes_service(
    kube_node: Node, sleeper: dict[str, Any]
) -> None:
    """In-cluster clients (k8s-meta) use KUBERNETES_SERVICE_HOST, the `kubernetes` Service's IP,
    with the pod's service-account token: kube-proxy's rules take it to the API server."""
    sa = "/var/run/secrets/kubernetes.io/serviceaccount"
    code = (
        "import json, os, ssl, urllib.request as u; "
        f"ctx = ssl.create_default_context(cafile='{sa}/ca.crt'); "
        f"token = open('{sa}/token').read(); "
        "url = 'https://%s:%s/version' % (os.environ['KUBERNETES_SERVICE_HOST'], "
        "os.environ['KUBERNETES_SERVICE_PORT']); "
        "req = u.Request(url, headers={'Authorization': 'Bearer ' + token}); "
        "r = u.urlopen(req, context=ctx, timeout=10); "
        "print(os.environ['KUBERNETES_SERVICE_HOST'], json.load(r)['gitVersion'])"
    )
    done = kube_node.kubectl("exec", sleeper["metadata"]["name"], "--", "python3", "-c", code, check=False)
    assert done.returncode == 0, done.stderr
    host, version = done.stdout.split()
    assert host == "10.0.0.1" and version == "v1.37.2"
