"""Interest (`rules.interest`): what an event needs for any loaded rule to match it.

Soundness on random rules files and events is checked in `test_reference_differential` (an event
the reference evaluator matches is always admitted); here, on Falco's stable rules, whose types
are constrained, and on the cases that must leave a field unconstrained."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from test_reference_differential import SETTINGS, _collect_literals, falco_events

from rules import interest, reference
from rules.collect import load_files, load_sources
from rules.loaded import LoadResult
from rules.ruleset import Ruleset, compile_rules


def _event(type_name: str, **spec: Any) -> Any:
    from benchmarks.workload import build_event

    return build_event(type_name, **spec)


@cache
def _stable(rules_dir: str) -> tuple[LoadResult, Ruleset, tuple[str, ...]]:
    result = load_files([Path(rules_dir) / "falco_rules.yaml"])
    literals: set[str] = set()
    for rule in result.rules:
        _collect_literals(rule.condition, literals)
    return result, compile_rules(result), tuple(sorted(literals))


def _rules(*conditions: str) -> Ruleset:
    docs = [{"rule": f"r{i}", "desc": "d", "condition": c, "output": "o", "priority": "INFO"}
            for i, c in enumerate(conditions)]  # fmt: skip
    return compile_rules(load_sources([("r.yaml", yaml.safe_dump(docs))]))


def test_falco_stable_constrains_the_paths_of_opens(falco_rules_dir: Path) -> None:
    _, ruleset, _ = _stable(str(falco_rules_dir))
    (fd_name,) = ruleset.interest["openat"].fields
    assert fd_name.field == "fd.name" and "/etc/shadow" in fd_name.exact and "/etc/" in fd_name.prefixes
    assert interest.admits(ruleset.interest, _event("openat", fd={"name": "/etc/shadow"}))
    assert not interest.admits(ruleset.interest, _event("openat", fd={"name": "/usr/lib/libc.so.6"}))
    assert not interest.admits(ruleset.interest, _event("mkdir"))  # no rule of that type


@settings(SETTINGS, max_examples=8)
@given(data=st.data())
def test_every_event_falco_stable_matches_is_admitted(falco_rules_dir: Path, data: st.DataObject) -> None:
    result, ruleset, literals = _stable(str(falco_rules_dir))
    for ev in data.draw(st.lists(falco_events(literals), min_size=1, max_size=8)):
        if reference.match(result.rules, ev, all_matches=True):
            assert interest.admits(ruleset.interest, ev)


def test_a_rule_that_does_not_constrain_a_field_frees_it_but_its_alternative_still_narrows() -> None:
    both = _rules("evt.type = openat and fd.name startswith /etc/", "evt.type = openat and proc.name = cat")
    assert both.interest["openat"].fields == ()
    assert len(both.interest["openat"].alternatives) == 2
    assert interest.admits(both.interest, _event("openat", fd={"name": "/usr/x"}, proc={"name": "cat"}))
    assert interest.admits(both.interest, _event("openat", fd={"name": "/etc/x"}, proc={"name": "ls"}))
    assert not interest.admits(both.interest, _event("openat", fd={"name": "/usr/x"}, proc={"name": "ls"}))


def test_a_rule_that_requires_nothing_leaves_no_alternative() -> None:
    # a test of the flags other than their access mode is no requirement the classes know
    flags = "evt.type = openat and evt.arg.flags contains O_CREAT"
    both = _rules("evt.type = openat and fd.name startswith /etc/", flags)
    assert both.interest["openat"] == interest.TypeInterest("openat", (), ())


def test_an_or_unions_its_branches_and_a_transformer_reads_another_field() -> None:
    ruleset = _rules(
        "evt.type = openat and (fd.name endswith .pem or fd.name contains /.ssh/)",
        "evt.type = execve and tolower(proc.name) = bash",
    )
    (fd_name,) = ruleset.interest["openat"].fields
    assert (fd_name.suffixes, fd_name.contains) == (frozenset({".pem"}), frozenset({"/.ssh/"}))
    assert ruleset.interest["execve"].fields == ()
    assert not interest.admits(ruleset.interest, _event("openat", fd={"name": "/home/a/notes"}))
    assert interest.admits(ruleset.interest, _event("openat", fd={"name": "/home/a/.ssh/id"}))


def test_a_negated_test_constrains_nothing() -> None:
    ruleset = _rules("evt.type = openat and not fd.name startswith /proc/")
    assert ruleset.interest["openat"].fields == ()


_PATHS = ("/etc/shadow", "/etc/", "/etc", "/home/a/.ssh/id_rsa", "/tmp/x.pem", "/usr/lib/libc.so.6", "x", "")
_TESTS = ("=", "startswith", "endswith", "contains", "in", "glob", "pmatch", "!=")


@st.composite
def _path_rules(draw: st.DrawFn) -> tuple[str, ...]:
    """Rules on openat testing fd.name (and sometimes proc.name) with every string operator, in
    ands and ors, with literals the events' paths are made of."""
    def test() -> str:
        op, value = draw(st.sampled_from(_TESTS)), draw(st.sampled_from(_PATHS[:-1]))
        field = draw(st.sampled_from(("fd.name", "fd.name", "proc.name")))
        if op in ("in", "pmatch"):
            return f"{field} {op} ({value}, {draw(st.sampled_from(_PATHS[:-1]))})"
        return f"{field} {op} {value}" if op != "glob" else f"{field} glob '{value}*'"

    def condition() -> str:
        parts = [test() for _ in range(draw(st.integers(1, 3)))]
        return f" {draw(st.sampled_from(('and', 'or')))} ".join(parts)

    return tuple(f"evt.type = openat and ({condition()})" for _ in range(draw(st.integers(1, 3))))


