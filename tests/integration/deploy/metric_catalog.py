"""Every OpenTelemetry instrument the Peregrine components register, and the Prometheus names the
real exporter gives them.

Run as a script (``python metric_catalog.py``), it installs a recording meter provider as the global
one, builds each component's instruments the way its role does (collector, worker, worker-side
Kubernetes table, k8s-meta publisher, sink), then re-creates each instrument in a fresh SDK
`MeterProvider` with the real `PrometheusMetricReader`, records one value and reads the exposition
back: the Prometheus names in the catalog are the exporter's, not a re-implementation of its rules.
It prints one JSON document. It runs in a child process because the global meter provider can be
set only once per process.

`catalog()` runs the script and parses its output, for the tests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]


@dataclass(frozen=True, slots=True)
class Instrument:
    meter: str
    name: str
    kind: str  # the create_* method without the prefix: counter, histogram, observable_gauge...
    unit: str
    description: str
    prometheus: tuple[str, ...]  # the series names the exporter renders for it


def catalog() -> list[Instrument]:
    """The instruments of every component, from a child process (see the module docstring)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, __file__], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    if out.returncode != 0:
        raise RuntimeError(f"metric_catalog.py failed ({out.returncode}):\n{out.stderr[-4000:]}")
    return [Instrument(**{**d, "prometheus": tuple(d["prometheus"])}) for d in json.loads(out.stdout)]


def _recording_provider(seen: list[tuple[str, str, str, str, str]]) -> Any:
    from opentelemetry.metrics import NoOpMeter, NoOpMeterProvider

    class RecordingMeter(NoOpMeter):
        """A no-op meter that writes down every instrument created through it."""

        def _note(self, kind: str, name: str, unit: str, description: str) -> None:
            seen.append((self.name, name, kind, unit, description))

        def create_counter(self, name: str, unit: str = "", description: str = "") -> Any:
            self._note("counter", name, unit, description)
            return super().create_counter(name, unit, description)

        def create_up_down_counter(self, name: str, unit: str = "", description: str = "") -> Any:
            self._note("up_down_counter", name, unit, description)
            return super().create_up_down_counter(name, unit, description)

        def create_gauge(self, name: str, unit: str = "", description: str = "") -> Any:
            self._note("gauge", name, unit, description)
            return super().create_gauge(name, unit, description)

        def create_histogram(self, name: str, unit: str = "", description: str = "", **kw: Any) -> Any:
            self._note("histogram", name, unit, description)
            return super().create_histogram(name, unit, description, **kw)

        def create_observable_counter(
            self, name: str, callbacks: Sequence[Any] | None = None, unit: str = "", description: str = ""
        ) -> Any:
            self._note("observable_counter", name, unit, description)
            return super().create_observable_counter(name, callbacks, unit, description)

        def create_observable_gauge(
            self, name: str, callbacks: Sequence[Any] | None = None, unit: str = "", description: str = ""
        ) -> Any:
            self._note("observable_gauge", name, unit, description)
            return super().create_observable_gauge(name, callbacks, unit, description)

        def create_observable_up_down_counter(
            self, name: str, callbacks: Sequence[Any] | None = None, unit: str = "", description: str = ""
        ) -> Any:
            self._note("observable_up_down_counter", name, unit, description)
            return super().create_observable_up_down_counter(name, callbacks, unit, description)

    class RecordingMeterProvider(NoOpMeterProvider):
        def get_meter(self, name: str, version: str | None = None, schema_url: str | None = None,
                      attributes: Any = None) -> Any:
            return RecordingMeter(name, version=version, schema_url=schema_url)

    return RecordingMeterProvider()


def _build_every_component() -> None:
    """Create the instruments exactly as each role's start-up code does."""
    from collectors.metrics import CollectorMetrics, control_metrics
    from enrichers.metrics import publisher_metrics, table_metrics
    from enrichers.table import K8sTable
    from sinks.metrics import create_metrics
    from streams.metrics import worker_metrics

    CollectorMetrics(lambda: 0)
    control_metrics()
    worker_metrics()
    table_metrics(K8sTable())
    publisher_metrics([], lambda: 0)
    create_metrics()


def _exposition_names(seen: Iterable[tuple[str, str, str, str, str]]) -> dict[str, tuple[str, ...]]:
    """Re-create each instrument in an SDK provider with the Prometheus reader, record a value,
    and return, per instrument name, the sample names of its family in the exposition."""
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from opentelemetry.metrics import CallbackOptions, Observation
    from opentelemetry.sdk.metrics import MeterProvider
    from prometheus_client import REGISTRY

    reader = PrometheusMetricReader()
    provider = MeterProvider(metric_readers=[reader])

    def one(_options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(1)]

    record: dict[str, Callable[[Any, str, str], None]] = {
        "counter": lambda m, n, u: m.create_counter(n, u).add(1),
        "up_down_counter": lambda m, n, u: m.create_up_down_counter(n, u).add(1),
        "gauge": lambda m, n, u: m.create_gauge(n, u).set(1),
        "histogram": lambda m, n, u: m.create_histogram(n, u).record(1),
        "observable_counter": lambda m, n, u: m.create_observable_counter(n, [one], u),
        "observable_gauge": lambda m, n, u: m.create_observable_gauge(n, [one], u),
        "observable_up_down_counter": lambda m, n, u: m.create_observable_up_down_counter(n, [one], u),
    }
    by_family: dict[str, str] = {}  # the exporter's family name -> instrument name
    for meter_name, name, kind, unit, _ in seen:
        before = {f.name for f in REGISTRY.collect()}
        record[kind](provider.get_meter(meter_name), name, unit)
        for family in REGISTRY.collect():
            if family.name not in before and family.name.startswith("peregrine"):
                by_family[family.name] = name
    names: dict[str, list[str]] = {}
    for family in REGISTRY.collect():
        if family.name in by_family:
            names.setdefault(by_family[family.name], []).extend(sorted({s.name for s in family.samples}))
    return {k: tuple(v) for k, v in names.items()}


def _main() -> None:
    from opentelemetry import metrics

    seen: list[tuple[str, str, str, str, str]] = []
    metrics.set_meter_provider(_recording_provider(seen))
    _build_every_component()
    prometheus = _exposition_names(seen)
    result = [
        Instrument(meter, name, kind, unit, description, prometheus.get(name, ()))
        for meter, name, kind, unit, description in seen
    ]
    json.dump([asdict(i) for i in result], sys.stdout, indent=1)


if __name__ == "__main__":
    _main()
