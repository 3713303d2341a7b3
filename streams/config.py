"""`WorkerConfig`: everything a detection worker needs, from command-line flags and the environment.

Flags win over environment variables (``PEREGRINE_*``), which win over defaults. Kafka TLS and SASL
are `bus.connection`, shared with every Kafka role: secrets (the SASL password,
the TLS key password) come from the environment only, never from flags (they would show in ``ps``),
and no repr, log line or error message prints them.

Limits: one bootstrap list for consuming and producing; TLS is configured by files (CA, client
certificate, key), not by an in-memory context.
"""

from __future__ import annotations

import argparse
import os
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from bus import connection as kafka_connection
from bus import topics as catalog
from bus.connection import KafkaConnection
from bus.errors import ConnectionConfigError
from bus.security import KafkaSecurity
from rules.evidence import EVIDENCE_EVENTS_LIMIT
from rules.interest_wire import replica_name
from streams.errors import WorkerError
from streams.k8swait import DEFAULT_MAX_WAIT_S

GUARANTEES: Final = ("exactly_once", "at_least_once")
# Falco's ``rule_matching``: the first matching rule of an event alerts, or every matching rule does.
RULE_MATCHING: Final = ("first", "all")
# The worker evaluates nothing else while a batch waits for a new container's record: past this, a
# stall, not a wait (the kubelet reports a container within about a second of its start).
MAX_K8S_WAIT_NEW_S: Final = 30.0


class ConfigError(WorkerError):
    """A worker option is missing or invalid; the message names the flag and the variable."""


