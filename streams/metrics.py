"""Every instrument the detection worker records, in one place (the dashboards are built on these names).

Instruments come from the OpenTelemetry API, which is a no-op until `telemetry.otel` installs the
SDK, so tests and benchmarks pay nothing for them. Names follow ``peregrine.worker.<quantity>`` with
OTel units; attributes are low-cardinality (reason, priority, outcome), never a pod or node name.
Recording happens once per batch, never per event.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sized
from dataclasses import dataclass, field

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Counter, Histogram, Observation

from streams.rulecost import RuleCounters, RuleTotals


@dataclass(slots=True)
class TableSizes:
    """The worker's tables keyed by attacker-chosen values (node names), bounded each, and exported
    as gauges so a flood of forged keys shows on a dashboard. Components attach their table."""

    tables: dict[str, Sized] = field(default_factory=dict)

    def attach(self, name: str, table: Sized) -> None:
        self.tables[name] = table

    def size(self, name: str) -> int:
        table = self.tables.get(name)
        return 0 if table is None else len(table)


# gauge name under peregrine.worker -> (table name, unit, description)
_TABLE_GAUGES = (
    ("seq.nodes", "seq", "{node}", "Nodes whose batch sequence the worker follows (bounded, LRU)"),
    ("drops.nodes", "drops", "{node}", "Nodes whose drop-alert token bucket the worker keeps (bounded, LRU)"),
    ("dlq.nodes", "letters", "{node}", "Nodes whose dead-letter budget the worker keeps (bounded, LRU)"),
    ("k8s.waited", "k8s_waited", "{container}",
     "New containers already waited for, remembered so each is waited for once (bounded)"),
    ("refused.messages", "refused", "{message}",
     "Input messages whose records Kafka refused, remembered until read again (bounded)"),
)


@dataclass(frozen=True, slots=True)
class WorkerMetrics:
    batches: Counter
    events: Counter
    gate_kept: Counter
    alerts: Counter
    dlq: Counter
    dlq_suppressed: Counter
    gaps: Counter
    missing_batches: Counter
    drop_alerts: Counter
    incomplete_alerts: Counter
    rules_reloads: Counter
    decode_duration: Histogram
    eval_duration: Histogram
    k8s_waits: Counter
    k8s_wait_duration: Histogram
    control_published: Counter
    sizes: TableSizes
    rules: RuleCounters


def worker_metrics() -> WorkerMetrics:
    meter = metrics.get_meter("peregrine.worker")
    sizes = TableSizes()
    for what, table, unit, description in _TABLE_GAUGES:
        meter.create_observable_gauge(
            f"peregrine.worker.{what}", [_observe(sizes, table)], unit=unit, description=description
        )
    return WorkerMetrics(
        batches=meter.create_counter(
            "peregrine.worker.batches", unit="{batch}", description="Event batches evaluated"
        ),
        events=meter.create_counter(
            "peregrine.worker.events", unit="{event}", description="Events evaluated against the rules"
        ),
        gate_kept=meter.create_counter(
            "peregrine.worker.gate.kept", unit="{event}",
            description="Events the rule engine's batch gate could not rule out (evaluated in full)",
        ),
        alerts=meter.create_counter(
            "peregrine.worker.alerts", unit="{alert}", description="Rule alerts produced, by priority"
        ),
        dlq=meter.create_counter(
            "peregrine.worker.dlq", unit="{message}",
            description="Messages (event batches, stats records) dead-lettered, by reason"
        ),
        dlq_suppressed=meter.create_counter(
            "peregrine.worker.dlq.suppressed", unit="{message}",
            description="Messages not dead-lettered because their node (or the worker) was over its "
            "dead-letter budget, by reason",
        ),
        gaps=meter.create_counter(
            "peregrine.worker.gaps", unit="{gap}", description="Jumps in a node's batch sequence"
        ),
        missing_batches=meter.create_counter(
            "peregrine.worker.missing_batches", unit="{batch}", description="Batches skipped by those jumps"
        ),
        drop_alerts=meter.create_counter(
            "peregrine.worker.drop_alerts", unit="{alert}", description="Syscall event drop alerts produced"
        ),
        incomplete_alerts=meter.create_counter(
            "peregrine.worker.alerts.incomplete", unit="{alert}",
            description="Alerts flagged: their node reported losing events around them (peregrine.drops.*)",
        ),
        rules_reloads=meter.create_counter(
            "peregrine.worker.rules_reloads", unit="{reload}", description="Rules reloads, by outcome"
        ),
        decode_duration=meter.create_histogram(
            "peregrine.worker.decode.duration", unit="s", description="Time to decode and enrich one batch"
        ),
        eval_duration=meter.create_histogram(
            "peregrine.worker.eval.duration", unit="s", description="Time to evaluate one batch"
        ),
        k8s_waits=meter.create_counter(
            "peregrine.worker.k8s.waits", unit="{batch}",
            description="Batches that waited for a new container's Kubernetes metadata, by outcome "
            "(found, timeout, over_budget: not waited, the worker's share of waiting was spent)",
        ),
        k8s_wait_duration=meter.create_histogram(
            "peregrine.worker.k8s.wait.duration", unit="s",
            description="Time a batch waited for a new container's Kubernetes metadata",
        ),
        control_published=meter.create_counter(
            "peregrine.worker.control.published", unit="{record}",
            description="Records written to peregrine.control: this worker's interest and its tombstone "
            "at stop, by outcome (ok, failed: retried), and the group leader's tombstones of workers gone "
            "from the group (swept)",
        ),
        sizes=sizes,
        rules=_rule_counters(meter),
    )


def _rule_counters(meter: metrics.Meter) -> RuleCounters:
    totals = RuleTotals()
    sampled = " in the sampled batches (streams.rulecost), by rule"
    for what, unit, description in (
        ("events", "{event}", "Events of the rule's types"),
        ("evaluations", "{event}", "Events the rule's gate passed on to its code"),
        ("matches", "{event}", "Events the rule matched"),
        ("cpu_time", "s", "CPU time of the rule alone"),
    ):
        meter.create_observable_counter(
            f"peregrine.worker.rule.{what}", [_observe_rules(totals, what)], unit=unit,
            description=description + sampled,
        )
    alerts = meter.create_counter(
        "peregrine.worker.rule.alerts", unit="{alert}", description="Alerts produced, by rule (exact)"
    )
    return RuleCounters(totals=totals, alerts=alerts)


_RULE_COLUMNS = {"events": 0, "evaluations": 1, "matches": 2, "cpu_time": 3}


def _observe_rules(totals: RuleTotals, what: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
    column = _RULE_COLUMNS[what]
    scale = 1e-9 if what == "cpu_time" else 1  # nanoseconds counted, seconds exported

    def callback(options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(row[column] * scale, {"rule": rule}) for rule, row in totals.read().items()]

    return callback


def _observe(sizes: TableSizes, table: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
    def callback(options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(sizes.size(table))]

    return callback
