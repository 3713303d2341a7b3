"""`peregrine.control` on the real broker: the worker's publisher (`streams.control`) writes a
ruleset's interest, and the collector's follower (`collectors.control`) hands on the union of
every worker process's current record: started after the workers, before them, through a narrower
reload, a rollout whose replicas run different rules, tombstones and garbage; and the group
leader's sweep (`streams.control_sweep`) of a worker that died without withdrawing its record,
against a real consumer group's members. Each test uses its own topic."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer
from opentelemetry.metrics import NoOpCounter
from opentelemetry.util.types import Attributes

import rules
from bus import topics
from bus.connection import KafkaConnection, parse_bootstrap
from collectors import control
from collectors.config import CollectorConfig
from collectors.metrics import ControlMetrics
from enrichers.topic import read_records
from rules.interest import FieldInterest, TypeInterest
from rules.interest_wire import encode, fit, key_of
from streams.control import InterestPublisher
from streams.control_sweep import Sweeper, client_id

pytestmark = pytest.mark.kafka

REPO = Path(__file__).resolve().parents[3]
Interest = Mapping[str, TypeInterest]
WAIT_S = 30.0


class Counted(NoOpCounter):
    """An OpenTelemetry counter that remembers what it was given."""

    def __init__(self) -> None:
        super().__init__("test")
        self.added: list[tuple[int | float, Attributes]] = []

    def add(self, amount: int | float, attributes: Attributes = None, *args: Any, **kwargs: Any) -> None:
        self.added.append((amount, attributes))


def _field(name: str, **kinds: frozenset[str]) -> FieldInterest:
    empty: frozenset[str] = frozenset()
    return FieldInterest(name, kinds.get("exact", empty), kinds.get("prefixes", empty),
                         kinds.get("suffixes", empty), kinds.get("contains", empty))  # fmt: skip


def opens(*prefixes: str) -> TypeInterest:
    return TypeInterest("openat", (_field("fd.name", prefixes=frozenset(prefixes)),))


FALLBACK: Interest = {"openat": TypeInterest("openat", ()), "execve": TypeInterest("execve", ())}
A: Interest = {"openat": opens("/etc/")}
B: Interest = {"openat": opens("/root/"), "execve": TypeInterest("execve", ())}
B_NARROWER: Interest = {"openat": opens("/root/")}


def shape(interest: Interest | None) -> dict[str, set[FieldInterest]] | None:
    return None if interest is None else {name: set(t.fields) for name, t in interest.items()}


@dataclass
class Seen:
    """What a follower handed on, in order; tests wait on it."""

    calls: list[Interest | None] = field(default_factory=list)
    changed: threading.Condition = field(default_factory=threading.Condition)

    def __call__(self, interest: Interest | None) -> None:
        with self.changed:
            self.calls.append(interest)
            self.changed.notify_all()

    def until(self, wanted: Interest | None) -> None:
        with self.changed:
            done = self.changed.wait_for(lambda: bool(self.calls) and shape(self.calls[-1]) == shape(wanted),
                                         WAIT_S)  # fmt: skip
        assert done, f"the follower handed on {[shape(c) for c in self.calls]}, never {shape(wanted)}"


@dataclass
class Control:
    connection: KafkaConnection
    topic: str
    followers: list[control.ControlFollower] = field(default_factory=list)
    rejected: Counted = field(default_factory=Counted)

    def follow(self, seen: Seen, fallback: Interest | None = FALLBACK) -> control.ControlFollower:
        metrics = ControlMetrics(updates=Counted(), rejected=self.rejected)
        follower = control.ControlFollower(self.connection, self.topic, fallback, seen, metrics).start()
        self.followers.append(follower)
        return follower

    def publisher(self, group: str, replica: str = "r0") -> InterestPublisher:
        return InterestPublisher(self.connection, self.topic, group, replica, Counted())

    def produce(self, records: list[tuple[bytes, bytes | None]]) -> None:
        producer = Producer({"bootstrap.servers": self.connection.servers})
        for key, value in records:
            producer.produce(self.topic, value, key, partition=0)
        assert producer.flush(30) == 0


@pytest.fixture
def ctl(kafka_bootstrap: str, unique_topic: Callable[[str], str]) -> Iterator[Control]:
    connection = KafkaConnection(parse_bootstrap(kafka_bootstrap))
    spec = topics.CONTROL.named(unique_topic("peregrine.control"))
    topics.declare(connection, [spec])
    c = Control(connection, spec.name)
    yield c
    for follower in c.followers:
        follower.stop()


def version_2(group: str, interest: Interest) -> bytes:
    """The record a worker from before replicas wrote: no replica, no fd_table, its digest the
    SHA-256 of that interest's canonical JSON."""
    body = json.loads(encode(group, "r", interest, 1).value)["interest"]
    for spec in body.values():
        del spec["fd_table"]
    digest = hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    return json.dumps({"v": 2, "group": group, "time_ns": 1, "digest": digest, "interest": body}).encode()


