"""A real Kubernetes API server for the k8s tests: etcd plus the kube-apiserver built by
scripts/setup.d/50-kube-apiserver.sh, on loopback with free ports, started once per session.

No controller-manager, scheduler or kubelet runs, so nothing happens on its own: tests create
namespaces, pods with ``spec.nodeName`` set, and then patch the pods' status through the status
subresource to give their containers the ids a kubelet would report. The ServiceAccount admission
plugin is off (no controller makes the ``default`` service accounts). Authentication is a static
token for an admin in ``system:masters``; authorization is RBAC, so the least-privilege test can
check what the k8s-meta role may and may not do. (A whole node with a kubelet, for the tests that
need pods to really run, is tests/cluster's, with its own API server: its controllers would act on
the made-up pods here.)

The fixture can stop and restart the API server (etcd keeps running), and compact etcd, which is
how the tests force a watch to fall behind and get 410 Gone. Logs are kept when a test failed.
The processes are started by devtools.localkube, which `scripts/cluster` uses too.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config

from devtools.localkube import api as localkube_api
from devtools.localkube.api import APISERVER, SERVICE_CIDR, serve_api
from devtools.localkube.procs import KubeError, free_port

__all__ = ["APISERVER", "SERVICE_CIDR", "KubeApi", "free_port", "serve"]


class KubeApi(localkube_api.KubeApi):
    """devtools.localkube's pair, with a client of the Kubernetes library (which devtools, a
    runtime package, may not import)."""

    def client(self) -> k8s_client.ApiClient:
        return k8s_config.new_client_from_config(config_file=str(self.kubeconfig))


def serve(request: pytest.FixtureRequest) -> Iterator[KubeApi]:
    """Start etcd and the API server, hand the running pair out, stop both (the session
    fixture `kube_api` in tests/conftest.py)."""
    if not APISERVER.exists():
        pytest.fail(f"no kube-apiserver at {APISERVER}: run scripts/setup (setup.d/50-kube-apiserver.sh)")
    if shutil.which("etcd") is None:
        pytest.fail("no etcd: run scripts/setup (etcd-server is in scripts/apt-packages.txt)")
    root = Path(tempfile.mkdtemp(prefix="peregrine-kube-"))
    try:
        api = serve_api(root, KubeApi)
    except KubeError as exc:
        pytest.fail(str(exc))
    try:
        yield api
    finally:
        api.close()
        if getattr(request.session, "peregrine_failed", False):
            print(f"\nkube-apiserver and etcd logs kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
