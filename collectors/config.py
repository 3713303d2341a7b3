"""`CollectorConfig`: everything the collector service is run with (frozen; built from the CLI)."""

from __future__ import annotations

import socket
from collections.abc import Mapping
from dataclasses import dataclass, field

from bus import topics
from bus.connection import KafkaConnection
from rules.interest import TypeInterest


@dataclass(frozen=True, slots=True, kw_only=True)
class CollectorConfig:
    node: str = field(default_factory=socket.gethostname)
    kafka: KafkaConnection = field(default_factory=KafkaConnection)
    events_topic: str = topics.EVENTS.name
    stats_topic: str = topics.STATS.name
    # event types to capture and publish; None: every type of rules/record.py the kernel offers
    # but those traced only when asked for (collectors.loader.ONLY_WHEN_ASKED: close)
    event_types: frozenset[str] | None = None
    # without an interest (None below), capture each fd event's fd table (the rules name fd.types);
    # with one, each type's interest says (TypeInterest.fd_table)
    fdtypes: bool = False
    # follow the workers' interest on this topic (collectors.control); None: do not
    control_topic: str | None = None
    # what the rules need per event type, applied in the kernel (collectors.interest_maps): the
    # --rules files' until a worker publishes one on the control topic; None: every event of
    # `event_types`. `rules_files` are read again on SIGHUP for a new one.
    interest: Mapping[str, TypeInterest] | None = None
    rules_files: tuple[str, ...] = ()
    ring_bytes: int = 16 << 20
    batch_max_events: int = 500
    batch_max_age_ms: int = 20
    poll_interval_ms: int = 10
    stats_interval_ms: int = 1000
    sweep_interval_s: float = 60.0  # how often the process table forgets processes gone from /proc
    queue_max_messages: int = 20000
    message_timeout_ms: int = 300_000
    duration_s: float | None = None  # stop after this long (tests, benchmarks); None: until signalled
