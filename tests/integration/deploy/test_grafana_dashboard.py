"""The Grafana dashboard (k8s/dashboards/peregrine.json) is built only on metrics the code exports.

Every PromQL expression (panels and template variables) names only series the exporter renders
for an instrument some component registers (`metric_catalog`), every stage has its panels, no
expression groups by a per-pod label, and a real Prometheus parses every expression.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from typing import Any

from metric_catalog import ROOT, catalog

DASHBOARD = ROOT / "k8s" / "dashboards" / "peregrine.json"
METRIC = re.compile(r"\bperegrine_[a-z0-9_]+")
PER_POD_GROUPING = re.compile(r"\b(by|without)\s*\(([^)]*)\)")
# What the brief asks to see, per stage: a series of each of these families must be on a panel.
REQUIRED = {
    "collector": ["events", "drops", "batches", "payload", "publish_errors", "queue_depth"],
    "worker": ["events", "decode_duration", "eval_duration", "alerts", "dlq", "gaps"],
    "sink": ["delivered", "failed", "retried", "dlq", "latency"],
    "k8s_meta": ["records_produced", "reconnects", "relists_gone"],
}


def dashboard() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return doc


def panels(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for p in doc["panels"]:
        yield p
        yield from p.get("panels", [])


def expressions(doc: dict[str, Any]) -> list[str]:
    found = [t["expr"] for p in panels(doc) for t in p.get("targets", [])]
    for var in doc["templating"]["list"]:
        if var["type"] == "query":
            found.append(var["query"]["query"] if isinstance(var["query"], dict) else var["query"])
    return found


def test_every_expression_names_only_exported_series() -> None:
    exported = {n for i in catalog() for n in i.prometheus}
    exprs = expressions(dashboard())
    assert len(exprs) > 30
    unknown = {name: e for e in exprs for name in METRIC.findall(e) if name not in exported}
    assert unknown == {}, "metric names no component exports"
    assert all(METRIC.search(e) for e in exprs), "every expression reads a Peregrine series"


def test_every_stage_has_its_panels() -> None:
    used = {name for e in expressions(dashboard()) for name in METRIC.findall(e)}
    missing = [
        f"peregrine_{component}_{what}"
        for component, whats in REQUIRED.items()
        for what in whats
        if not any(n.startswith(f"peregrine_{component}_{what}") for n in used)
    ]
    assert missing == []


def test_no_panel_splits_by_pod_or_instance() -> None:
    for e in expressions(dashboard()):
        for _, labels in PER_POD_GROUPING.findall(e):
            assert not {"pod", "instance", "node", "host"} & {x.strip() for x in labels.split(",")}, e


def test_panels_are_well_formed() -> None:
    doc = dashboard()
    ids = [p["id"] for p in panels(doc)]
    assert len(ids) == len(set(ids))
    for p in panels(doc):
        if p["type"] == "row":
            continue
        assert p["datasource"]["uid"] == "${datasource}", p["title"]
        assert p["targets"] and p["fieldConfig"]["defaults"]["unit"], p["title"]
        assert 0 <= p["gridPos"]["x"] and p["gridPos"]["x"] + p["gridPos"]["w"] <= 24, p["title"]


def test_a_real_prometheus_parses_every_expression(prometheus: Callable[[list[str]], Any]) -> None:
    prom = prometheus([])
    for e in expressions(dashboard()):
        if e.startswith("label_values("):  # a Grafana function, not PromQL
            continue
        promql = e.replace("$__rate_interval", "1m").replace("$destination", ".*")
        prom.api("query", query=promql)  # a parse error is HTTP 400, raised by urlopen
