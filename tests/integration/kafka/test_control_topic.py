"""`peregrine.control` on the real broker: the worker's publisher (`streams.control`) writes a
ruleset's interest, and the collector's follower (`collectors.control`) hands on the union of
every worker group's latest record: started after the workers, before them, through a narrower
reload, tombstones and garbage. Each test uses its own topic."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
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
from rules.interest_wire import fit, key_of
from streams.control import InterestPublisher

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

    def publisher(self, group: str) -> InterestPublisher:
        return InterestPublisher(self.connection, self.topic, group, Counted())

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


def publish(publisher: InterestPublisher, interest: Interest) -> None:
    assert asyncio.run(asyncio.wait_for(publisher.publish(interest), WAIT_S))


def test_a_follower_started_after_the_worker_gets_its_rules_interest(ctl: Control) -> None:
    ruleset = rules.load([REPO / "rules" / "data" / "peregrine_rules.yaml"])
    assert ruleset.interest, "Peregrine's rules name event types"
    published = Counted()
    publisher = InterestPublisher(ctl.connection, ctl.topic, "peregrine-worker", published)
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
    ctl.produce([(key_of("group-b"), None)])
    seen.until(A)
    ctl.produce([(key_of("group-a"), None)])
    seen.until(FALLBACK)  # no group left: back to the rules files' interest
    assert follower.rejected == 0


def test_garbage_is_counted_and_each_group_keeps_its_last_good_interest(ctl: Control) -> None:
    publish(ctl.publisher("group-a"), A)
    seen = Seen()
    follower = ctl.follow(seen)
    seen.until(A)
    good = key_of("group-a")
    ctl.produce([
        (good, b"\x93\x01\xff garbage"),
        (good, b'{"v": 1, "group": "group-a", "time_ns": "soon", "digest": "", "interest": {}}'),
        (good, b'{"v": 1, "interest": {"openat": {"fd.name": {"exact": [' + b'"x",' * 200_000 + b'"x"]}}}}'),
        (b"interest/", b"{}"),
        (b"someone-else/x", b"not ours: not counted"),
    ])  # fmt: skip
    publish(ctl.publisher("group-c"), B)  # a good record after the garbage: it has been read once this is in
    seen.until(control.union([A, B]))
    assert follower.rejected == 4 and len(ctl.rejected.added) == 4
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
