"""Churn: pods created and deleted quickly while a worker-side table enriches their events.

The real API server and broker carry the metadata; a worker loop in this process feeds a
`K8sTable` from the topic and enriches each event once, when it reads it, as the detection worker
does, for events emitted while each pod existed (after its container id was reported, before its
deletion was requested). Every event whose container's record the table has received must be
enriched (deleted pods included: tombstones wait out their grace period), and every pod's record
must arrive. Reports the fraction enriched at first sight: an event read before its container's
record is evaluated without ``k8s.*`` fields, as in the worker.
"""

from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from enrichers.table import K8sTable
from rules.record import K_NS, K_POD_NAME, P_CONTAINER, P_CONTAINER_ID, PROCESS_LEN, Process

pytestmark = [pytest.mark.k8s, pytest.mark.kafka]

PODS = 40
ALIVE = 3  # pods alive at once; every fourth pod is deleted right after its events
EVENTS_PER_CONTAINER = 5
DRAIN_S = 60.0


Events = queue.Queue[tuple[Process, str] | None]  # (process record, its pod's name); None ends


def worker(
    bootstrap: str, topic: str, events: Events, outcomes: list[tuple[bool, bool]], table: K8sTable,
    failures: list[BaseException], caught_up: threading.Event, arrived: dict[str, float],
) -> None:
    """Feeds the table from the topic and enriches events once each; outcome per event: (enriched,
    its container's record had arrived). After the churn it keeps reading until every container's
    record has arrived."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"churn-{uuid.uuid4().hex}",
                         "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    seen: set[str] = set()  # container ids of the events read
    done = False
    deadline = float("inf")
    try:
        while not done or not seen <= arrived.keys():
            if time.monotonic() > deadline:
                raise AssertionError(f"records of {len(seen - arrived.keys())} containers still missing "
                                     f"{DRAIN_S}s after the churn ended")
            for msg in consumer.consume(500, timeout=0.05):
                if msg.error() is None and msg.key() is not None:
                    table.apply(msg.key(), msg.value())
                    arrived.setdefault(msg.key().decode(), time.monotonic())
            if table.ip_names:  # the services published before the churn have arrived
                caught_up.set()
            while True:
                try:
                    item = events.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    done, deadline = True, time.monotonic() + DRAIN_S
                    continue
                proc, pod = item
                seen.add(proc[P_CONTAINER_ID])
                had_record = proc[P_CONTAINER_ID] in arrived
                table.enrich([proc])
                c = proc[P_CONTAINER]
                outcomes.append((c is not None and c[K_POD_NAME] == pod and c[K_NS] is not None, had_record))
    except BaseException as e:
        failures.append(e)
    finally:
        consumer.close()


def test_churn_enriches_events_of_every_pod_that_existed(
    make_publisher: Callable[..., Any], pods: Any, namespace: str, kafka_bootstrap: str,
    record_property: Callable[[str, object], None],
) -> None:
    publisher = make_publisher(tombstone_grace_s=120.0)
    publisher.start()
    # the topic exists once the services are published (the `kubernetes` service always is)
    publisher.wait_until(lambda s: any(k.startswith(b"svc:") for k in s), "the kubernetes service published")

    table = K8sTable()
    events: Events = queue.Queue()
    outcomes: list[tuple[bool, bool]] = []
    failures: list[BaseException] = []
    caught_up = threading.Event()
    arrived: dict[str, float] = {}  # container id -> when the worker's table first had it
    reported: dict[str, float] = {}  # container id -> when its id was written to the pod's status
    t = threading.Thread(target=worker, args=(kafka_bootstrap, publisher.config.topic, events, outcomes,
                                              table, failures, caught_up, arrived), daemon=True)
    t.start()
    assert caught_up.wait(60), "the worker never read the topic"

    alive: list[tuple[str, str]] = []  # (pod name, container id)
    for n in range(PODS):
        name = f"churn-{n}"
        [cid] = pods.create(namespace, name, {"app": "churn"})
        reported[cid] = time.monotonic()
        alive.append((name, cid))
        # every container listed is running and its id reported: these events must enrich
        for pod_name, container_id in alive:
            for _ in range(EVENTS_PER_CONTAINER):
                events.put((_proc(container_id), pod_name))
        if n % 4 == 3:
            pods.delete(namespace, alive.pop()[0])
        while len(alive) > ALIVE:
            pods.delete(namespace, alive.pop(0)[0])
    for name, _ in alive:
        pods.delete(namespace, name)
    events.put(None)
    t.join(DRAIN_S + 30)
    publisher.stop()
    assert not t.is_alive() and not failures, failures

    enriched = sum(ok for ok, _ in outcomes)
    early = sum(not had_record for _, had_record in outcomes)
    fraction = enriched / len(outcomes)
    # reported, never asserted: from the status write to the worker's table, through k8s-meta and Kafka
    latency = sorted(arrived[c] - t for c, t in reported.items() if c in arrived)
    median, worst = latency[len(latency) // 2], latency[-1]
    report = {"events": len(outcomes), "enriched": enriched, "fraction": round(fraction, 4),
              "record_latency_s": {"median": round(median, 3), "max": round(worst, 3)},
              "read_before_their_record": early}
    print(f"\nchurn: {json.dumps(report)}")
    record_property("churn", report)
    assert all(ok for ok, had_record in outcomes if had_record), report
    assert reported.keys() <= arrived.keys(), report


def _proc(container_id: str) -> Process:
    p: Process = [None] * PROCESS_LEN
    p[P_CONTAINER_ID] = container_id
    return p
