"""Each rule of Falco's stable falco_rules.yaml, loaded alone, fires on its event and not on a near miss.

Cases and the record builder: tests/conformance/data/stable_rules_cases.py.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

import rules


def _load_cases() -> ModuleType:
    # tests have no packages: load the data module by path, under a name no other module uses
    path = Path(__file__).parent / "data" / "stable_rules_cases.py"
    spec = importlib.util.spec_from_file_location("stable_rules_cases", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while building the class
    spec.loader.exec_module(module)
    return module


DATA = _load_cases()
CASES = {case.rule: case for case in DATA.CASES}


@pytest.fixture(scope="module")
def ruleset(falco_rules_dir: Path) -> rules.Ruleset:
    return rules.load([falco_rules_dir / "falco_rules.yaml"], all_matches=True, **DATA.LOAD_OPTIONS)


def test_every_stable_rule_has_a_case(ruleset: rules.Ruleset) -> None:
    assert sorted(rule.name for rule in ruleset.rules) == sorted(CASES)


@pytest.mark.parametrize("name", list(CASES))
def test_rule_fires_on_its_event(ruleset: rules.Ruleset, name: str) -> None:
    case = CASES[name]
    matched = [rule.name for rule in ruleset.match_all(case.trigger())]
    assert matched[:1] == [name]  # first match: the case's own rule
    assert sorted(matched) == sorted((name, *case.also))


@pytest.mark.parametrize("name", list(CASES))
def test_rule_does_not_fire_on_the_near_miss(ruleset: rules.Ruleset, name: str) -> None:
    case = CASES[name]
    matched = [rule.name for rule in ruleset.match_all(case.near_miss())]
    assert name not in matched, case.why_not


def test_first_match_reports_one_rule(falco_rules_dir: Path) -> None:
    first = rules.load([falco_rules_dir / "falco_rules.yaml"], **DATA.LOAD_OPTIONS)
    for name, case in CASES.items():
        rule = first.match(case.trigger())
        assert rule is not None and rule.name == name
