"""The reference evaluator (rules.reference) itself agrees with Falco: every conformance case that
states Falco's outcome (semantics cases, stable-rule triggers and near misses) holds through it,
plus libs' own operator vectors for the parts it implements from scratch (fnmatch, pmatch)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from benchmarks.workload import build_event
from rules import reference
from rules.collect import load_files, load_sources
from rules.fields import FIELDS
from rules.loaded import LoadedRule

CONFORMANCE = Path(__file__).parents[2] / "conformance" / "data"
SEMANTICS: list[dict[str, Any]] = yaml.safe_load((CONFORMANCE / "semantics_cases.yaml").read_text())["cases"]
EVALUATED = [
    case
    for case in SEMANTICS
    if case["expect"] != "compile_error"
    and not any(name in case["condition"] for name in reference.UNSUPPORTED)
    and not case.get("by_index")  # the reference evaluates a condition, not libs' event-type index
]


def _stable_cases() -> ModuleType:
    spec = importlib.util.spec_from_file_location("stable_rules_cases", CONFORMANCE / "stable_rules_cases.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while building the class
    spec.loader.exec_module(module)
    return module


STABLE = _stable_cases()


def _case_rule(case: dict[str, Any]) -> LoadedRule:
    items: list[dict[str, Any]] = []
    for name, values in (case.get("lists") or {}).items():
        items.append({"list": name, "items": values})
    for name, condition in (case.get("macros") or {}).items():
        items.append({"macro": name, "condition": condition})
    items.append(
        {"rule": "case", "desc": "d", "condition": case["condition"], "output": "o", "priority": "WARNING"}
    )
    (rule,) = load_sources([("case.yaml", yaml.safe_dump(items, sort_keys=False))]).rules
    return rule


@pytest.mark.parametrize("case", EVALUATED, ids=[c["name"] for c in EVALUATED])
def test_semantics_case_holds_through_the_reference(case: dict[str, Any]) -> None:
    spec = dict(case["event"])
    ev = build_event(spec.pop("type"), **spec)
    assert reference.evaluate(_case_rule(case).condition, ev, ip_names=case.get("ip_names")) is case["expect"]


@pytest.fixture(scope="module")
def stable_rules(falco_rules_dir: Path) -> tuple[LoadedRule, ...]:
    return load_files([falco_rules_dir / "falco_rules.yaml"]).rules


@pytest.mark.parametrize("case", STABLE.CASES, ids=[c.rule for c in STABLE.CASES])
def test_stable_rule_fires_on_its_trigger_through_the_reference(
    stable_rules: tuple[LoadedRule, ...], case: Any
) -> None:
    matched = reference.match(stable_rules, case.trigger(), all_matches=True, **STABLE.LOAD_OPTIONS)
    assert matched[:1] == [case.rule]
    assert sorted(matched) == sorted((case.rule, *case.also))


@pytest.mark.parametrize("case", STABLE.CASES, ids=[c.rule for c in STABLE.CASES])
def test_stable_rule_ignores_its_near_miss_through_the_reference(
    stable_rules: tuple[LoadedRule, ...], case: Any
) -> None:
    matched = reference.match(stable_rules, case.near_miss(), all_matches=True, **STABLE.LOAD_OPTIONS)
    assert case.rule not in matched, case.why_not


def test_first_match_reports_the_first_rule_in_file_order(stable_rules: tuple[LoadedRule, ...]) -> None:
    for case in STABLE.CASES:
        assert reference.match(stable_rules, case.trigger(), **STABLE.LOAD_OPTIONS) == [case.rule]


def test_disabled_rules_never_match() -> None:
    text = yaml.safe_dump([
        {"rule": "off", "desc": "d", "condition": "proc.name = bash", "output": "o", "priority": "INFO",
         "enabled": False},
        {"rule": "on", "desc": "d", "condition": "proc.name = bash", "output": "o", "priority": "INFO"},
    ])  # fmt: skip
    rules = load_sources([("r.yaml", text)]).rules
    assert reference.match(rules, build_event("execve"), all_matches=True) == ["on"]


def test_every_catalog_field_is_implemented_or_listed() -> None:
    ev = build_event("openat", args={"flags": 0, "mode": 0}, fd={"typechar": "f", "name": "/etc/x"})
    for name, spec in FIELDS.items():
        assert name not in reference.UNSUPPORTED
        arg = "0" if spec.flags & spec.flags.ARG_REQUIRED else None
        if name in ("evt.arg", "evt.rawarg"):
            arg = "flags"
        if name in ("k8s.pod.label", "container.mount.dest"):
            arg = "app"
        reference._Extract(ev, {}).value(name, arg)  # raises KeyError for a field it lacks


# --- libs' operator vectors for what the reference implements itself ----------------------------
@pytest.mark.parametrize(
    ("pattern", "text", "expected"),
    [
        ("/etc/*", "/etc/ssh/sshd_config", True),  # * crosses /
        ("a\\*", "a*", True),  # backslash quotes
        ("a\\*", "a\\x", False),
        ("[!a]b", "cb", True),
        ("[^a]b", "ab", False),  # glibc takes ^ as negation too
        ("[]]", "]", True),
        ("[a-c]x", "bx", True),
        ("[[:digit:]]", "7", True),
        ("[ab", "[ab", True),  # an unclosed [ is a literal
        ("ab\\", "ab\\", False),  # a trailing backslash matches nothing
        ("?", "é", False),  # one byte, and é is two
    ],
)
def test_glob_is_fnmatch_without_pathname(pattern: str, text: str, expected: bool) -> None:
    assert reference.fnmatch_bytes(pattern.encode(), text.encode(), casefold=False) is expected


def test_iglob_folds_ascii_only() -> None:
    assert reference.fnmatch_bytes(b"BA*", b"bash", casefold=True)
    assert not reference.fnmatch_bytes("É".encode(), "é".encode(), casefold=True)


@pytest.mark.parametrize(
    ("paths", "value", "expected"),
    [
        (["/opt/dir"], "/opt/dir/subdir/file.txt", True),
        (["/opt/*/subdir"], "/opt/dir/subdir/file.txt", True),
        (["/opt/di[r]/subdir"], "/opt/dir/subdir/file.txt", True),
        (["/opt/dir2"], "/opt/dir/subdir/file.txt", False),
        (["/opt/di/subdir"], "/opt/dir/subdir/file.txt", False),
        (["/opt/*/*/subsubdir"], "/opt/dir/subdir/file.txt", False),
        (["/var/run"], "/var/runx/a", False),
        (["/var/run"], "/var", False),
        (["/usr/lib", "/usr"], "/usr/share/x", True),  # the shorter path replaces the longer
        (["/a/b"], "/a//b/c", True),  # empty components are skipped
    ],
)
def test_pmatch_matches_whole_components(paths: list[str], value: str, expected: bool) -> None:
    assert reference._pmatch(value.encode(), [p.encode() for p in paths]) is expected


def test_the_reference_imports_none_of_the_code_it_checks() -> None:
    """An oracle must not share the code it checks: no code generation, gate, optimiser, operator,
    operand or transformer tables, and from the catalog only what it declares (types, flags)."""
    import ast as pyast

    tree = pyast.parse(Path(reference.__file__).read_text())
    imported = {
        (node.module, alias.name)
        for node in pyast.walk(tree)
        if isinstance(node, pyast.ImportFrom)
        for alias in node.names
    } | {
        (alias.name, None)
        for node in pyast.walk(tree)
        if isinstance(node, pyast.Import)
        for alias in node.names
    }
    forbidden = {
        "compiler",
        "codegen",
        "condtree",
        "optimize",
        "gate",
        "operators",
        "operands",
        "transformers",
    }
    for module, name in imported:
        assert not (
            {module, name} & {f"rules.{f}" for f in forbidden} or (module == "rules" and name in forbidden)
        )
    assert {name for module, name in imported if module == "rules.fields"} <= {
        "FieldFlag",
        "FieldType",
        "lookup",
    }


@pytest.mark.parametrize(
    ("condition", "on_personality"),
    [
        ("not evt.type = syncfs and proc.name = sh", False),  # libs: the generic code is left out
        ("evt.type != syncfs and proc.name = sh", False),
        ("evt.type != openat and proc.name = sh", True),
        ("not evt.type in (openat, execve) and proc.name = sh", True),
        ("evt.type = personality and proc.name = sh", True),
        ("(evt.type = syncfs or proc.name = sh) and not evt.type = syncfs", False),
        ("not (evt.type = openat and proc.name = bash)", True),
        ("proc.name = sh", True),
    ],
)
def test_a_generic_syscall_is_matched_only_by_rules_libs_indexes_under_the_generic_code(
    condition: str, on_personality: bool
) -> None:
    """libs indexes rules by event code, and every syscall without an event of its own shares one
    (PPME_GENERIC_X): a rule excluding syncfs by evt.type never sees personality either, though
    its condition holds there (falcosecurity/libs filter/ppm_codes.cpp, names_to_event_set)."""
    rule = {"rule": "r", "desc": "d", "condition": condition, "output": "o", "priority": "INFO"}
    text = yaml.safe_dump([rule])
    rules = load_sources([("r.yaml", text)]).rules
    ev = build_event("personality", proc={"name": "sh"})
    assert reference.match(rules, ev) == (["r"] if on_personality else [])
