"""A real single-node Kubernetes for the tests in this directory (started once, stopped after the
last of them; tests/cluster is a package for that): etcd, kube-apiserver, kube-controller-manager,
kube-scheduler, containerd (runc), a kubelet and kube-proxy (devtools/localkube/, which `scripts/cluster`
runs too), with the project's image (scripts/image, via `image_archive`) imported into containerd
as ``peregrine.local/peregrine:<version>``. Pods use it with ``imagePullPolicy: Never``.

The node has its own API server: the k8s tests' one (`kube_api`) holds made-up pods on made-up
nodes, which this node's controllers would garbage-collect. Everything the node made (processes,
containers, mounts, cgroups, the bridge, kernel settings) is removed at the end; its logs are kept
when a test failed.
"""

from __future__ import annotations

import json
import os
import shutil
import tarfile
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools import localkafka
from devtools.localkube.node import Node
from devtools.localkube.procs import KubeError

from .helm_release import (
    HELM,
    SLACK_PATH,
    SLACK_URL_ENV,
    UNINSTALL_TIMEOUT_S,
    VALUES,
    Receiver,
    Release,
    serve_rsyslog,
)


@pytest.fixture(scope="package")
def kube_node(request: pytest.FixtureRequest, image_archive: Path) -> Iterator[Node]:
    if os.geteuid() != 0:
        pytest.skip("a node needs root (containerd, runc, cgroups)")
    root = Path(tempfile.mkdtemp(prefix="peregrine-node-"))
    node = Node(f"t{uuid.uuid4().hex[:6]}", root)
    t0 = time.monotonic()
    try:
        node.up([image_archive])
    except KubeError as exc:
        node.close()
        pytest.fail(f"the node did not come up (files in {root}): {exc}")
    print(f"\nnode {node.node_name} Ready in {time.monotonic() - t0:.1f}s, image imported; seconds into "
          f"start-up: {node.timings} (files in {root})")
    try:
        yield node
    finally:
        node.close()
        if getattr(request.session, "peregrine_failed", False):
            print(f"\nnode logs kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def image_ref(image_archive: Path) -> str:
    """The project's image as containerd names it (scripts/image tags it with the version)."""
    with tarfile.open(image_archive) as tar:
        member = tar.extractfile(next(m for m in tar.getmembers() if m.name.lstrip("./") == "index.json"))
        assert member is not None
        tag = json.load(member)["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"]
    return f"peregrine.local/peregrine:{tag}"



# --- Peregrine installed by helm on the node (test_helm.py) ---------------------------------------


@pytest.fixture(scope="package")
def pod_kafka(request: pytest.FixtureRequest, kube_node: Node) -> Iterator[localkafka.Cluster]:
    """A broker of its own listening on the node's address: pods reach the host there (the session
    broker listens on 127.0.0.1, which is the pod's own loopback inside a pod)."""
    root = Path(tempfile.mkdtemp(prefix="peregrine-podkafka-"))
    cluster = localkafka.start(root, 1, host=kube_node.node_ip)
    yield cluster
    localkafka.kill(cluster)
    if not getattr(request.session, "peregrine_failed", False):
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="package")
def release(kube_node: Node, image_ref: str, pod_kafka: localkafka.Cluster) -> Iterator[Release]:
    """`helm install` once for every test here, with the Slack stand-in and a real rsyslogd on the
    node's address; `helm uninstall` at the end must leave no pod and no object of the release."""
    if not HELM.exists():
        pytest.fail(f"no helm at {HELM}: run scripts/setup (setup.d/60-helm.sh)")
    work = Path(tempfile.mkdtemp(prefix="peregrine-release-"))
    slack = Receiver("slack", host=kube_node.node_ip).start()
    syslog_dir = work / "rsyslog"
    syslog_dir.mkdir()
    syslog = serve_rsyslog(syslog_dir, kube_node.node_ip)
    rsyslog = next(syslog)
    namespace = f"peregrine-{uuid.uuid4().hex[:6]}"
    repository, _, tag = image_ref.rpartition(":")
    secret = "slack-webhook"
    runtime = {
        "image": {"repository": repository, "tag": tag},
        "kafka": {"bootstrapServers": pod_kafka.bootstrap},
        "sink": {"destinations": [
            # unpaced: Slack's 1 message/s would queue the test's alerts behind the host's own
            {"name": "slack", "type": "slack", "webhook_url_env": SLACK_URL_ENV, "pace": {"per_s": 0},
             "secretEnv": [{"name": SLACK_URL_ENV, "secretName": secret, "key": "url"}]},
            {"name": "siem-syslog", "type": "syslog", "host": kube_node.node_ip, "port": rsyslog.tcp_port,
             "format": "cef"},
        ]},
    }
    (work / "runtime.yaml").write_text(json.dumps(runtime))
    r = Release(kube_node, "pg", namespace, pod_kafka, slack, rsyslog, [VALUES, work / "runtime.yaml"])
    kube_node.kubectl("create", "namespace", namespace)
    kube_node.kubectl("create", "secret", "generic", secret, "-n", namespace,
                      f"--from-literal=url={slack.url}{SLACK_PATH}")
    t0 = time.monotonic()
    try:
        r.install()
        print(f"\nhelm install: every pod Ready after {time.monotonic() - t0:.1f}s")
        yield r
    finally:
        r.helm("uninstall", r.name, "--wait", "--timeout=120s")
        left = r.wait_no_pods(UNINSTALL_TIMEOUT_S)
        # anything else of the release's (workloads, services, config maps; the Secret is the test's)
        objects = kube_node.kubectl("get", "all,configmap,pdb,serviceaccount", "-n", namespace, "-o", "name",
                                    "-l", f"app.kubernetes.io/instance={r.name}").stdout.split()
        kube_node.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
        slack.stop()
        syslog.close()
        shutil.rmtree(work, ignore_errors=True)
        assert left == [], f"helm uninstall left pods running after {UNINSTALL_TIMEOUT_S}s: {left}"
        assert objects == [], f"helm uninstall left objects of the release: {objects}"