def publish(publisher: InterestPublisher, interest: Interest) -> None:
    assert asyncio.run(asyncio.wait_for(publisher.publish(interest), WAIT_S))


def test_a_follower_started_after_the_worker_gets_its_rules_interest(ctl: Control) -> None:
    ruleset = rules.load([REPO / "rules" / "data" / "peregrine_rules.yaml"])
    assert ruleset.interest, "Peregrine's rules name event types"
    published = Counted()
    publisher = InterestPublisher(ctl.connection, ctl.topic, "peregrine-worker", "worker-0-1", published)
    publish(publisher, ruleset.interest)
    publish(publisher, ruleset.interest)  # unchanged: nothing written
    assert published.added == [(1, {"outcome": "ok"})]
    assert len(read_records(ctl.connection.servers, ctl.topic)) == 1

    seen = Seen()
    follower = ctl.follow(seen)
    seen.until(fit(ruleset.interest))
    assert len(seen.calls) == 1 and follower.caught_up.is_set()


def test_groups_union_a_reload_narrows_and_tombstones_remove(ctl: Control) -> None:
    seen = Seen()
    follower = ctl.follow(seen)
    assert follower.caught_up.wait(WAIT_S)
    assert seen.calls == [] and follower.effective == FALLBACK  # no worker yet: the rules files' interest

    group_a, group_b = ctl.publisher("group-a"), ctl.publisher("group-b")
    publish(group_a, A)
    publish(group_b, B)
    seen.until(control.union([A, B]))
    publish(group_b, B_NARROWER)  # group-b's rules reloaded without the execve rule
    seen.until(control.union([A, B_NARROWER]))
    ctl.produce([(key_of("group-b", "r0"), None)])
    seen.until(A)
    asyncio.run(group_a.withdraw())  # a worker that stops withdraws its record
    assert group_a.digest is None
    seen.until(FALLBACK)  # no group left: back to the rules files' interest
    assert follower.rejected == 0


def test_garbage_is_counted_and_each_group_keeps_its_last_good_interest(ctl: Control) -> None:
    publish(ctl.publisher("group-a"), A)
    seen = Seen()
    follower = ctl.follow(seen)
    seen.until(A)
    good = key_of("group-a", "r0")
    ctl.produce([
        (good, b"\x93\x01\xff garbage"),
        (good, b'{"v": 1, "group": "group-a", "time_ns": "soon", "digest": "", "interest": {}}'),
        (good, b'{"v": 1, "interest": {"openat": {"fd.name": {"exact": [' + b'"x",' * 200_000 + b'"x"]}}}}'),
        (b"interest/", b"{}"),
        (b"interest/group-a/r0/x", b"{}"),
        (b"someone-else/x", b"not ours: not counted"),
    ])  # fmt: skip
    publish(ctl.publisher("group-c"), B)  # a good record after the garbage: it has been read once this is in
    seen.until(control.union([A, B]))
    assert follower.rejected == 5 and len(ctl.rejected.added) == 5
    assert shape(seen.calls[0]) == shape(A) and len(seen.calls) == 2  # never narrowed in between


def test_the_collectors_follow_announces_each_change(ctl: Control, caplog: pytest.LogCaptureFixture) -> None:
    """`collectors.control.follow`, as `peregrine collect` starts it: the config's topic and fallback,
    an `apply` callback (the kernel maps' at merge), then the log line."""
    applied = Seen()
    config = CollectorConfig(kafka=ctl.connection, control_topic=ctl.topic, interest=FALLBACK)
    caplog.set_level(logging.INFO, logger="peregrine.collector.control")
    follower = control.follow(config, applied)
    assert follower is not None
    ctl.followers.append(follower)
    assert control.follow(CollectorConfig(kafka=ctl.connection)) is None  # --no-follow-control
    publish(ctl.publisher("group-a"), A)
    applied.until(A)
    follower.stop()
    assert "capture interest changed: 1 event types (openat), 1 constrained fields, 1 values" in caplog.text


