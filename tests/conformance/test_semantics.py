"""Runs tests/conformance/data/semantics_cases.yaml: each case compiles one rule through the real
loader and compiler and evaluates one event record, expecting Falco's outcome."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from benchmarks.workload import build_event
from rules import CompileError
from rules.collect import load_sources
from rules.ruleset import Ruleset, compile_rules

CASES: list[dict[str, Any]] = yaml.safe_load(
    (Path(__file__).parent / "data" / "semantics_cases.yaml").read_text()
)["cases"]


def compile_case(case: dict[str, Any]) -> Ruleset:
    items: list[dict[str, Any]] = []
    for name, values in (case.get("lists") or {}).items():
        items.append({"list": name, "items": values})
    for name, condition in (case.get("macros") or {}).items():
        items.append({"macro": name, "condition": condition})
    rule = {"rule": "case", "desc": "d", "condition": case["condition"], "output": "o", "priority": "WARNING"}
    items.append(rule)
    text = yaml.safe_dump(items, sort_keys=False)
    return compile_rules(load_sources([("case.yaml", text)]), ip_names=case.get("ip_names"))


def event_of(spec: dict[str, Any]) -> list[object]:
    spec = dict(spec)
    return build_event(spec.pop("type"), **spec)


def test_case_names_are_unique() -> None:
    names = [c["name"] for c in CASES]
    assert len(names) == len(set(names))


def test_every_case_names_what_it_pins_and_its_source() -> None:
    assert all(c.get("pins") and c.get("source") for c in CASES)


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_semantics(case: dict[str, Any]) -> None:
    if case["expect"] == "compile_error":
        with pytest.raises(CompileError) as info:
            compile_case(case)
        assert case["error"] in info.value.message
        return
    ruleset = compile_case(case)
    ev = event_of(case["event"])
    matched = ruleset.match(ev) is not None
    assert matched is case["expect"], ruleset.source(ev[0])
    assert (len(ruleset.match_all(ev)) == 1) is case["expect"]
    assert (len(ruleset.evaluate([ev])) == 1) is case["expect"]
    if "warning" in case:
        assert any(case["warning"] in w.message for w in ruleset.warnings)
