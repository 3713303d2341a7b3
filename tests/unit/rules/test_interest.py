"""Interest (`rules.interest`): what an event needs for any loaded rule to match it.

Soundness on random rules files and events is checked in `test_reference_differential` (an event
the reference evaluator matches is always admitted); here, on Falco's stable rules, whose types
are constrained, and on the cases that must leave a field unconstrained."""

from __future__ import annotations

import dataclasses
from functools import cache
from pathlib import Path
from typing import Any
from unittest.mock import patch

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from rule_strategies import collectable
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
        if collectable(ev) and reference.match(result.rules, ev, all_matches=True):
            assert interest.admits(ruleset.interest, ev)


def test_a_rule_that_does_not_constrain_a_field_frees_it_but_its_alternative_still_narrows() -> None:
    both = _rules("evt.type = openat and fd.name startswith /etc/", "evt.type = openat and proc.name = cat")
    assert both.interest["openat"].fields == ()
    assert len(both.interest["openat"].alternatives) == 2
    assert interest.admits(both.interest, _event("openat", fd={"name": "/usr/x"}, proc={"name": "cat"}))
    assert interest.admits(both.interest, _event("openat", fd={"name": "/etc/x"}, proc={"name": "ls"}))
    assert not interest.admits(both.interest, _event("openat", fd={"name": "/usr/x"}, proc={"name": "ls"}))


def test_the_types_a_rule_reads_fd_types_on_carry_the_fd_table() -> None:
    """In the condition through a macro, or in the output alone: the collector must capture the
    table for the rule's types, and only for those."""
    docs = [
        {"macro": "holds_socket", "condition": "fd.types intersects (ipv4, ipv6)"},
        {"rule": "by_macro", "desc": "d", "condition": "evt.type = connect and holds_socket", "output": "o",
         "priority": "INFO"},
        {"rule": "by_output", "desc": "d", "condition": "evt.type = openat and fd.name = /etc/shadow",
         "output": "held %fd.types", "priority": "INFO"},
        {"rule": "neither", "desc": "d", "condition": "evt.type in (openat, accept) and proc.name = nc",
         "output": "o", "priority": "INFO"},
    ]  # fmt: skip
    loaded = compile_rules(load_sources([("r.yaml", yaml.safe_dump(docs))]))
    tables = {name: t.fd_table for name, t in loaded.interest.items()}
    assert tables == {"connect": True, "openat": True, "accept": False}


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


# Falco's macros and their like: access mode and outcome tests, alone, negated, with the paths; {n}
# is one of the results events have, so equalities hold as often as they fail
_OUTCOME_TESTS = (
    "evt.is_open_read=true", "evt.is_open_read=false", "evt.is_open_write=true", "evt.is_open_write=false",
    "fd.num>=0", "fd.num=-1", "fd.num<0", "fd.num={n}", "fd.num>{n}", "fd.num<={n}", "fd.num in ({n}, {n})",
    "fd.num!={n}", "evt.rawres>=0", "evt.rawres<0", "evt.rawres={n}", "evt.rawres<{n}", "evt.rawres>={n}",
    "evt.res=SUCCESS", "evt.res!=SUCCESS", "evt.res startswith E", "evt.res=ENOENT",
    "evt.res in (EACCES, EPERM)", "evt.res contains O", "evt.failed=true", "evt.failed=false",
    "fd.name startswith /etc/", "fd.name endswith .pem", "proc.name=cat", "evt.arg.flags contains O_CREAT",
)  # fmt: skip
# O_ACCMODE values with other bits (O_CREAT, O_TRUNC, O_DIRECTORY, O_CLOEXEC)
_FLAGS = st.builds(lambda mode, bits: mode | bits, st.integers(0, 3),
                   st.sampled_from((0, 0o100, 0o1000, 0o200000, 0o2000000, 0o100 | 0o1000)))  # fmt: skip
_RESULT_VALUES = (0, 1, 3, 1 << 20, -1, -2, -13, -4095)
_RESULTS = st.sampled_from(_RESULT_VALUES)


@st.composite
def _outcome_rules(draw: st.DrawFn) -> tuple[str, ...]:
    """Rules on openat over the access-mode and outcome fields (and a path or a name), in ands,
    ors and nots."""

    def condition(depth: int) -> str:
        if depth == 0 or draw(st.booleans()):
            test = draw(st.sampled_from(_OUTCOME_TESTS))
            return test.replace("{n}", str(draw(_RESULTS)), 1).replace("{n}", str(draw(_RESULTS)))
        kind = draw(st.sampled_from(("and", "or", "not")))
        if kind == "not":
            return f"not ({condition(depth - 1)})"
        return f"({condition(depth - 1)}) {kind} ({condition(depth - 1)})"

    rules = [f"evt.type = openat and ({condition(3)})" for _ in range(draw(st.integers(1, 3)))]
    # a rule that narrows, so a rule wrongly found to match nothing (which drops out) is not hidden
    # behind the type having no alternative left
    return (*rules, "evt.type = openat and proc.name = never")