@settings(SETTINGS, max_examples=150)
@given(conditions=_path_rules(), path=st.sampled_from(_PATHS), suffix=st.sampled_from(("", "/x", "a")),
       name=st.sampled_from(("cat", "/etc/shadow", "x")))  # fmt: skip
def test_every_event_a_path_rule_matches_is_admitted(
    conditions: tuple[str, ...], path: str, suffix: str, name: str
) -> None:
    docs = [{"rule": f"r{i}", "desc": "d", "condition": c, "output": "o", "priority": "INFO"}
            for i, c in enumerate(conditions)]  # fmt: skip
    result = load_sources([("r.yaml", yaml.safe_dump(docs))])
    ruleset = compile_rules(result)
    ev = _event("openat", fd={"name": path + suffix}, proc={"name": name})
    if reference.match(result.rules, ev, all_matches=True):
        assert interest.admits(ruleset.interest, ev), (conditions, ev, ruleset.interest)


@pytest.mark.parametrize(
    ("test", "matching", "other"),
    [
        ("fd.name = /etc/shadow", "/etc/shadow", "/etc/shadow2"),
        ("fd.name in (/etc/shadow, /etc/gshadow)", "/etc/gshadow", "/etc"),
        ("fd.name startswith /etc/", "/etc/passwd", "/usr/etc/passwd"),
        ("fd.name endswith .pem", "/tmp/x.pem", "/tmp/x.pem.bak"),
        ("fd.name contains /.ssh/", "/home/a/.ssh/id", "/home/a/ssh/id"),
        ("fd.name glob '/etc/*'", "/etc/x", "/var/etc/x"),
        ("fd.directory = /etc", "/etc/x", "/etc2/x"),
        ("fd.filename = shadow", "/etc/shadow", "/etc/shadows"),
        ("proc.name = cat", "/any", None),
    ],
)
def test_each_kind_of_requirement_admits_what_matches_and_drops_the_rest(
    test: str, matching: str, other: str | None
) -> None:
    condition = f"evt.type = openat and {test}"
    ruleset = _rules(condition)
    result = load_sources([("r.yaml", yaml.safe_dump([
        {"rule": "r0", "desc": "d", "condition": condition, "output": "o", "priority": "INFO"}]))])
    hit, miss = (_event("openat", fd={"name": p}, proc={"name": "cat"}) for p in (matching, other or "/"))
    assert reference.match(result.rules, hit, all_matches=True) == ["r0"]  # the oracle agrees it matches
    assert interest.admits(ruleset.interest, hit)
    if other is not None:
        assert not reference.match(result.rules, miss, all_matches=True)
        assert not interest.admits(ruleset.interest, miss)