def test_a_rollout_widens_until_the_old_replica_withdraws(ctl: Control) -> None:
    """Replicas of one group with different rules (a rolling upgrade; a SIGHUP that reached one
    pod): the node keeps what either needs until the old one stops, whichever wrote last."""
    old, new = ctl.publisher("workers", "old-1"), ctl.publisher("workers", "new-1")
    publish(old, A)
    seen = Seen()
    ctl.follow(seen)
    seen.until(A)
    publish(new, B)
    seen.until(control.union([A, B]))  # the new replica's record did not replace the old one's
    publish(ctl.publisher("workers", "old-1"), A)  # the old one restarted in place (same pod, same key)
    assert asyncio.run(asyncio.wait_for(new.publish(B, again=True), WAIT_S))  # written again: nothing changes
    time.sleep(1)
    assert shape(seen.calls[-1]) == shape(control.union([A, B]))
    asyncio.run(old.withdraw())
    seen.until(B)
    assert asyncio.run(old.publish(A, again=True)) and old.digest is None  # stopped: it writes nothing more
    time.sleep(1)
    assert shape(seen.calls[-1]) == shape(B)


@pytest.fixture
def member(kafka_bootstrap: str, unique_topic: Callable[[str], str]) -> Iterator[Callable[[str, str], None]]:
    """Joins a consumer group as a worker replica would (its client id names it), until the test
    ends; every member joined so far is polled until each has its share of a 4-partition topic."""
    subscribed = unique_topic("members")
    topics.declare(KafkaConnection(parse_bootstrap(kafka_bootstrap)), [topics.TopicSpec(subscribed, 4)])
    consumers: list[Consumer] = []

    def join(group: str, replica: str) -> None:
        consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": group,
                             "client.id": client_id(replica), "session.timeout.ms": 6000})  # fmt: skip
        consumers.append(consumer)
        consumer.subscribe([subscribed])
        deadline = time.monotonic() + WAIT_S
        while sum(len(c.assignment()) for c in consumers) < 4 or not all(c.assignment() for c in consumers):
            assert time.monotonic() < deadline, "never assigned"
            for c in consumers:
                c.poll(0.1)

    yield join
    for c in consumers:
        c.close()


def test_the_leader_sweeps_the_records_of_workers_gone_from_its_group(
    ctl: Control, member: Callable[[str, str], None]
) -> None:
    publish(ctl.publisher("workers", "alive-1"), A)
    publish(ctl.publisher("workers", "dead-1"), B)  # killed outright: never withdrew it
    publish(ctl.publisher("others", "dead-2"), B_NARROWER)  # another group's: its own leader's to judge
    ctl.produce([(b"interest/workers", version_2("workers", B_NARROWER))])  # a worker from before replicas
    seen = Seen()
    ctl.follow(seen)
    seen.until(control.union([A, B, B_NARROWER]))

    sweeper = Sweeper(ctl.connection, ctl.topic, "workers", grace=1.0, is_leader=lambda: True)
    assert asyncio.run(sweeper.sweep()) == []  # no member at all: the group is not Stable, nothing goes
    member("workers", "alive-1")
    assert asyncio.run(sweeper.sweep()) == []  # missing since now: not yet for the grace
    time.sleep(1.2)
    swept = asyncio.run(sweeper.sweep())
    assert sorted(swept) == [b"interest/workers", key_of("workers", "dead-1")]
    seen.until(control.union([A, B_NARROWER]))  # alive-1's, and the other group's (dead-2 stays)
    assert asyncio.run(sweeper.sweep()) == [] and sweeper.absences.since == {}


def test_a_worker_back_in_its_group_is_not_swept(ctl: Control, member: Callable[[str, str], None]) -> None:
    publish(ctl.publisher("workers", "a-1"), A)
    publish(ctl.publisher("workers", "b-1"), B)
    member("workers", "a-1")
    sweeper = Sweeper(ctl.connection, ctl.topic, "workers", grace=1.0, is_leader=lambda: True)
    assert asyncio.run(sweeper.sweep()) == []  # b-1 missing from now
    member("workers", "b-1")  # back (a rebalance, a slow start) before the grace ran out
    time.sleep(1.2)
    assert asyncio.run(sweeper.sweep()) == []
    assert sweeper.absences.since == {}
