"""A real single-node Kubernetes for the tests in this directory (started once, stopped after the
last of them; tests/cluster is a package for that): etcd, kube-apiserver, kube-controller-manager,
kube-scheduler, containerd (runc), a kubelet and kube-proxy (devtools/localkube.py, which `scripts/cluster`
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

from devtools.localkube import KubeError, Node


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
