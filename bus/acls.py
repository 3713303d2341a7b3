"""Each role's Kafka permissions, derived in one place from the topic catalog (issue #16).

One identity per role, so a compromised node (a collector) cannot write alerts or the Kubernetes
table, nor move the sinks' or the worker's group offsets. `bindings(role)` is the whole truth; the
CLI (`peregrine kafka acls`, `bus.acls_cli`) prints or applies it and the Strimzi `KafkaUser`
manifests under k8s/strimzi are checked against it by a test.

Why each grant:
* Create and DescribeConfigs on the topics a role declares at start (`bus.topics.declare` creates
  what is missing and checks compaction); Create on a named topic cannot alter an existing one.
* The worker's Faust app id is its consumer group, the prefix of its transactional ids
  (``<app id>-<group>-<partition>``, `streams.app`) and of Faust's own topics (the assignor's
  leader topic), so those are granted by prefix on the app id.
* The sinks' groups are ``<prefix>-<destination>`` and their suppressions reader's group shares the
  prefix; backtest reads with a fresh ``peregrine-backtest-<uuid>`` group it never commits.
* Writing `peregrine.sink.suppressions` is an operator's act (`peregrine sink suppress`), not the
  sink service's: a sink only reads it.
* `peregrine.control` is the workers' to write (their rules' interest) and the collectors' to read:
  a compromised node cannot narrow what the other nodes capture. A worker reads it too: its group's
  leader sweeps the records of workers gone from the group (`streams.control_sweep`), whose
  membership it looks up with the group's own Describe.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from bus import topics as catalog
from bus.errors import ConnectionConfigError

ResourceType = Literal["topic", "group", "transactional_id"]
PatternType = Literal["literal", "prefixed"]
Operation = Literal["Read", "Write", "Create", "Describe", "DescribeConfigs"]

ROLES: Final = ("collector", "k8s-meta", "worker", "sink", "backtest")
WORKER_APP_ID: Final = "peregrine-worker"  # streams.config's default app id
SINK_GROUP_PREFIX: Final = "peregrine-sink"  # sinks.config's default group prefix
BACKTEST_GROUP_PREFIX: Final = "peregrine-backtest-"  # backtest.read's throwaway groups
# the group id collectors.control names and never joins: librdkafka wants one, and looks its
# coordinator up (Describe) even for assign()
CONTROL_READER_GROUP: Final = "peregrine-collector-control"
# the throwaway group ids of enrichers.topic.read_records, which k8s-meta (its table at start) and
# backtest (the enrichment) read the Kubernetes table with: group-less, but looked up alike
K8S_READER_GROUP_PREFIX: Final = "peregrine-k8s-read-"


@dataclass(frozen=True, slots=True)
class Binding:
    """One ALLOW grant to the role's principal, from any host."""

    resource_type: ResourceType
    name: str
    pattern: PatternType
    operation: Operation


def _topic(spec: catalog.TopicSpec, *ops: Operation) -> list[Binding]:
    return [Binding("topic", spec.name, "literal", op) for op in ops]


_PRODUCE: Final[tuple[Operation, ...]] = ("Write", "Describe")
_CONSUME: Final[tuple[Operation, ...]] = ("Read", "Describe")
_DECLARE: Final[tuple[Operation, ...]] = ("Create", "DescribeConfigs")


def _group(name: str, pattern: PatternType) -> list[Binding]:
    return [Binding("group", name, pattern, op) for op in _CONSUME]


def _k8s_reader() -> list[Binding]:
    return [Binding("group", K8S_READER_GROUP_PREFIX, "prefixed", "Describe")]


def bindings(
    role: str,
    worker_app_id: str = WORKER_APP_ID,
    sink_group_prefix: str = SINK_GROUP_PREFIX,
) -> tuple[Binding, ...]:
    """The ALLOW bindings ``role`` needs and nothing more (ConnectionConfigError for an unknown role)."""
    c = catalog
    grants: list[Binding]
    if role == "collector":
        # it follows peregrine.control without joining or committing (collectors.control)
        grants = (
            _topic(c.EVENTS, *_PRODUCE) + _topic(c.STATS, *_PRODUCE) + _topic(c.CONTROL, *_CONSUME)
            + [Binding("group", CONTROL_READER_GROUP, "literal", "Describe")]
        )
    elif role == "k8s-meta":
        # it reads its own table back at start, group-less (enrichers.topic)
        grants = _topic(c.K8S, "Write", "Read", "Describe", *_DECLARE) + _k8s_reader()
    elif role == "worker":
        grants = (
            _topic(c.EVENTS, *_CONSUME, "Create")
            + _topic(c.STATS, *_CONSUME, "Create")
            + _topic(c.K8S, *_CONSUME, *_DECLARE)
            + _topic(c.ALERTS, *_PRODUCE, "Create")
            + _topic(c.EVENTS_DLQ, *_PRODUCE, "Create")
            # its own record; its group's leader reads the rest to sweep a dead worker's
            + _topic(c.CONTROL, *_PRODUCE, "Read", *_DECLARE)
            + [Binding("topic", worker_app_id, "prefixed", op)
               for op in ("Read", "Write", "Describe", "Create", "DescribeConfigs")]  # fmt: skip
            + _group(worker_app_id, "literal")
            + [Binding("transactional_id", f"{worker_app_id}-", "prefixed", op) for op in _PRODUCE]
        )
    elif role == "sink":
        grants = (
            _topic(c.ALERTS, *_CONSUME)
            + _topic(c.ALERTS_DLQ, *_PRODUCE)
            + _topic(c.SINK_SUPPRESSIONS, *_CONSUME, *_DECLARE)
            + _group(f"{sink_group_prefix}-", "prefixed")
        )
    elif role == "backtest":
        # the events, and the Kubernetes table for the enrichment the worker would have had
        grants = (
            _topic(c.EVENTS, *_CONSUME) + _group(BACKTEST_GROUP_PREFIX, "prefixed")
            + _topic(c.K8S, *_CONSUME) + _k8s_reader()
        )
    else:
        raise ConnectionConfigError(f"unknown role {role!r}; one of {', '.join(ROLES)}")
    return tuple(grants)


_CLI_RESOURCE: Final = {"topic": "--topic", "group": "--group", "transactional_id": "--transactional-id"}


def kafka_acls_command(binding: Binding, principal: str) -> list[str]:
    """The `kafka-acls.sh` arguments (after ``--bootstrap-server``) that add ``binding``."""
    return ["--add", "--allow-principal", principal, "--operation", binding.operation,
            _CLI_RESOURCE[binding.resource_type], binding.name,
            "--resource-pattern-type", binding.pattern]  # fmt: skip
