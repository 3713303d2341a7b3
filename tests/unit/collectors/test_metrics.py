"""The collector's OpenTelemetry instruments: names, units and the drop category attribute."""

from __future__ import annotations

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from collectors.metrics import CollectorMetrics
from collectors.stats import Stats


def test_instruments_record_stats_deltas_with_units_and_categories() -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    m = CollectorMetrics(lambda: 7, provider.get_meter("peregrine.collector"))
    m.record(Stats("n", "b", 1, 10**9, 100, 90, {"ring_full": 10, "page_fault_reads": 0}), 3, 4096, 1)
    m.record_filtered({("openat", "dropped-path"): 5, ("openat", "kept"): 0, ("connect", "kept"): 2})
    data = reader.get_metrics_data()
    assert data is not None
    got = {
        mt.name: (mt.unit, [(dict(p.attributes or {}), p.value) for p in mt.data.data_points])
        for rm in data.resource_metrics for sm in rm.scope_metrics if sm.scope.name == "peregrine.collector"
        for mt in sm.metrics
    }
    assert got["peregrine.collector.events"] == ("{event}", [({}, 100)])
    assert got["peregrine.collector.drops"] == ("{event}", [({"category": "ring_full"}, 10)])
    assert got["peregrine.collector.batches"] == ("{batch}", [({}, 3)])
    assert got["peregrine.collector.payload"] == ("By", [({}, 4096)])
    assert got["peregrine.collector.publish_errors"] == ("{error}", [({}, 1)])
    assert got["peregrine.collector.queue_depth"] == ("{message}", [({}, 7)])
    assert got["peregrine.collector.interest.filtered"] == ("{event}", [
        ({"event_type": "openat", "reason": "dropped-path"}, 5),
        ({"event_type": "connect", "reason": "kept"}, 2),
    ])
