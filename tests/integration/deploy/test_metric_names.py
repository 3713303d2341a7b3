"""Metric naming across every component: ``peregrine.<component>.<what>``, a unit on every
instrument, and no attribute that names a pod, node, host, container or namespace.

Names and units come from the instruments the components really register (`metric_catalog`,
through a recording meter provider). Attributes of synchronous instruments are only known where
they are recorded, so their keys are read from the source: every dict literal handed to
``.add``/``.record``/``set``/``Observation`` or bound to a name ending in ``attributes``.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from metric_catalog import ROOT, Instrument, catalog

COMPONENTS = ("collector", "worker", "sink", "k8s_meta")
NAME = re.compile(r"peregrine\.(collector|worker|sink|k8s_meta)(\.[a-z][a-z0-9_]*)+")
# UCUM units OpenTelemetry's semantic conventions use, or a {annotation} for counts of things.
UNITS = re.compile(r"s|By|1|\{[a-z_]+\}")
# Suffixes the Prometheus exporter derives from kind and unit; in the name they would be doubled.
SUFFIXES = ("_total", "_seconds", "_bytes", "_ratio", ".total", ".seconds", ".bytes")
# Attribute keys the components may use; all are bounded sets that do not grow with the cluster.
# "rule": a rule's name, from the operator's rules files (never a node's), at most
# streams.rulecost.MAX_RULE_LABELS of them; "event_type": a name of rules.record's fixed table (280),
# set by the collector's interest counts for the types it has attached (38 with Falco's files)
ALLOWED_ATTRIBUTES = {"category", "reason", "outcome", "priority", "destination", "resource", "rule",
                      "event_type"}  # fmt: skip
PACKAGES = ("collectors", "enrichers", "streams", "sinks", "telemetry")


@pytest.fixture(scope="module")
def instruments() -> list[Instrument]:
    return catalog()


def test_every_component_registers_instruments(instruments: list[Instrument]) -> None:
    meters = {i.meter for i in instruments}
    assert meters == {f"peregrine.{c}" for c in COMPONENTS}


def test_names_follow_peregrine_component_what(instruments: list[Instrument]) -> None:
    bad = [i.name for i in instruments if not NAME.fullmatch(i.name) or not i.name.startswith(i.meter + ".")]
    assert bad == [], "names must be peregrine.<component>.<what> under the meter peregrine.<component>"
    names = [i.name for i in instruments]
    assert len(names) == len(set(names)), "one name, one instrument"


def test_names_do_not_spell_the_unit(instruments: list[Instrument]) -> None:
    doubled = [i.name for i in instruments if i.name.endswith(SUFFIXES)]
    assert doubled == [], "the unit belongs in `unit`; the exporter appends _total/_seconds/_bytes itself"


def test_every_instrument_has_a_unit(instruments: list[Instrument]) -> None:
    bad = {i.name: i.unit for i in instruments if not UNITS.fullmatch(i.unit)}
    assert bad == {}, "units: s, By, 1 or a {annotation}"
    histograms = {i.name: i.unit for i in instruments if i.kind == "histogram"}
    assert histograms and all(u in ("s", "By") for u in histograms.values()), histograms


def test_prometheus_names_carry_the_unit(instruments: list[Instrument]) -> None:
    for i in instruments:
        base = i.name.replace(".", "_")
        assert i.prometheus, f"{i.name}: the exporter rendered nothing"
        if i.unit == "s" and "counter" in i.kind:  # seconds counted up, as CPU time
            assert i.prometheus == (base + "_seconds_total",), i
        elif i.unit == "s":
            expected = {f"{base}_seconds_{part}" for part in ("bucket", "sum", "count")}
            assert expected <= set(i.prometheus), i
        elif "counter" in i.kind:
            # the exporter adds _bytes unless the name already ends with it
            unit = "_bytes" if i.unit == "By" and not base.endswith("_bytes") else ""
            assert i.prometheus == (base + unit + "_total",), i
        else:
            assert i.prometheus == (base,), i


def _attribute_dicts(tree: ast.AST) -> Iterator[ast.Dict]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and len(node.args) >= 2 and isinstance(node.args[1], ast.Dict):
            f = node.func
            called = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
            if called in ("add", "record", "set", "Observation"):
                yield node.args[1]
        elif isinstance(node, ast.Assign) and isinstance(node.value, ast.Dict):
            for target in node.targets:
                name = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", "")
                if name.endswith("attributes"):
                    yield node.value


def test_attributes_are_bounded_and_never_name_a_pod() -> None:
    found: dict[str, set[str]] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            source = path.read_text(encoding="utf-8")
            if "opentelemetry" not in source and ".add(" not in source and ".record(" not in source:
                continue
            for d in _attribute_dicts(ast.parse(source, str(path))):
                for key in d.keys:
                    if isinstance(key, ast.Constant) and isinstance(key.value, str):
                        where = f"{Path(path).relative_to(ROOT)}:{key.lineno}"
                        found.setdefault(key.value, set()).add(where)
    unexpected = {k: sorted(v) for k, v in found.items() if k not in ALLOWED_ATTRIBUTES}
    assert unexpected == {}, "new metric attribute keys: check their cardinality, then allow them here"
    assert {"destination", "category", "priority"} <= set(found)
