"""One OpenTelemetry setup for every Peregrine role.

Components create their instruments through the OpenTelemetry *API*
(``opentelemetry.metrics.get_meter("peregrine.<component>")``), which is a no-op until a process
installs the SDK. The `peregrine` CLI calls `setup_telemetry` once at the start of each
long-running role, so every role exports the same way: a Prometheus endpoint (scraped by
Prometheus, shown in Grafana) and, when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set, OTLP over HTTP.
The same HTTP server answers the Kubernetes probes, ``/readyz`` and ``/livez``, from the `Health`
that `setup_telemetry` returns and the role keeps up to date (`telemetry.health`).

Resource attributes are limited to the service name and role on purpose: pod and host names as
labels would multiply series by the number of pods (DESIGN.md: no per-pod labels).
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from typing import Final

from telemetry.health import Health, with_probes

log = logging.getLogger("peregrine.telemetry")

# The SDK's default histogram boundaries (0, 5, 10 ... 10000) suit milliseconds; our latencies are
# in seconds and matter below one, so every histogram with unit "s" gets second-scale buckets.
SECONDS_BUCKETS: Final = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)

# One default port per role so a node running several roles exposes them side by side.
DEFAULT_PORTS: Final = {"collect": 9464, "worker": 9465, "sink": 9466, "k8s-meta": 9467}


@dataclass(frozen=True, slots=True)
class TelemetryConfig:
    role: str
    prometheus_port: int | None  # None: no Prometheus endpoint
    prometheus_addr: str
    otlp_endpoint: str | None
    export_interval_ms: int

    @classmethod
    def from_env(cls, role: str) -> TelemetryConfig:
        raw_port = os.environ.get("PEREGRINE_METRICS_PORT", str(DEFAULT_PORTS.get(role, 0)))
        port = int(raw_port)
        return cls(
            role=role,
            prometheus_port=port if port > 0 else None,
            prometheus_addr=os.environ.get("PEREGRINE_METRICS_ADDR", "0.0.0.0"),
            otlp_endpoint=os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or None,
            export_interval_ms=int(os.environ.get("PEREGRINE_METRICS_EXPORT_MS", "10000")),
        )


def setup_telemetry(role: str, config: TelemetryConfig | None = None) -> Health:
    """Install the SDK meter provider for this process (call once, at the start of a role); the
    returned `Health` is what the probe endpoints answer from."""
    from opentelemetry import metrics
    from opentelemetry.sdk.metrics import Histogram, MeterProvider
    from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
    from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
    from opentelemetry.sdk.resources import Resource

    cfg = config or TelemetryConfig.from_env(role)
    health = Health()
    readers: list[MetricReader] = []
    if cfg.prometheus_port is not None:
        from opentelemetry.exporter.prometheus import PrometheusMetricReader

        try:
            _serve(health, cfg.prometheus_addr, cfg.prometheus_port)
            readers.append(PrometheusMetricReader())
        except OSError as exc:
            log.warning(
                "metrics endpoint not started",
                extra={"port": cfg.prometheus_port, "error": str(exc), "hint": "set PEREGRINE_METRICS_PORT"},
            )
    if cfg.otlp_endpoint is not None:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

        readers.append(
            PeriodicExportingMetricReader(OTLPMetricExporter(), export_interval_millis=cfg.export_interval_ms)
        )
    resource = Resource.create({"service.name": "peregrine", "peregrine.role": cfg.role})
    seconds = View(
        instrument_type=Histogram,
        instrument_unit="s",
        aggregation=ExplicitBucketHistogramAggregation(SECONDS_BUCKETS),
    )
    metrics.set_meter_provider(MeterProvider(resource=resource, metric_readers=readers, views=[seconds]))
    return health


def _serve(health: Health, addr: str, port: int) -> None:
    """prometheus_client's own threaded WSGI server (as its start_http_server), probes added."""
    import socket
    from wsgiref.simple_server import make_server

    from prometheus_client.exposition import ThreadingWSGIServer, _SilentHandler, make_wsgi_app

    class Server(ThreadingWSGIServer):
        address_family = socket.AF_INET6 if ":" in addr else socket.AF_INET

    app = with_probes(health, make_wsgi_app())
    httpd = make_server(addr, port, app, Server, handler_class=_SilentHandler)
    threading.Thread(target=httpd.serve_forever, name="metrics-http", daemon=True).start()
