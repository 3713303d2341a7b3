"""Runs the rules-loader conformance cases of data/loader_cases.yaml (Falco's loader behaviour)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from rules.collect import load_sources
from rules.errors import RulesError

CASES = yaml.safe_load((Path(__file__).parent / "data" / "loader_cases.yaml").read_text())["cases"]


def _sources(case: dict[str, Any]) -> list[tuple[str, str]]:
    return [(f"{case['name']}_{i}.yaml", text) for i, text in enumerate(case["files"])]


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_loader_case(case: dict[str, Any]) -> None:
    expect = case["expect"]
    sources = _sources(case)
    if "error" in expect:
        with pytest.raises(RulesError) as info:
            load_sources(sources)
        error = info.value
        assert expect["error"] in error.message, error.render()
        if "error_type" in expect:
            assert type(error).__name__ == expect["error_type"]
        file_index = expect.get("error_file", len(sources) - 1)
        assert error.location.file == sources[file_index][0]
        assert error.location.line is not None, "every loader error names a line"
        return

    result = load_sources(sources)
    rules = {rule.name: rule for rule in result.rules}
    codes = {w.code for w in result.warnings}
    for name, text in expect.get("conditions", {}).items():
        assert rules[name].condition.to_source() == text
    for name, text in expect.get("texts", {}).items():
        assert rules[name].condition_text == text
    for name, text in expect.get("outputs", {}).items():
        assert rules[name].output == text
    for name, text in expect.get("descs", {}).items():
        assert rules[name].desc == text
    for name, label in expect.get("priorities", {}).items():
        assert rules[name].priority.label == label
    for name, tags in expect.get("tags", {}).items():
        assert list(rules[name].tags) == tags
    for name, enabled in expect.get("enabled", {}).items():
        assert rules[name].enabled is enabled
    if "order" in expect:
        assert [rule.name for rule in result.rules] == expect["order"]
    for code in expect.get("warnings", []):
        assert code in codes, [w.render() for w in result.warnings]
    for code in expect.get("no_warnings", []):
        assert code not in codes, [w.render() for w in result.warnings]


def test_every_case_names_its_source() -> None:
    for case in CASES:
        assert case.get("source") and case.get("pins"), case["name"]
