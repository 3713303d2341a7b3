"""The sink's instruments, through the OpenTelemetry API only (the SDK is installed by the CLI).

Every instrument carries one attribute, ``destination``: never pod, host or rule names, whose
cardinality grows with the cluster.
"""

from __future__ import annotations

from dataclasses import dataclass

from opentelemetry import metrics
from opentelemetry.metrics import Counter, Histogram, _Gauge


@dataclass(frozen=True, slots=True)
class SinkMetrics:
    delivered: Counter  # alerts the destination accepted
    filtered: Counter  # alerts the route did not select (committed, not sent)
    failed: Counter  # failed delivery attempts, per alert
    retried: Counter  # alerts sent again after a failed attempt
    dlq: Counter  # alerts written to the dead-letter topic
    latency: Histogram  # alert time to acceptance by the destination
    send_duration: Histogram  # one send() call, per batch
    folded: Counter  # alerts folded into a summary instead of being sent (aggregation)
    summaries: Counter  # summaries emitted (aggregation)
    open_keys: _Gauge  # aggregation windows open: the state held (the API names its sync gauge _Gauge)
    suppressed: Counter  # alerts silenced by a suppression


def create_metrics(meter_provider: metrics.MeterProvider | None = None) -> SinkMetrics:
    meter = metrics.get_meter("peregrine.sink", meter_provider=meter_provider)

    def counter(what: str, description: str) -> Counter:
        return meter.create_counter(f"peregrine.sink.{what}", unit="{alert}", description=description)

    def seconds(what: str, description: str) -> Histogram:
        return meter.create_histogram(f"peregrine.sink.{what}", unit="s", description=description)

    return SinkMetrics(
        delivered=counter("delivered", "alerts accepted by the destination"),
        filtered=counter("filtered", "alerts not selected by the route"),
        failed=counter("failed", "failed delivery attempts, per alert"),
        retried=counter("retried", "alerts sent again after a failure"),
        dlq=counter("dlq", "alerts moved to the dead-letter topic"),
        latency=seconds("latency", "alert time to acceptance by the destination"),
        send_duration=seconds("send.duration", "duration of one send to the destination"),
        folded=counter("folded", "alerts folded into an aggregation summary instead of being sent"),
        summaries=meter.create_counter("peregrine.sink.summaries", unit="{summary}",
                                       description="aggregation summaries emitted"),
        open_keys=meter.create_gauge("peregrine.sink.open_keys", unit="{key}",
                                     description="aggregation windows open (state held)"),
        suppressed=counter("suppressed", "alerts silenced by a suppression"),
    )
