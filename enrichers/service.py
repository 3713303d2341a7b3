"""`peregrine k8s-meta`: watch the Kubernetes API and keep `peregrine.k8s` equal to the cluster.

One per cluster (or one per node with ``--node``). Start-up: make sure the topic exists and is
compacted, read it back (what is already published), then list and watch pods and services in two
threads that hand their events to this loop through a bounded queue. The loop turns them into
records (`enrichers.records`), keeps only real changes (`enrichers.mirror`), produces them, and
produces tombstones whose grace period is over. A record Kafka refuses ends the run with an error:
the next start reads the topic back and repairs the difference.

Probes (`telemetry.health`): ready once the topic was read back and every watched resource was
listed and handed to the loop (the topic then holds the cluster as of start); live while the loop
beats, at least every tick while it waits for events.
"""

from __future__ import annotations

import argparse
import logging
import queue
import signal
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Final

from bus import connection as kafka_connection
from bus import topics
from bus.errors import ConnectionConfigError
from enrichers.config import K8sMetaConfig
from enrichers.errors import ConfigError, EnricherError, RecordError, TopicError
from enrichers.metrics import PublisherMetrics, publisher_metrics
from enrichers.mirror import Produce, TopicMirror, records_by_uid
from enrichers.records import (
    containers_from_pod,
    decode,
    encode,
    is_service_key,
    services_from_service,
)
from enrichers.topic import ensure_topic, producer, read_table
from enrichers.watch import Snapshot, WatchEvent, api_client, watchers
from telemetry.health import Health

log = logging.getLogger(__name__)

_QUEUE_SIZE: Final = 10_000
_TICK_S: Final = 0.2
# the loop beats every tick, or after each batch of records it produces: a minute of silence is wedged
_LOOP_SILENCE_S: Final = 60.0
_BATCH: Final = 500  # events handled between two tombstone checks
_JOIN_TIMEOUT_S: Final = 10.0
_FLUSH_TIMEOUT_S: Final = 30.0


def pod_records(pod: Mapping[str, Any]) -> dict[bytes, bytes]:
    return dict(encode(m) for m in containers_from_pod(pod))


def service_records(config: K8sMetaConfig) -> Callable[[Mapping[str, Any]], dict[bytes, bytes]]:
    return lambda svc: dict(encode(m) for m in services_from_service(svc, config.cluster_domain))


def _scope(resource: str, node: str | None) -> Callable[[bytes, bytes], bool]:
    """Which published keys a resource's watch answers for (see `TopicMirror.sync`)."""
    if resource == "services":
        return lambda key, _value: is_service_key(key)

    def pods(key: bytes, value: bytes) -> bool:
        if is_service_key(key):
            return False
        if node is None:
            return True
        try:
            meta = decode(key, value)
        except RecordError:
            return False  # a newer publisher's record: not ours to delete
        return getattr(meta, "node", None) == node

    return pods


class Publisher:
    """Turns watch events into produced records. Owned by the run loop's thread only."""

    def __init__(self, config: K8sMetaConfig, mirror: TopicMirror, send: Callable[[Produce], None]) -> None:
        self._mirror = mirror
        self._send = send
        self._to_records = {"pods": pod_records, "services": service_records(config)}
        self._scopes = {r: _scope(r, config.node) for r in self._to_records}

    def handle(self, event: WatchEvent, now: float) -> None:
        to_records = self._to_records[event.resource]
        if isinstance(event, Snapshot):
            snapshot = records_by_uid(event.objects, to_records)
            self._send(self._mirror.sync(event.resource, snapshot, self._scopes[event.resource], now))
            return
        uid = (event.obj.get("metadata") or {}).get("uid")
        if not isinstance(uid, str):
            return
        owner = (event.resource, uid)
        if event.type == "DELETED":
            self._mirror.remove(owner, now)
        else:
            self._send(self._mirror.replace(owner, to_records(event.obj), now))

    def tick(self, now: float) -> None:
        self._send(self._mirror.due(now))


def run(
    config: K8sMetaConfig,
    stop: threading.Event,
    clock: Callable[[], float] = time.monotonic,
    health: Health | None = None,
) -> None:
    """Publish until ``stop`` is set; raises EnricherError when it cannot go on."""
    health = health or Health()
    api = api_client(config)  # first: a bad kubeconfig should fail before any wait for Kafka
    try:
        _publish(config, api, stop, clock, health)
    finally:
        api.close()  # type: ignore[no-untyped-call]


