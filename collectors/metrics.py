"""The collector's OpenTelemetry instruments (`peregrine.collector.*`), fed once per stats interval.

Only the OpenTelemetry API is used here; `telemetry.otel` installs the SDK at process start
(a no-op meter otherwise). Attributes never name pods or processes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Counter, Observation

from collectors.stats import Stats


class CollectorMetrics:
    def __init__(self, queue_depth: Callable[[], int], meter: metrics.Meter | None = None) -> None:
        meter = meter or metrics.get_meter("peregrine.collector")
        self._events = meter.create_counter(
            "peregrine.collector.events", unit="{event}", description="records the probe emitted"
        )
        self._drops = meter.create_counter(
            "peregrine.collector.drops", unit="{event}", description="events or fields lost, by category"
        )
        self._batches = meter.create_counter(
            "peregrine.collector.batches", unit="{batch}", description="batches handed to Kafka"
        )
        self._bytes = meter.create_counter(
            "peregrine.collector.payload", unit="By", description="encoded batch bytes handed to Kafka"
        )
        self._errors = meter.create_counter(
            "peregrine.collector.publish_errors", unit="{error}", description="batches Kafka refused or lost"
        )
        self._filtered = meter.create_counter(
            "peregrine.collector.interest.filtered", unit="{event}",
            description="events the probe's interest kept or dropped, by event type and reason",
        )

        def observe(_options: CallbackOptions) -> Iterable[Observation]:
            return [Observation(queue_depth())]

        meter.create_observable_gauge(
            "peregrine.collector.queue_depth", callbacks=[observe], unit="{message}",
            description="messages waiting in the Kafka producer queue",
        )

    def record(self, s: Stats, batches: int, nbytes: int, errors: int) -> None:
        self._events.add(s.n_evts)
        for category, n in s.drops.items():
            if n:
                self._drops.add(n, {"category": category})
        self._batches.add(batches)
        self._bytes.add(nbytes)
        if errors:
            self._errors.add(errors)

    def record_filtered(self, deltas: Mapping[tuple[str, str], int]) -> None:
        """(event type, reason) -> events since the last call; reasons are
        collectors.interest_maps.REASONS, event types rules.record's: both bounded."""
        for (event_type, reason), n in deltas.items():
            if n:
                self._filtered.add(n, {"event_type": event_type, "reason": reason})


@dataclass(frozen=True, slots=True)
class ControlMetrics:
    """What following `peregrine.control` did (`collectors.control`)."""

    updates: Counter
    rejected: Counter


def control_metrics(meter: metrics.Meter | None = None) -> ControlMetrics:
    meter = meter or metrics.get_meter("peregrine.collector")
    return ControlMetrics(
        updates=meter.create_counter(
            "peregrine.collector.control.updates", unit="{update}",
            description="changes of the capture interest the workers published on peregrine.control",
        ),
        rejected=meter.create_counter(
            "peregrine.collector.control.rejected", unit="{record}",
            description="peregrine.control records that did not decode (the last good interest is kept)",
        ),
    )
