"""OpenTelemetry instruments of k8s-meta and of the worker-side table (API only; the process that
runs us sets up the SDK and exporters). Counters are observed from the cumulative counts the
watchers and the table keep anyway, so the hot paths do not call into OpenTelemetry. No
attribute ever names a pod, namespace or container: only the resource kind."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Counter, Observation

from enrichers.table import K8sTable

if TYPE_CHECKING:  # the Kubernetes client costs the worker, which only needs table_metrics, 0.6 s to import
    from enrichers.watch import ResourceWatcher

METER_NAME = "peregrine.k8s_meta"


# WatchCounters field -> observable counter, one series per resource
_WATCH_COUNTERS = (
    ("events", "peregrine.k8s_meta.watch_events", "{event}", "ADDED/MODIFIED/DELETED events received"),
    ("lists", "peregrine.k8s_meta.lists", "{list}", "full lists of a resource (the first and every relist)"),
    ("relists_gone", "peregrine.k8s_meta.relists_gone", "{list}", "relists forced by 410 Gone"),
    ("reconnects", "peregrine.k8s_meta.reconnects", "{reconnect}", "watch requests retried after an error"),
)


@dataclass(frozen=True, slots=True)
class PublisherMetrics:
    records: Counter
    tombstones: Counter
    delivery_errors: Counter


def _observe(read: Callable[[], Iterable[Observation]]) -> Callable[[CallbackOptions], Iterable[Observation]]:
    return lambda _options: read()


def publisher_metrics(watchers: Sequence[ResourceWatcher], keys: Callable[[], int]) -> PublisherMetrics:
    """Instruments of `peregrine k8s-meta`; ``keys`` reads how many live keys the topic holds."""
    meter = metrics.get_meter(METER_NAME)

    def per_resource(field: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
        return _observe(
            lambda: [Observation(getattr(w.counters, field), {"resource": w.resource}) for w in watchers]
        )

    for field, name, unit, description in _WATCH_COUNTERS:
        meter.create_observable_counter(name, [per_resource(field)], unit=unit, description=description)
    meter.create_observable_gauge(
        "peregrine.k8s_meta.keys", [_observe(lambda: [Observation(keys())])], unit="{key}",
        description="live keys (containers and service IPs) in peregrine.k8s",
    )
    return PublisherMetrics(
        records=meter.create_counter(
            "peregrine.k8s_meta.records_produced", unit="{record}",
            description="records produced to peregrine.k8s (changes only)",
        ),
        tombstones=meter.create_counter(
            "peregrine.k8s_meta.tombstones_produced", unit="{record}",
            description="tombstones produced after the grace period",
        ),
        delivery_errors=meter.create_counter(
            "peregrine.k8s_meta.delivery_errors", unit="{record}",
            description="records Kafka did not accept",
        ),
    )


def table_metrics(table: K8sTable) -> None:
    """Observable instruments of a worker's table (call once per table)."""
    meter = metrics.get_meter(METER_NAME)
    stats = table.stats
    meter.create_observable_gauge(
        "peregrine.k8s_meta.table_containers", [_observe(lambda: [Observation(len(table))])],
        unit="{container}", description="containers held by the worker's table",
    )
    meter.create_observable_counter(
        "peregrine.k8s_meta.table_enriched", [_observe(lambda: [Observation(stats.enriched)])],
        unit="{process}", description="process records given their container",
    )
    meter.create_observable_counter(
        "peregrine.k8s_meta.table_unknown", [_observe(lambda: [Observation(stats.unknown)])],
        unit="{process}", description="container process records whose container was not in the table",
    )
    meter.create_observable_counter(
        "peregrine.k8s_meta.table_evicted", [_observe(lambda: [Observation(stats.evicted)])],
        unit="{container}", description="entries evicted because the table was full",
    )