@dataclass(frozen=True, slots=True)
class Topics:
    events: str = catalog.EVENTS.name
    stats: str = catalog.STATS.name
    alerts: str = catalog.ALERTS.name
    dlq: str = catalog.EVENTS_DLQ.name
    k8s: str = catalog.K8S.name
    control: str = catalog.CONTROL.name  # where the worker publishes its rules' interest (streams.control)


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    bootstrap: tuple[str, ...]
    rules_files: tuple[Path, ...]
    app_id: str = "peregrine-worker"
    topics: Topics = Topics()
    partitions: int = 12
    replication: int = 1
    guarantee: str = "exactly_once"
    security: KafkaSecurity = KafkaSecurity()
    session_timeout: float = 30.0  # seconds; tests shorten it so a killed worker is noticed fast
    heartbeat_interval: float = 3.0
    commit_interval: float = 0.25  # seconds; the transaction length: alerts are visible after it
    datadir: Path = Path("/tmp/peregrine-worker")
    log_level: str = "info"
    k8s_wait: float = 30.0  # seconds to wait for the Kubernetes table to catch up at start
    # seconds a batch waits for the record of a container that has just started (streams.k8swait); 0: off
    k8s_wait_new: float = DEFAULT_MAX_WAIT_S
    rule_matching: str = "first"
    # every N-th batch is replayed rule by rule for the per-rule cost metrics (streams.rulecost); 0: off
    # 128 cost the worker ~40% of its CPU (a sampled batch runs every rule alone: ~50 batches' work)
    rule_cost_every: int = 4096
    # evidence (streams.evidence): events per alert (0: none), and the history kept to find them
    evidence_events: int = 16
    evidence_depth: int = 0  # earlier batches kept per node; 0: the alert's own batch (streams.evidence)
    evidence_max_events: int = 100_000  # across all nodes: ~100 MB at worst
    # this process among its group's: its peregrine.control record's key and its Kafka client id
    replica: str = field(default_factory=lambda: replica_name(socket.gethostname(), os.getpid()))
    # seconds a worker may be missing from the group before the leader removes its rules' interest
    # from peregrine.control (streams.control_sweep); long enough for a start or a rebalance
    control_grace: float = 120.0

    def __post_init__(self) -> None:
        if not self.bootstrap:
            raise ConfigError("no bootstrap servers (--bootstrap-servers or PEREGRINE_BOOTSTRAP_SERVERS)")
        if not self.rules_files:
            raise ConfigError("no rules files (--rules FILE, repeatable, or PEREGRINE_RULES)")
        if self.guarantee not in GUARANTEES:
            raise ConfigError(f"--guarantee must be one of {', '.join(GUARANTEES)}, not {self.guarantee!r}")
        if self.rule_matching not in RULE_MATCHING:
            raise ConfigError(f"--rule-matching (PEREGRINE_RULE_MATCHING) must be one of "
                              f"{', '.join(RULE_MATCHING)}, not {self.rule_matching!r}")
        if self.rule_cost_every < 0:
            raise ConfigError("--rule-cost-every (PEREGRINE_RULE_COST_EVERY) must be 0 (off) or more")
        if not 0 <= self.evidence_events <= EVIDENCE_EVENTS_LIMIT:
            raise ConfigError(f"--evidence-events (PEREGRINE_EVIDENCE_EVENTS) must be 0 (off) to "
                              f"{EVIDENCE_EVENTS_LIMIT}, not {self.evidence_events}")
        if self.evidence_depth < 0 or self.evidence_max_events < 0:
            raise ConfigError("--evidence-depth and --evidence-max-events must be 0 or more")
        if not 0 <= self.k8s_wait_new <= MAX_K8S_WAIT_NEW_S:
            raise ConfigError(f"--k8s-wait-new (PEREGRINE_K8S_WAIT_NEW) must be 0 (off) to "
                              f"{MAX_K8S_WAIT_NEW_S:g} seconds, not {self.k8s_wait_new}")
        if self.control_grace <= 0:
            raise ConfigError("--control-grace (PEREGRINE_CONTROL_GRACE) must be more than 0 seconds")
        if self.partitions < 1 or self.replication < 1:
            raise ConfigError("--partitions and --replication must be at least 1")

    @property
    def exactly_once(self) -> bool:
        return self.guarantee == "exactly_once"

    @property
    def all_matches(self) -> bool:
        return self.rule_matching == "all"

    @property
    def connection(self) -> KafkaConnection:
        return KafkaConnection(self.bootstrap, self.security)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="peregrine worker",
        description="Detection worker: consume event batches, evaluate the rules, produce Falco JSON alerts. "
        "SIGHUP reloads the rules files (a bad file keeps the running rules).",
    )
    p.add_argument("--rules", action="append", metavar="FILE", help="rules file, repeatable, in load order "
                   "(env PEREGRINE_RULES, colon-separated)")
    p.add_argument("--app-id", help="Faust app id = consumer group (env PEREGRINE_WORKER_APP_ID)")
    p.add_argument("--partitions", type=int, help="partitions of topics created at start")
    p.add_argument("--replication", type=int, help="replication factor of topics created at start")
    p.add_argument("--guarantee", choices=GUARANTEES, help="processing guarantee (default exactly_once)")
    p.add_argument("--rule-matching", choices=RULE_MATCHING, help="alert for the first matching rule of "
                   "an event, as Falco does by default, or for every one (env PEREGRINE_RULE_MATCHING)")
    p.add_argument("--rule-cost-every", type=int, metavar="N", help="sample every N-th batch into the "
                   "per-rule cost metrics, 0 turns them off (default 4096; env PEREGRINE_RULE_COST_EVERY)")
    p.add_argument("--evidence-events", type=int, metavar="N", help="events of the process and its "
                   "ancestors each alert carries as evidence, 0 turns it off (default 16, at most "
                   f"{EVIDENCE_EVENTS_LIMIT}; env PEREGRINE_EVIDENCE_EVENTS)")
    p.add_argument("--evidence-depth", type=int, metavar="N", help="earlier batches kept per node to find "
                   "evidence in, beyond the alert's own (default 0; env PEREGRINE_EVIDENCE_DEPTH)")
    p.add_argument("--evidence-max-events", type=int, metavar="N", help="events kept for evidence across "
                   "all nodes, the memory bound (default 100000; env PEREGRINE_EVIDENCE_MAX_EVENTS)")
    for name in Topics.__dataclass_fields__:
        p.add_argument(f"--{name}-topic", help=f"topic name (default {getattr(Topics(), name)})")
    p.add_argument("--session-timeout", type=float, help="consumer group session timeout, seconds")
    p.add_argument("--heartbeat-interval", type=float, help="seconds")
    p.add_argument("--commit-interval", type=float, help="seconds between offset commits/transactions")
    p.add_argument("--datadir", type=Path, help="Faust data directory")
    p.add_argument("--log-level", choices=("debug", "info", "warning", "error"))
    p.add_argument("--k8s-wait", type=float, help="seconds to wait for the Kubernetes table at start")
    p.add_argument("--k8s-wait-new", type=float, metavar="S", help="seconds a batch with processes of a "
                   "container that has just started waits for its Kubernetes record, once per container; "
                   f"0 turns it off (default {DEFAULT_MAX_WAIT_S:g}; env PEREGRINE_K8S_WAIT_NEW)")
    p.add_argument("--control-grace", type=float, metavar="S", help="seconds a worker may be missing from "
                   "the group before its rules' interest is removed from the control topic (default 120; "
                   "env PEREGRINE_CONTROL_GRACE)")
    kafka_connection.add_arguments(p)
    return p