def _publish(
    config: K8sMetaConfig, api: Any, stop: threading.Event, clock: Callable[[], float], health: Health
) -> None:
    events: queue.Queue[WatchEvent] = queue.Queue(maxsize=_QUEUE_SIZE)
    halted = threading.Event()

    def offer(event: WatchEvent) -> None:
        # Blocks a watcher while the loop is behind (backpressure), but never once the loop is gone.
        while not halted.is_set():
            try:
                events.put(event, timeout=_TICK_S)
                return
            except queue.Full:
                continue

    resource_watchers = watchers(api, offer, config)  # started below, once the topic is read back
    health.waiting("topic", "not read back yet")
    for w in resource_watchers:
        health.waiting(f"{w.resource} listed", "no list handled yet")
    health.started()
    ensure_topic(config)
    published = read_table(config.bootstrap_servers, config.topic, security=config.kafka)
    health.holds("topic")
    log.info("%s: %d live keys already published", config.topic, len(published))
    mirror = TopicMirror(published, config.tombstone_grace_s)
    instruments = publisher_metrics(resource_watchers, lambda: len(mirror.published))
    kafka = producer(config)
    failures: list[str] = []

    def delivered(err: Any, msg: Any) -> None:
        if err is not None:
            instruments.delivery_errors.add(1)
            failures.append(f"key {msg.key()!r}: {err}")

    def send(out: Produce) -> None:
        _produce(kafka, config.topic, out, delivered, instruments)

    publisher = Publisher(config, mirror, send)
    threads = [
        threading.Thread(target=w.run, name=f"k8s-watch-{w.resource}", daemon=True) for w in resource_watchers
    ]
    for t in threads:
        t.start()
    try:
        while not stop.is_set():
            health.beat("publish loop", _LOOP_SILENCE_S)
            now = clock()
            for event in _drain(events, _BATCH):
                publisher.handle(event, now)
                if isinstance(event, Snapshot):
                    health.holds(f"{event.resource} listed")
            publisher.tick(now)
            kafka.poll(0)
            if failures:
                raise TopicError(f"{config.topic}: {len(failures)} records undelivered, first {failures[0]}")
            dead = [t.name for t in threads if not t.is_alive()]
            if dead:
                raise EnricherError(f"watch threads ended unexpectedly: {', '.join(dead)}")
    finally:
        halted.set()
        for w in resource_watchers:
            w.stop()
        for t in threads:
            t.join(_JOIN_TIMEOUT_S)
        remaining = kafka.flush(_FLUSH_TIMEOUT_S)
        if remaining:
            log.error("%s: %d records still unsent at shutdown", config.topic, remaining)


def _drain(events: queue.Queue[WatchEvent], limit: int) -> list[WatchEvent]:
    """Up to ``limit`` queued events, waiting one tick for the first."""
    try:
        batch = [events.get(timeout=_TICK_S)]
    except queue.Empty:
        return []
    while len(batch) < limit:
        try:
            batch.append(events.get_nowait())
        except queue.Empty:
            break
    return batch


def _produce(
    kafka: Any, topic: str, out: Produce, delivered: Callable[[Any, Any], None], instruments: PublisherMetrics
) -> None:
    for key, value in out:
        while True:
            try:
                kafka.produce(topic, key=key, value=value, on_delivery=delivered)
                break
            except BufferError:
                kafka.poll(0.1)  # librdkafka's queue is full: let it drain, never drop a record
        (instruments.tombstones if value is None else instruments.records).add(1)


def parse_args(argv: list[str]) -> K8sMetaConfig:
    p = argparse.ArgumentParser(
        prog="peregrine k8s-meta",
        description="Publish pod, container and service metadata to the compacted topic peregrine.k8s.",
    )
    auth = p.add_mutually_exclusive_group()
    auth.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG or ~/.kube/config)")
    auth.add_argument("--in-cluster", action="store_true", help="use the pod's service account")
    p.add_argument("--context", help="kubeconfig context (default: the current one)")
    p.add_argument("--node", help="watch only the pods of this node (field selector spec.nodeName)")
    p.add_argument("--topic", default=topics.K8S.name)
    p.add_argument("--partitions", type=int, default=1, help="partitions if the topic is created")
    p.add_argument("--replication", type=int, default=1, help="replication factor if the topic is created")
    p.add_argument("--cluster-domain", default="cluster.local")
    p.add_argument(
        "--tombstone-grace", type=float, default=120.0, metavar="SECONDS",
        help="how long a deleted container still enriches late events (default 120)",
    )
    kafka_connection.add_arguments(p)
    a = p.parse_args(argv)
    try:
        connection = kafka_connection.from_args(a)
    except ConnectionConfigError as exc:
        raise ConfigError(str(exc)) from None
    return K8sMetaConfig(
        bootstrap_servers=connection.servers,
        kubeconfig=a.kubeconfig,
        in_cluster=a.in_cluster,
        context=a.context,
        node=a.node,
        topic=a.topic,
        topic_partitions=a.partitions,
        topic_replication=a.replication,
        cluster_domain=a.cluster_domain,
        tombstone_grace_s=a.tombstone_grace,
        kafka=connection.security,
    )


def main(argv: list[str], health: Health | None = None) -> int:
    """Entry point of ``peregrine k8s-meta``; returns the process exit code."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = parse_args(argv)
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda _sig, _frame: stop.set())
        run(config, stop, health=health)
    except EnricherError as e:
        log.error("%s", e)
        return 1
    return 0