@settings(SETTINGS, max_examples=150)
@given(conditions=_outcome_rules(), flags=_FLAGS, res=_RESULTS,
       path=st.sampled_from(("/etc/shadow", "/tmp/x.pem", "/usr/lib/x")),
       name=st.sampled_from(("cat", "ls")))  # fmt: skip
def test_every_open_an_outcome_rule_matches_is_admitted(
    conditions: tuple[str, ...], flags: int, res: int, path: str, name: str
) -> None:
    """The access modes and outcomes alternatives carry, against the reference evaluator, on opens
    as the collector writes them (the fd's number is the result)."""
    docs = [{"rule": f"r{i}", "desc": "d", "condition": c, "output": "o", "priority": "INFO"}
            for i, c in enumerate(conditions)]  # fmt: skip
    result = load_sources([("r.yaml", yaml.safe_dump(docs))])
    ruleset = compile_rules(result)
    ev = _event("openat", args={"flags": flags}, res=res, fd={"name": path, "num": res}, proc={"name": name})
    if reference.match(result.rules, ev, all_matches=True):
        assert interest.admits(ruleset.interest, ev), (conditions, ev, ruleset.interest)


@pytest.mark.parametrize(
    ("condition", "accmodes", "succeeded"),
    [
        ("evt.is_open_read=true and fd.typechar='f' and fd.num>=0", {0, 2, 3}, True),  # Falco's open_read
        ("evt.is_open_write=true and fd.typechar='f' and fd.num>=0", {1, 2}, True),  # open_write
        ("fd.typechar='f' and fd.num=-1 and evt.res startswith E", None, False),  # open_file_failed
        ("evt.is_open_read=true and evt.is_open_write=true", {2}, None),
        ("evt.is_open_read=false and evt.rawres<0", {1}, False),
        ("not (evt.is_open_read=true or evt.failed=false)", {1}, False),
        ("evt.is_open_read=true or evt.res=SUCCESS", None, None),  # a branch leaves each free
        ("evt.arg.flags contains O_CREAT and evt.res != SUCCESS", None, False),
        ("fd.num = 1048576", None, True),  # a literal far from the ends of the range
        ("evt.rawres > 2000000000", None, True),
        ("evt.rawres in (-4095, -4000)", None, False),
    ],
)
def test_access_modes_and_outcomes_of_falco_like_conditions(
    condition: str, accmodes: set[int] | None, succeeded: bool | None
) -> None:
    ruleset = _rules(f"evt.type = openat and {condition}", "evt.type = openat and proc.name = cat")
    mine = [alt for alt in ruleset.interest["openat"].alternatives if not alt.fields]
    if accmodes is None and succeeded is None:  # the rule requires nothing: no alternative narrows
        assert ruleset.interest["openat"].alternatives == ()
    else:
        modes = None if accmodes is None else frozenset(accmodes)
        assert mine == [interest.Alternative((), modes, succeeded)]


def test_a_rule_no_open_can_match_leaves_no_alternative() -> None:
    never = "evt.type = openat and fd.num > 5 and fd.num < 3"
    ruleset = _rules(never, "evt.type = openat and proc.name = cat")
    (alternative,) = ruleset.interest["openat"].alternatives
    assert alternative.fields[0].field == "proc.name"


def _name(*names: str, field: str = "proc.name") -> interest.FieldInterest:
    return interest.FieldInterest(field, frozenset(names), frozenset(), frozenset(), frozenset())


def _fd(exact: tuple[str, ...] = (), prefixes: tuple[str, ...] = ()) -> interest.FieldInterest:
    return interest.FieldInterest("fd.name", frozenset(exact), frozenset(prefixes), frozenset(), frozenset())


_Alt = interest.Alternative
_ETC, _ROOT = _fd(prefixes=("/etc/",)), _fd(prefixes=("/",))


@pytest.mark.parametrize(
    ("narrow", "wide", "implied"),
    [
        (_Alt((_fd(("/etc/x",)),)), _Alt((_ETC,)), True),
        (_Alt((_fd(("/tmp/x",)),)), _Alt((_ETC,)), False),
        (_Alt((_ETC,)), _Alt((_ROOT,)), True),
        (_Alt((_ROOT,)), _Alt((_ETC,)), False),
        (_Alt(()), _Alt((_ROOT,)), False),  # the wide one needs a field the narrow one leaves free
        (_Alt((_fd(("/x",)),), frozenset({0})), _Alt((), frozenset({0, 1})), True),
        (_Alt((), None, True), _Alt((), frozenset({0, 1, 2})), False),
        (_Alt((), None, True), _Alt((), None, False), False),
        (_Alt((), frozenset({1}), None), _Alt((), None, True), False),
    ],
)
def test_one_alternative_implies_another_only_when_it_admits_no_more(
    narrow: interest.Alternative, wide: interest.Alternative, implied: bool
) -> None:
    assert interest.implies(narrow, wide) is implied


