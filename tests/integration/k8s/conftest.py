"""Fixtures of the k8s tests over the session's real Kubernetes API server (`kube_api`, defined
in tests/conftest.py from tests/kube_apiserver.py so the k8s and end-to-end tests share one):
an API client, a fresh namespace, pod helpers and a k8s-meta publisher.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kube_apiserver import KubeApi
from kubernetes import client as k8s_client

from enrichers.config import K8sMetaConfig
from enrichers.errors import TopicError
from enrichers.records import decode
from enrichers.service import run
from enrichers.topic import read_table

DEADLINE_S = 90.0  # how long a test waits for the topic to show a change
GRACE_S = 1.0  # tombstone grace in tests


@pytest.fixture
def core(kube_api: KubeApi) -> Iterator[k8s_client.CoreV1Api]:
    api = kube_api.client()
    yield k8s_client.CoreV1Api(api)
    api.close()


@pytest.fixture
def namespace(core: k8s_client.CoreV1Api) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"metadata": {"name": name}})
    yield name
    try:
        core.delete_namespace(name)
    except k8s_client.ApiException:
        pass


class Pods:
    """Creates pods the way a kubelet would leave them: bound to a node, containers with ids."""

    def __init__(self, core: k8s_client.CoreV1Api) -> None:
        self.core = core

    def create(
        self, ns: str, name: str, labels: dict[str, str], containers: int = 1, node: str = "node-a"
    ) -> list[str]:
        """Create a running pod; returns its container ids (64 hex, as the collector reports them)."""
        names = [f"c{i}" for i in range(containers)]
        # _preload_content=False: the client's model parsing of the answer costs more CPU (and GIL,
        # shared with the publisher and the worker in this process) than the request itself.
        _finish(self.core.create_namespaced_pod(ns, {
            "metadata": {"name": name, "labels": labels},
            "spec": {"nodeName": node, "containers": [{"name": n, "image": "nginx:1.25"} for n in names]},
        }, _preload_content=False))
        ids = [uuid.uuid4().hex + uuid.uuid4().hex for _ in names]
        ip = f"10.1.{len(name) % 250}.{(hash(name) % 250) + 1}"
        _finish(self.core.patch_namespaced_pod_status(name, ns, {"status": {
            "phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
            "containerStatuses": [
                {"name": n, "ready": True, "started": True, "restartCount": 0,
                 "image": "docker.io/library/nginx:1.25",
                 "imageID": "docker.io/library/nginx@sha256:" + "ab" * 32,
                 "containerID": f"containerd://{cid}",
                 "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}}}
                for n, cid in zip(names, ids, strict=True)
            ],
        }}, _preload_content=False))
        return ids

    def relabel(self, ns: str, name: str, labels: dict[str, str]) -> None:
        self.core.patch_namespaced_pod(name, ns, {"metadata": {"labels": labels}})

    def delete(self, ns: str, name: str) -> None:
        # No kubelet confirms the containers stopped, so a graceful delete would wait forever.
        _finish(self.core.delete_namespaced_pod(name, ns, grace_period_seconds=0, _preload_content=False))


def _finish(answer: Any) -> None:
    """Read an unparsed answer to its end before the connection goes back to the pool: released
    with its body unread, the connection's next request would read this body as its status line
    (seen as BadStatusLine on the request after a pod create)."""
    answer.read()
    answer.release_conn()


@pytest.fixture
def pods(core: k8s_client.CoreV1Api) -> Pods:
    return Pods(core)


State = dict[bytes, Any]


class Publisher:
    """`enrichers.service.run` in a thread, stoppable and restartable like the real process."""

    def __init__(self, config: K8sMetaConfig) -> None:
        self.config = config
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="k8s-meta", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            run(self.config, self._stop)
        except BaseException as e:  # surfaced by the test through `errors`
            self.errors.append(e)

    def stop(self) -> None:
        """Stop like SIGTERM would, and fail the test if the publisher failed or hung."""
        self.halt()
        assert self._thread is None or not self._thread.is_alive(), "k8s-meta did not stop"
        assert not self.errors, f"k8s-meta failed: {self.errors!r}"

    def halt(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(60)

    def state(self) -> dict[bytes, Any]:
        raw = read_table(self.config.bootstrap_servers, self.config.topic)
        return {k: decode(k, v) for k, v in raw.items()}

    def wait_until(self, check: Callable[[State], bool], what: str) -> State:
        """Poll the topic until ``check(state)`` holds, for at most DEADLINE_S."""
        deadline = time.monotonic() + DEADLINE_S
        state: State = {}
        while time.monotonic() < deadline:
            assert not self.errors, f"k8s-meta failed: {self.errors!r}"
            try:
                state = self.state()
            except TopicError:  # not created yet
                state = {}
            if check(state):
                return state
            time.sleep(0.25)
        pytest.fail(f"not reached within {DEADLINE_S}s: {what}; topic holds {sorted(state)}")


@pytest.fixture
def make_publisher(
    kube_api: Any, kafka_bootstrap: str, unique_topic: Callable[[str], str]
) -> Iterator[Callable[..., Publisher]]:
    made: list[Publisher] = []

    def make(**overrides: Any) -> Publisher:
        settings: dict[str, Any] = {
            "bootstrap_servers": kafka_bootstrap,
            "kubeconfig": str(kube_api.kubeconfig),
            "topic": unique_topic("peregrine.k8s"),
            "tombstone_grace_s": GRACE_S,
            "backoff_initial_s": 0.2,
            "backoff_max_s": 5.0,
            **overrides,
        }
        p = Publisher(K8sMetaConfig(**settings))
        made.append(p)
        return p

    yield make
    for p in made:
        p.halt()
