"""List-then-watch of one Kubernetes resource, the way client-go's reflector does it.

`ResourceWatcher.run` lists the resource (paginated), hands the whole snapshot to ``emit``, then
watches from the list's resourceVersion with bookmarks on, handing each ADDED/MODIFIED/DELETED
object to ``emit``. When a watch request ends (server timeout, dropped connection) it resumes from
the last resourceVersion it saw (an event's or a bookmark's), so nothing is missed and nothing is
replayed. When the API server says that version is gone (410, after etcd compaction or a restart
of the API server), it lists again: the new snapshot replaces the old one, which is how deletions
that happened in the gap are noticed. Errors back off exponentially with full jitter.

Objects are the API server's JSON as dicts, never client model objects: the watch stream is read
line by line and parsed once. This is the only module that imports the kubernetes client.
"""

from __future__ import annotations

import json
import logging
import random
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final

import urllib3
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

from enrichers.config import K8sMetaConfig
from enrichers.errors import ConfigError

log = logging.getLogger(__name__)

GONE: Final = 410
_CONNECT_TIMEOUT_S: Final = 10.0


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Every object of a resource as of ``resource_version``: replaces what was known before."""

    resource: str
    objects: list[dict[str, Any]]
    resource_version: str


@dataclass(frozen=True, slots=True)
class Change:
    """One watch event: ``type`` is ADDED, MODIFIED or DELETED."""

    resource: str
    type: str
    obj: dict[str, Any]


WatchEvent = Snapshot | Change
ListFunction = Callable[..., Any]


@dataclass(slots=True)
class WatchCounters:
    """What happened so far, for metrics and for tests that must see a relist happen."""

    lists: int = 0
    relists_gone: int = 0
    reconnects: int = 0
    events: int = 0
    bookmarks: int = 0


class Backoff:
    """Exponential backoff with full jitter: the n-th wait is uniform in [0, min(max, initial*2^n)]."""

    def __init__(self, initial_s: float, max_s: float, rng: random.Random) -> None:
        self._initial, self._max, self._rng = initial_s, max_s, rng
        self._attempt = 0

    def reset(self) -> None:
        self._attempt = 0

    def next(self) -> float:
        ceiling = min(self._max, self._initial * (2**self._attempt))
        self._attempt = min(self._attempt + 1, 32)
        return self._rng.uniform(0.0, ceiling)


class ResourceWatcher:
    """Keeps one resource (pods, services) mirrored into ``emit`` until `stop` is called.

    ``list_fn`` is a cluster-wide list method of the kubernetes client, e.g.
    ``CoreV1Api.list_pod_for_all_namespaces``. Runs in its own thread; `stop` may be called from
    any thread and interrupts a blocked watch read.
    """

    def __init__(
        self,
        resource: str,
        list_fn: ListFunction,
        emit: Callable[[WatchEvent], None],
        config: K8sMetaConfig,
        field_selector: str | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.resource = resource
        self.counters = WatchCounters()
        self._list_fn = list_fn
        self._emit = emit
        self._config = config
        self._field_selector = field_selector
        self._backoff = Backoff(config.backoff_initial_s, config.backoff_max_s, rng or random.Random())
        self._stopped = threading.Event()
        self._response: Any = None
        self._lock = threading.Lock()

    def stop(self) -> None:
        self._stopped.set()
        with self._lock:
            response = self._response
        if response is not None:
            _shutdown(response)

    def run(self) -> None:
        version: str | None = None
        while not self._stopped.is_set():
            try:
                if version is None:
                    version = self._list()
                    self._backoff.reset()
                version, progressed = self._watch(version)
                if progressed:
                    self._backoff.reset()
                    continue
            except ApiException as e:
                if e.status == GONE:
                    self.counters.relists_gone += 1
                    log.info("%s: resourceVersion %s is gone (410); listing again", self.resource, version)
                    version = None
                    continue
                log.warning("%s: API error %s %s; retrying", self.resource, e.status, e.reason)
            except (urllib3.exceptions.HTTPError, OSError, ValueError) as e:
                if self._stopped.is_set():
                    break
                log.warning("%s: connection failed (%s); retrying", self.resource, e)
            # A watch that ended at once with nothing in it, or an error: wait before asking again.
            self.counters.reconnects += 1
            self._stopped.wait(self._backoff.next())

    def _list(self) -> str:
        objects: list[dict[str, Any]] = []
        token: str | None = None
        version = ""
        while True:
            kwargs: dict[str, Any] = {"limit": self._config.list_page_size}
            if token:
                kwargs["_continue"] = token
            page = self._call(kwargs, self._config.watch_timeout_s)
            try:
                body = json.loads(page.data)
            finally:
                page.release_conn()
            meta = body.get("metadata") or {}
            # Every page of one paginated list is served from the same snapshot: its version.
            version = version or meta.get("resourceVersion", "")
            objects.extend(body.get("items") or ())
            token = meta.get("continue")
            if not token:
                break
        self.counters.lists += 1
        log.info("%s: listed %d objects at resourceVersion %s", self.resource, len(objects), version)
        self._emit(Snapshot(self.resource, objects, version))
        return version

    def _watch(self, version: str) -> tuple[str, bool]:
        """Follow one watch request; returns the last version seen and whether anything came."""
        response = self._call(
            {
                "watch": True,
                "resource_version": version,
                "allow_watch_bookmarks": True,
                "timeout_seconds": self._config.watch_timeout_s,
            },
            self._config.watch_timeout_s + 30,
        )
        with self._lock:
            self._response = response
        progressed = False
        try:
            if self._stopped.is_set():
                return version, False
            for event in _events(response):
                kind = event.get("type")
                obj = event.get("object") or {}
                if kind == "ERROR":
                    raise ApiException(status=obj.get("code", 0), reason=obj.get("message", ""))
                progressed = True
                version = (obj.get("metadata") or {}).get("resourceVersion") or version
                if kind == "BOOKMARK":
                    self.counters.bookmarks += 1
                    continue
                self.counters.events += 1
                self._emit(Change(self.resource, kind or "", obj))
        finally:
            with self._lock:
                self._response = None
            response.release_conn()
        return version, progressed

    def _call(self, kwargs: dict[str, Any], read_timeout_s: float) -> Any:
        if self._field_selector:
            kwargs["field_selector"] = self._field_selector
        return self._list_fn(
            _preload_content=False, _request_timeout=(_CONNECT_TIMEOUT_S, read_timeout_s), **kwargs
        )


def _events(response: Any) -> Iterator[dict[str, Any]]:
    """Watch events, one JSON document per line, as the chunks of the stream deliver them."""
    pending = b""
    for chunk in response.stream(amt=None, decode_content=False):
        lines = (pending + chunk).split(b"\n")
        pending = lines.pop()
        for line in lines:
            if line.strip():
                event = json.loads(line)
                if isinstance(event, dict):
                    yield event


def _shutdown(response: Any) -> None:
    # Closing a response another thread is reading from does not wake it; shutting the socket does.
    sock = getattr(getattr(response, "connection", None), "sock", None)
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def api_client(config: K8sMetaConfig) -> k8s_client.ApiClient:
    """A client authenticated from the pod's service account (in-cluster) or a kubeconfig."""
    try:
        if config.in_cluster:
            conf = k8s_client.Configuration()
            k8s_config.load_incluster_config(client_configuration=conf)  # type: ignore[no-untyped-call]
            return k8s_client.ApiClient(conf)
        api: k8s_client.ApiClient = k8s_config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=config.kubeconfig, context=config.context
        )
        return api
    except k8s_config.ConfigException as e:
        source = "in-cluster service account" if config.in_cluster else (config.kubeconfig or "kubeconfig")
        raise ConfigError(f"{source}: {e}") from None


def watchers(
    api: k8s_client.ApiClient, emit: Callable[[WatchEvent], None], config: K8sMetaConfig
) -> list[ResourceWatcher]:
    """The watchers k8s-meta runs: pods (on one node if configured) and services."""
    core = k8s_client.CoreV1Api(api)
    node_selector = f"spec.nodeName={config.node}" if config.node else None
    return [
        ResourceWatcher("pods", core.list_pod_for_all_namespaces, emit, config, node_selector),
        ResourceWatcher("services", core.list_service_for_all_namespaces, emit, config),
    ]
