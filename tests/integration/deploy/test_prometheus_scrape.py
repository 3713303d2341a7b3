"""A real Prometheus scrapes real `peregrine sink` and `peregrine k8s-meta` processes and sees the
`peregrine_*` series.

Each role runs as its own process through the `peregrine` CLI (so `telemetry.otel` sets up the
SDK and the Prometheus endpoint exactly as in a pod). The sink reads alerts from the real broker
and writes them to a file destination; one poison record goes to the dead-letter topic. k8s-meta
watches the real kube-apiserver of the k8s tests and publishes to the broker. Prometheus,
started with its own configuration, scrapes the endpoint; the test reads its HTTP API: the series
arrived under the names the OpenTelemetry exporter renders (`_total`, `_seconds_bucket`...), every
one of them is in the catalog the dashboard test checks against, and none carries a label that
names a pod, a host or a process instance.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
from kube_apiserver import free_port
from metric_catalog import ROOT, catalog
from test_grafana_dashboard import METRIC, dashboard, expressions

from rules.output import iso_time

SAMPLE = json.loads((ROOT / "tests" / "unit" / "sinks" / "alert_sample.json").read_text())
ALERTS = 20
DEADLINE_S = 60.0
# Labels Prometheus adds (job, instance) and the exporter's scope labels; anything else on a
# Peregrine series must be one of the components' bounded attributes.
ALLOWED_LABELS = {"__name__", "job", "instance", "le", "otel_scope_name", "otel_scope_version",
                  "otel_scope_schema_url", "destination", "resource"}
PER_POD = {"pod", "k8s_pod_name", "host", "hostname", "host_name", "node", "k8s_node_name",
           "service_instance_id", "container", "namespace"}

pytestmark = [pytest.mark.kafka, pytest.mark.k8s]


@dataclass(frozen=True)
class Scraped:
    prometheus: Any
    logs: dict[str, Path]


def wait_for(check: Callable[[], Any], what: str) -> Any:
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.5)
    pytest.fail(f"not within {DEADLINE_S}s: {what}")


def _alerts() -> list[bytes]:
    now = iso_time(time.time_ns())  # the contract's time format (alerts.wire refuses any other)
    docs = [{**SAMPLE, "uuid": str(uuid.uuid4()), "time": now} for _ in range(ALERTS)]
    return [json.dumps(d).encode() for d in docs] + [b"{not json"]


def _role(args: list[str], port: int, log: Path) -> subprocess.Popen[bytes]:
    """`peregrine <role> ...` as its own process, metrics on 127.0.0.1:port, as in a pod."""
    env = {"PATH": "/usr/bin:/bin", "PEREGRINE_METRICS_PORT": str(port),
           "PEREGRINE_METRICS_ADDR": "127.0.0.1"}
    return subprocess.Popen([sys.executable, "-m", "cli.main", *args],
                            cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)


def _stop(proc: subprocess.Popen[bytes], log: Path) -> None:
    proc.terminate()
    try:
        assert proc.wait(30) == 0, f"{proc.args} did not stop cleanly:\n{log.read_text()[-3000:]}"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


@pytest.fixture(scope="module")
def scraped(
    kafka_bootstrap: str, kube_api: Any, prometheus: Callable[[list[str]], Any],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Scraped]:
    """`peregrine sink` (file destination, alerts from the broker) and `peregrine k8s-meta`
    (watching the real API server), both scraped by one Prometheus."""
    tmp = tmp_path_factory.mktemp("roles")
    suffix = uuid.uuid4().hex[:8]
    alerts, dlq = f"scrape-alerts-{suffix}", f"scrape-dlq-{suffix}"
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    for future in admin.create_topics([NewTopic(alerts, 1, 1), NewTopic(dlq, 1, 1)]).values():
        future.result(timeout=30)
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for value in _alerts():
        producer.produce(alerts, value=value)
    assert producer.flush(30) == 0
    out = tmp / "alerts.jsonl"
    config = tmp / "sink.yaml"
    config.write_text(yaml.safe_dump({
        "kafka": {"bootstrap_servers": kafka_bootstrap, "topic": alerts, "dlq_topic": dlq,
                  "group_prefix": f"scrape-{suffix}"},
        "destinations": [{"name": "archive", "type": "file", "path": str(out), "fsync": "never"}],
    }))
    logs = {"sink": tmp / "sink.log", "k8s-meta": tmp / "k8s-meta.log"}
    ports = {"sink": free_port(), "k8s-meta": free_port()}
    sink = _role(["sink", "--config", str(config)], ports["sink"], logs["sink"])
    meta = _role(["k8s-meta", "--kubeconfig", str(kube_api.kubeconfig),
                  "--bootstrap-servers", kafka_bootstrap, "--topic", f"scrape-k8s-{suffix}"],
                 ports["k8s-meta"], logs["k8s-meta"])

    def delivered_or_exited() -> bool:
        return sink.poll() is not None or (out.exists() and len(out.read_bytes().splitlines()) == ALERTS)

    try:
        wait_for(delivered_or_exited, "the sink delivered every alert to the file")
        for name, proc in (("sink", sink), ("k8s-meta", meta)):
            tail = logs[name].read_text()[-3000:]
            assert proc.poll() is None, f"{name} exited with {proc.returncode}:\n{tail}"
        yield Scraped(prometheus([f"127.0.0.1:{port}" for port in ports.values()]), logs)
    finally:
        try:
            _stop(sink, logs["sink"])
        finally:
            _stop(meta, logs["k8s-meta"])


def query(prom: Any, expr: str) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = prom.api("query", query=expr)["result"]
    return result


def test_counters_arrive_with_their_values(scraped: Scraped) -> None:
    prom = scraped.prometheus
    delivered = wait_for(lambda: query(prom, "peregrine_sink_delivered_total"), "delivered series scraped")
    assert [(r["metric"]["destination"], r["value"][1]) for r in delivered] == [("archive", str(ALERTS))]
    dlq = wait_for(lambda: query(prom, "peregrine_sink_dlq_total"), "dlq series scraped")
    assert [r["value"][1] for r in dlq] == ["1"]
    wait_for(lambda: [r["value"][1] for r in query(prom, "up")] == ["1", "1"], "both targets up")
    lists = wait_for(lambda: query(prom, "peregrine_k8s_meta_lists_total"), "k8s-meta list counters scraped")
    assert {r["metric"]["resource"] for r in lists} >= {"pods"}
    assert all(int(r["value"][1]) >= 1 for r in lists), lists


def test_series_names_carry_units_as_the_exporter_renders_them(scraped: Scraped) -> None:
    prom = scraped.prometheus
    series = wait_for(lambda: prom.series('{__name__=~"peregrine_.+"}'), "peregrine series")
    names = {s["__name__"] for s in series}
    assert {
        "peregrine_sink_delivered_total", "peregrine_sink_dlq_total",
        "peregrine_sink_latency_seconds_bucket", "peregrine_sink_latency_seconds_sum",
        "peregrine_sink_latency_seconds_count", "peregrine_sink_send_duration_seconds_bucket",
        "peregrine_k8s_meta_lists_total", "peregrine_k8s_meta_watch_events_total",
        "peregrine_k8s_meta_keys",
    } <= names
    known = {n for i in catalog() for n in i.prometheus}
    assert names <= known, f"scraped but not in the catalog: {sorted(names - known)}"
    rate = query(prom, "histogram_quantile(0.99, sum by (le) (peregrine_sink_latency_seconds_bucket))")
    assert rate and rate[0]["value"][1] not in ("NaN", "")


def test_no_series_names_a_pod_host_or_instance(scraped: Scraped) -> None:
    prom = scraped.prometheus
    series = wait_for(lambda: prom.series('{__name__=~"peregrine_.+"}'), "peregrine series")
    labels = {k for s in series for k in s}
    assert labels <= ALLOWED_LABELS, sorted(labels - ALLOWED_LABELS)
    assert not labels & PER_POD
    # The process identity lives in target_info only (one series per process), as the design wants.
    infos = query(prom, "target_info")
    assert {(i["metric"]["service_name"], i["metric"]["peregrine_role"]) for i in infos} == {
        ("peregrine", "sink"), ("peregrine", "k8s-meta")}


def test_latency_buckets_resolve_sub_second_latencies(scraped: Scraped) -> None:
    buckets = query(scraped.prometheus, 'peregrine_sink_latency_seconds_bucket{destination="archive"}')
    bounds = sorted(float(b["metric"]["le"]) for b in buckets if b["metric"]["le"] != "+Inf")
    assert len([b for b in bounds if 0 < b < 1]) >= 5, bounds


def test_dashboard_panels_show_data_for_the_scraped_roles(scraped: Scraped) -> None:
    """Every dashboard expression whose series all exist in this Prometheus returns data: label
    matchers, groupings and functions fit the real series, not just their names."""
    prom = scraped.prometheus
    wait_for(lambda: query(prom, "count(peregrine_k8s_meta_keys) and count(peregrine_sink_delivered_total)"),
             "both roles scraped")
    present = {s["__name__"] for s in prom.series('{__name__=~"peregrine_.+"}')}
    checked = []
    for expr in expressions(dashboard()):
        names = set(METRIC.findall(expr))
        if expr.startswith("label_values(") or not names <= present:
            continue
        promql = expr.replace("$__rate_interval", "1m").replace("$destination", ".*")
        wait_for(lambda q=promql: query(prom, q), f"data for {expr}")
        checked.append(expr)
    assert len(checked) >= 8, checked
