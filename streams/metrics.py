"""Every instrument the detection worker records, in one place (the dashboards are built on these names).

Instruments come from the OpenTelemetry API, which is a no-op until `telemetry.otel` installs the
SDK, so tests and benchmarks pay nothing for them. Names follow ``peregrine.worker.<quantity>`` with
OTel units; attributes are low-cardinality (reason, priority, outcome), never a pod or node name.
Recording happens once per batch, never per event.
"""

from __future__ import annotations

from dataclasses import dataclass

from opentelemetry import metrics
from opentelemetry.metrics import Counter, Histogram


@dataclass(frozen=True, slots=True)
class WorkerMetrics:
    batches: Counter
    events: Counter
    gate_kept: Counter
    alerts: Counter
    dlq: Counter
    gaps: Counter
    missing_batches: Counter
    drop_alerts: Counter
    rules_reloads: Counter
    decode_duration: Histogram
    eval_duration: Histogram


def worker_metrics() -> WorkerMetrics:
    meter = metrics.get_meter("peregrine.worker")
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
        gaps=meter.create_counter(
            "peregrine.worker.gaps", unit="{gap}", description="Jumps in a node's batch sequence"
        ),
        missing_batches=meter.create_counter(
            "peregrine.worker.missing_batches", unit="{batch}", description="Batches skipped by those jumps"
        ),
        drop_alerts=meter.create_counter(
            "peregrine.worker.drop_alerts", unit="{alert}", description="Syscall event drop alerts produced"
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
    )