def from_args(argv: Sequence[str], env: Mapping[str, str] | None = None) -> WorkerConfig:
    """Build the config; argparse exits on unknown flags, ConfigError on invalid combinations."""
    e = os.environ if env is None else env
    a = parser().parse_args(list(argv))
    d = WorkerConfig(bootstrap=("-",), rules_files=(Path("-"),))  # the defaults

    def pick(flag: object, var: str, default: object) -> object:
        if flag is not None:
            return flag
        return e.get(var, default)

    rules = a.rules or [r for r in e.get("PEREGRINE_RULES", "").split(":") if r]
    names = Topics.__dataclass_fields__
    topics = Topics(**{n: getattr(a, f"{n}_topic") or getattr(d.topics, n) for n in names})
    try:
        connection = kafka_connection.from_args(a, e)
    except ConnectionConfigError as exc:
        raise ConfigError(str(exc)) from None
    try:
        return WorkerConfig(
            bootstrap=connection.bootstrap,
            rules_files=tuple(Path(r) for r in rules),
            app_id=str(pick(a.app_id, "PEREGRINE_WORKER_APP_ID", d.app_id)),
            topics=topics,
            partitions=int(str(pick(a.partitions, "PEREGRINE_PARTITIONS", d.partitions))),
            replication=int(str(pick(a.replication, "PEREGRINE_REPLICATION", d.replication))),
            guarantee=str(pick(a.guarantee, "PEREGRINE_GUARANTEE", d.guarantee)),
            security=connection.security,
            session_timeout=a.session_timeout or d.session_timeout,
            heartbeat_interval=a.heartbeat_interval or d.heartbeat_interval,
            commit_interval=a.commit_interval or d.commit_interval,
            datadir=a.datadir or Path(e.get("PEREGRINE_WORKER_DATADIR", str(d.datadir))),
            log_level=a.log_level or e.get("PEREGRINE_LOG_LEVEL", d.log_level),
            k8s_wait=a.k8s_wait if a.k8s_wait is not None else d.k8s_wait,
            k8s_wait_new=float(str(pick(a.k8s_wait_new, "PEREGRINE_K8S_WAIT_NEW", d.k8s_wait_new))),
            rule_matching=str(pick(a.rule_matching, "PEREGRINE_RULE_MATCHING", d.rule_matching)),
            rule_cost_every=int(str(pick(a.rule_cost_every, "PEREGRINE_RULE_COST_EVERY", d.rule_cost_every))),
            evidence_events=int(str(pick(a.evidence_events, "PEREGRINE_EVIDENCE_EVENTS", d.evidence_events))),
            evidence_depth=int(str(pick(a.evidence_depth, "PEREGRINE_EVIDENCE_DEPTH", d.evidence_depth))),
            evidence_max_events=int(str(pick(a.evidence_max_events, "PEREGRINE_EVIDENCE_MAX_EVENTS",
                                             d.evidence_max_events))),
            control_grace=float(str(pick(a.control_grace, "PEREGRINE_CONTROL_GRACE", d.control_grace))),
        )
    except ValueError as exc:  # int() or float() of a PEREGRINE_* variable; ConfigError is not a ValueError
        raise ConfigError(f"invalid number in the worker options: {exc}") from None