def test_alternatives_differing_in_a_field_and_the_access_modes_stay_apart() -> None:
    a, b = _Alt((_fd(("/x",)),), frozenset({0})), _Alt((_fd(("/y",)),), frozenset({1}))
    assert set(interest.narrowed([a, b])) == {a, b}
    c = _Alt((_fd(("/y",)),), frozenset({0}))
    assert interest.narrowed([a, c]) == (_Alt((_fd(("/x", "/y")),), frozenset({0})),)


def test_narrowing_merges_what_it_can_exactly_and_widens_past_the_cap() -> None:
    alt = interest.Alternative
    read, write = alt((), frozenset({0}), True), alt((), frozenset({1}), True)
    assert interest.narrowed([read, write, read]) == (alt((), frozenset({0, 1}), True),)
    cat, cat_reads = alt((_name("cat"),)), alt((_name("cat"),), frozenset({0}))
    assert interest.narrowed([cat_reads, cat]) == (cat,)  # implied by a wider one
    many = [alt((_name(f"n{i}"), _name(f"/p{i}", field="fd.name"))) for i in range(70)]
    kept = interest.narrowed(many)
    assert 0 < len(kept) <= interest.MAX_ALTERNATIVES
    assert all(any(interest.implies(narrow, wide) for wide in kept) for narrow in many)
    assert interest.narrowed([*many, *many[:1], alt()]) == ()  # one requires nothing
    assert interest.narrowed([alt((_name(f"n{i}"),), frozenset({i % 4}), i % 2 == 0)
                              for i in range(200)]) == ()  # too many to compare: fields alone  # fmt: skip


_texts = st.sampled_from(("/etc/x", "/etc/", "/", "cat"))  # few, so that one often covers another
_few = st.frozensets(_texts, max_size=2)
_rare = st.sampled_from((frozenset(), frozenset(), frozenset({"x"})))  # mostly none: more cover others
_field_interests = st.builds(interest.FieldInterest, st.sampled_from(interest.KERNEL_FIELDS), _few, _few,
                             _rare, _rare)  # fmt: skip
_alternatives = st.builds(
    interest.Alternative, st.lists(_field_interests, max_size=2, unique_by=lambda f: f.field).map(tuple),
    st.none() | st.frozensets(st.integers(0, 3)), st.none() | st.booleans(),
)


@settings(SETTINGS, max_examples=300)
@given(alternatives=st.lists(_alternatives, max_size=6), path=_texts, name=_texts, flags=st.integers(0, 3),
       res=st.sampled_from((-2, 3)))  # fmt: skip
def test_narrowing_admits_every_open_its_alternatives_admit(
    alternatives: list[interest.Alternative], path: str, name: str, flags: int, res: int
) -> None:
    """With a cap of 2, so that merging past it is exercised as often as merging within it."""
    ev = _event("openat", args={"flags": flags}, res=res, fd={"name": path, "num": res}, proc={"name": name})
    with patch.object(interest, "MAX_ALTERNATIVES", 2):
        kept = interest.narrowed(alternatives)
    assert len(kept) <= 2
    before = {"openat": interest.TypeInterest("openat", (), tuple(alternatives))}
    if interest.admits(before, ev):
        assert interest.admits({"openat": interest.TypeInterest("openat", (), kept)}, ev)


@settings(SETTINGS, max_examples=400)
@given(a=_alternatives, data=st.data(), path=_texts, name=_texts, flags=st.integers(0, 3),
       res=st.sampled_from((-2, 3)))  # fmt: skip
def test_two_alternatives_merged_or_one_dropped_lose_nothing(
    a: interest.Alternative, data: st.DataObject, path: str, name: str, flags: int, res: int
) -> None:
    """Pairs, the second often the first with one part drawn again (one field, the access modes or
    the outcome), so that one implying the other and exact merges are common."""
    def with_one(drawn: list[interest.FieldInterest]) -> tuple[interest.FieldInterest, ...]:
        by_name = {f.field: f for f in (*a.fields, *drawn)}  # the drawn one replaces a's of its name
        return tuple(by_name[name] for name in sorted(by_name))

    fields = st.lists(_field_interests, max_size=1).map(with_one)
    b = data.draw(st.one_of(
        _alternatives,
        st.builds(dataclasses.replace, st.just(a), accmodes=st.none() | st.frozensets(st.integers(0, 3))),
        st.builds(dataclasses.replace, st.just(a), succeeded=st.none() | st.booleans()),
        st.builds(dataclasses.replace, st.just(a), fields=fields),
    ))  # fmt: skip
    ev = _event("openat", args={"flags": flags}, res=res, fd={"name": path, "num": res}, proc={"name": name})

    def admitted(*alternatives: interest.Alternative) -> bool:
        return interest.admits({"openat": interest.TypeInterest("openat", (), alternatives)}, ev)

    if interest.implies(a, b) and admitted(a):
        assert admitted(b)
    if admitted(a) or admitted(b):
        assert admitted(*interest.narrowed([a, b]))
        with patch.object(interest, "MAX_ALTERNATIVES", 1):
            assert admitted(*interest.narrowed([a, b]))


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
