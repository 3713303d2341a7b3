"""The batch gate (rules/gate.py, rules/gate.c) only leaves out events no rule matches, and keeps
every event whose record it cannot read as planned, so `Ruleset.evaluate` with the gate gives
exactly what per-event `match`/`match_all` give without it."""

from __future__ import annotations

import ast
import importlib.util
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from falco_compiled import FalcoCompiled

import rules
from benchmarks.workload import build_event, build_fd, build_process, rule_hitting_events
from rules import gate
from rules import record as R
from rules.condtree import And, Leaf, Node, Or, Values
from rules.fields import FIELDS
from rules.operators import Memo

FILES = ("falco_rules.yaml", "falco-incubating_rules.yaml", "falco-sandbox_rules.yaml")
OPENAT = R.EVENT_TYPE_IDS["openat"]
F_NAME_STEPS = ((R.EV_FD, 0), (R.F_NAME, 1))
P_NAME_STEPS = ((R.EV_PROC, 0), (R.P_NAME, 0))


def _stable_cases() -> Any:
    path = Path(__file__).parents[2] / "conformance" / "data" / "stable_rules_cases.py"
    spec = importlib.util.spec_from_file_location("stable_rules_cases_for_gate", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module", params=[False, True], ids=["first", "all"])
def ruleset(request: pytest.FixtureRequest, falco_compiled: FalcoCompiled) -> rules.Ruleset:
    return falco_compiled(request.param)[1]


def _one_by_one(ruleset: rules.Ruleset, events: list[list[Any]]) -> list[tuple[int, str]]:
    pairs = []
    for ev in events:
        found = ruleset.match_all(ev) if ruleset.all_matches else [r for r in [ruleset.match(ev)] if r]
        pairs += [(id(ev), rule.name) for rule in found]
    return pairs


def test_gate_is_built_on_this_machine(ruleset: rules.Ruleset) -> None:
    assert ruleset.gated  # ./scripts/setup installs the compiler and headers it needs


def test_gated_evaluate_agrees_with_each_event_alone(ruleset: rules.Ruleset) -> None:
    literals = sorted(set(re.findall(r"'([^'\\]{1,60})'", ruleset.source())))
    events = rule_hitting_events(literals, 6000, seed=5)
    # several passes: the gate reorders its tests and bypasses types as it learns, never
    # changing a result
    for _ in range(3):
        got = [(id(ev), rule.name) for ev, rule in ruleset.evaluate(events)]
        assert got == _one_by_one(ruleset, events)
    assert len({name for _, name in got}) >= 15  # the events reach many different rules


def test_gated_evaluate_fires_every_stable_case(falco_rules_dir: Path) -> None:
    data = _stable_cases()
    ruleset = rules.load([falco_rules_dir / "falco_rules.yaml"], all_matches=True, **data.LOAD_OPTIONS)
    for case in data.CASES:
        for ev in (case.trigger(), case.near_miss()):
            assert [r.name for _, r in ruleset.evaluate([ev])] == [r.name for r in ruleset.match_all(ev)]


def test_glibc_tunables_in_the_environment_passes_the_gate(falco_rules_dir: Path) -> None:
    """proc.env is a list: the gate keys its memo with the list as a tuple."""
    ruleset = rules.load([falco_rules_dir / f for f in FILES[:2]])
    proc = build_process(name="app", exepath="/usr/bin/app", env=["PATH=/bin", "GLIBC_TUNABLES=glibc.x=1"])
    ev = build_event("execve", proc=proc)
    expected = ruleset.match(ev)
    assert expected is not None and "Environment Variables" in expected.name
    assert [r for _, r in ruleset.evaluate([ev] * 3)] == [expected] * 3
    quiet = build_event("execve", proc=build_process(name="app", exepath="/usr/bin/app", env=["PATH=/bin"]))
    assert ruleset.match(quiet) is None and ruleset.evaluate([quiet]) == []


def _built(programs: dict[int, object]) -> gate.Gate:
    table = tuple(programs.get(t) for t in range(len(R.EVENT_TYPES)))
    made = gate.build(table, {})  # type: ignore[arg-type]
    assert made is not None
    return made


def _gate(programs: dict[int, object]) -> Any:
    return _built(programs).select


def test_types_without_rules_are_left_out_and_odd_records_kept() -> None:
    select = _gate({OPENAT: ((P_NAME_STEPS, Memo(lambda name: int(name == "bash"))),)})
    bash = build_event("openat", proc=build_process(name="bash"))
    sh = build_event("openat", proc=build_process(name="sh"))
    other_type = build_event("execve", proc=build_process(name="bash"))
    odd: list[Any] = [
        [True, *bash[1:]],  # a bool is not a type id
        [float(OPENAT), *bash[1:]],
        [10**30, *bash[1:]],
        [-1, *bash[1:]],
        [OPENAT, *bash[1:3]],  # too short to reach the process: kept, the generated code decides
        [OPENAT, 0, 0, "not a record", *bash[4:]],
        [],
        "not an event",
        tuple(sh),  # a tuple record is read like a list
    ]
    kept = select([bash, sh, other_type, *odd])
    assert kept[0] is bash and kept[1:] == odd[:-1]


def test_missing_fd_reads_as_none_and_unhashable_values_skip_the_test() -> None:
    seen: list[Any] = []

    def mask(value: Any) -> int:
        seen.append(value)
        return int(value is None)

    select = _gate({OPENAT: ((F_NAME_STEPS, Memo(mask)),)})
    no_fd = build_event("openat", fd=None)
    empty_fd = build_event("openat")
    empty_fd[R.EV_FD] = []
    named = build_event("openat", fd=build_fd(name="/etc/passwd"))
    unhashable = build_event("openat", fd=build_fd(name="/x"))
    unhashable[R.EV_FD][R.F_NAME] = {"a": 1}  # type: ignore[index]
    assert select([no_fd, empty_fd, named, unhashable]) == [no_fd, empty_fd, unhashable]
    assert seen == [None, "/etc/passwd"]  # remembered: each value asked once


def test_a_failing_mask_skips_the_test_and_a_list_is_keyed_as_a_tuple() -> None:
    def broken(value: Any) -> int:
        raise RuntimeError("no mask")

    env_steps = ((R.EV_PROC, 0), (R.P_ENV, 0))
    select = _gate({OPENAT: ((P_NAME_STEPS, Memo(broken)), (env_steps, Memo(lambda env: int("X=1" in env))))})
    with_x = build_event("openat", proc=build_process(name="a", env=["X=1"]))
    without = build_event("openat", proc=build_process(name="a", env=["Y=1"]))
    assert select([with_x, without]) == [with_x]


def test_affix_filter_rejects_in_c_without_asking_python() -> None:
    asked: list[str] = []

    def mask(value: str) -> int:
        asked.append(value)
        return 1 if value.startswith("/etc/") else 0

    affixes = (frozenset({"/root/.bashrc"}), ("/etc/",), (".pem",), ("/.ssh/",))
    select = _gate({OPENAT: ((F_NAME_STEPS, Memo(mask), affixes, 0),)})
    # ASCII values are compared byte by byte, others through str methods: same answers
    paths = ["/etc/shadow", "/tmp/a", "/home/u/.ssh/id", "/x/cert.pem", "/root/.bashrc", "/tmp/b", "/tmp/a",
             "/tmp/été", "/etc/été", "/home/é/.ssh/k", "/x/é.pem", "/é"]  # fmt: skip
    events = [build_event("openat", fd=build_fd(name=path)) for path in paths]
    kept = select(events)
    assert [ev[R.EV_FD][R.F_NAME] for ev in kept] == ["/etc/shadow", "/etc/été"]
    assert asked == ["/etc/shadow", "/home/u/.ssh/id", "/x/cert.pem", "/root/.bashrc",
                     "/etc/été", "/home/é/.ssh/k", "/x/é.pem"]  # fmt: skip


def _leaf(text: str) -> Leaf:
    return Leaf(ast.Name(text, ast.Load()), 1.0, 0.1)


def test_rules_beyond_the_mask_keep_every_event() -> None:
    many: list[Node] = [_leaf("x")] * (gate.MASK_BITS + 1)
    assert gate.program(many, Values(), {}) is True


def test_alternatives_split_an_or_of_different_fields() -> None:
    a, b, c = _leaf("a"), _leaf("b"), _leaf("c")
    assert gate.alternatives(Or((a, b))) == [a, b]
    assert gate.alternatives(And((a, Or((b, c))))) == [And((a, b)), And((a, c))]
    wide = Or(tuple(_leaf(f"x{i}") for i in range(9)))
    assert gate.alternatives(wide) == [wide]  # past the limit: kept whole


def test_names_are_read_live_through_the_gate(falco_rules_dir: Path) -> None:
    """fd.sip.name: gate.c looks the IP up in the caller's table at each event, so a service
    learned after the rules were compiled is seen at once, and one forgotten no longer matches."""
    names: dict[str, str] = {}
    ruleset = rules.load([falco_rules_dir / "falco_rules.yaml"], ip_names=names)
    container = {"id": "c" * 64, "image_repo": "docker.io/library/alpine", "name": "app"}
    proc = build_process(name="curl", container=container)
    fd = build_fd(typechar="4", l4proto="tcp", sip="10.96.0.1", sport=443, cip="10.0.0.5", cport=40000,
                  name="10.0.0.5:40000->10.96.0.1:443")
    ev = build_event("connect", proc=proc, fd=fd)
    assert ruleset.evaluate([ev]) == [] and ruleset.match(ev) is None
    names["10.96.0.1"] = "kubernetes.default.svc.cluster.local"
    rule = ruleset.match(ev)
    assert rule is not None and rule.name == "Contact K8S API Server From Container"
    assert ruleset.evaluate([ev]) == [(ev, rule)]
    del names["10.96.0.1"]
    assert ruleset.evaluate([ev]) == []


def test_a_mapping_that_is_not_a_dict_drops_the_name_tests(falco_rules_dir: Path) -> None:
    from types import MappingProxyType

    backing = {"10.96.0.1": "kubernetes.default.svc.cluster.local"}
    ruleset = rules.load([falco_rules_dir / "falco_rules.yaml"], ip_names=MappingProxyType(backing))
    container = {"id": "c" * 64, "image_repo": "docker.io/library/alpine", "name": "app"}
    fd = build_fd(typechar="4", l4proto="tcp", sip="10.96.0.1", sport=443)
    ev = build_event("connect", proc=build_process(name="curl", container=container), fd=fd)
    assert ruleset.gated
    assert [r.name for _, r in ruleset.evaluate([ev])] == ["Contact K8S API Server From Container"]


def test_counts_say_how_much_the_gate_did() -> None:
    made = _built({OPENAT: ((P_NAME_STEPS, Memo(lambda name: int(name == "bash"))),)})
    events = [build_event("openat", proc=build_process(name=name)) for name in ("bash", "sh", "sh")]
    made.select(events)
    assert made.counts() == (3, 1, 3)


def _slot(record: object) -> int:
    """The gate's process slot of a record: gate.c hashes the record's address (CPython's id)."""
    return (id(record) >> 4) % 64


def test_a_process_is_tested_once_per_batch() -> None:
    """Tests reading only through the process record run once per process and select() call:
    later events of that process reuse the mask, and a new call starts over."""
    fd_test = (F_NAME_STEPS, Memo(lambda name: 1))
    made = _built({OPENAT: ((P_NAME_STEPS, Memo(lambda name: int(name == "bash"))), fd_test)})
    select = made.select
    bash, sh = build_process(name="bash"), build_process(name="sh")
    held: list[object] = []  # kept alive, so a new record cannot take a discarded one's address
    while _slot(sh) == _slot(bash):  # two records sharing a slot evict each other (sound, but counted)
        held.append(sh)
        sh = build_process(name="sh")
    events = [build_event("openat", proc=proc, fd=build_fd()) for proc in (bash, sh, bash, sh, bash)]
    assert select(events) == [events[0], events[2], events[4]]
    # bash: name once, fd.name three times; sh: name once, ruled out before its fd is read
    assert made.counts() == (5, 3, 5)
    bash[R.P_NAME] = "sh"  # a record changed between batches is read again
    assert select(events[:1]) == []


def test_a_select_inside_a_select_keeps_every_event() -> None:
    """Another thread may run while a mask is computed in Python; a select() meanwhile must not
    share the first one's process slots, so it keeps everything."""
    inner: list[list[Any]] = []

    def mask(name: str) -> int:
        if name == "outer":
            inner.extend(select([build_event("openat", proc=build_process(name="ruled-out"))]))
        return 0

    select = _gate({OPENAT: ((P_NAME_STEPS, Memo(mask)),)})
    assert select([build_event("openat", proc=build_process(name="outer"))]) == []
    assert len(inner) == 1  # kept by the nested call, though its mask would be 0
    assert select([build_event("openat", proc=build_process(name="ruled-out"))]) == []


def test_ancestors_and_several_slots_are_keyed_as_tuples() -> None:
    """proc.aname without an index: the tuple of every strict ancestor's name, parent first;
    proc.cmdline: the tuple (name, args), a missing parent's as (None, None)."""
    seen: list[Any] = []

    def remember(value: Any) -> int:
        seen.append(value)
        return 1

    ancestors = ((R.EV_PROC, 0), (gate.ANCESTORS, R.P_PARENT), (R.P_NAME, 0))
    parent_cmdline = ((R.EV_PROC, 0), (R.P_PARENT, 0), (gate.FIELDS, 2 + gate.FIELDS_LENIENT),
                      (R.P_NAME, 0), (R.P_ARGS, 0))  # fmt: skip
    select = _gate({OPENAT: ((ancestors, Memo(remember)), (parent_cmdline, Memo(remember)))})
    grand = build_process(name="systemd", parent=None)
    child = build_process(name="sh", parent=build_process(name="nginx", args=["-g", "x"], parent=grand))
    orphan = build_process(name="init", parent=None)
    events = [build_event("openat", proc=child), build_event("openat", proc=orphan)]
    assert select(events) == events
    assert seen == [("nginx", "systemd"), ("nginx", ("-g", "x")), (), (None, None)]


def test_a_record_not_shaped_as_expected_on_the_way_is_kept() -> None:
    ancestors = ((R.EV_PROC, 0), (gate.ANCESTORS, R.P_PARENT), (R.P_NAME, 0))
    select = _gate({OPENAT: ((ancestors, Memo(lambda names: 0)),)})
    broken = build_process(name="sh", parent=["too short"])
    ev = build_event("openat", proc=broken)
    assert select([ev]) == [ev]


def test_grep_for_private_keys_passes_the_gate_and_other_greps_do_not(falco_rules_dir: Path) -> None:
    """proc.cmdline is read as (name, args), so the gate can rule out a grep for anything else."""
    ruleset = rules.load([falco_rules_dir / f for f in FILES[:2]])
    hunt = build_event("execve", proc=build_process(name="grep", args=["-r", "BEGIN RSA PRIVATE", "/"]))
    plain = build_event("execve", proc=build_process(name="grep", args=["-r", "TODO", "/src"]))
    expected = ruleset.match(hunt)
    assert expected is not None and ruleset.match(plain) is None
    assert ruleset.evaluate([hunt, plain]) == [(hunt, expected)]
    seen, kept = ruleset.gate_counts()
    assert (seen, kept) == (2, 1)


def test_the_reads_a_field_test_can_key_on() -> None:
    """The record steps the analysis finds in each kind of field code (gate.c walks them)."""
    analysis = gate.Analysis(Values())

    def steps(field: str, arg: str | None = None) -> object:
        found = analysis.read_path(FIELDS[field].code(arg, OPENAT))
        return None if found is None else found[0]

    proc, fd = (R.EV_PROC, 0), (R.EV_FD, 0)
    assert steps("proc.aname") == (proc, (gate.ANCESTORS, R.P_PARENT), (R.P_NAME, 0))
    assert steps("proc.cmdline") == (proc, (gate.FIELDS, 2), (R.P_NAME, 0), (R.P_ARGS, 0))
    assert steps("proc.pname") == (proc, (R.P_PARENT, 0), (R.P_NAME, 1))
    assert steps("fd.name") == (fd, (R.F_NAME, 1))
    assert steps("fd.sip.name") == (fd, (R.F_SIP, 1), (gate.RESOLVE, 0))
    assert steps("proc.env", "HOME") == (proc, (R.P_ENV, 0))
    assert steps("container.image.repository") == (proc, (R.P_CONTAINER, 0), (R.C_IMAGE_REPO, 1))
    assert steps("fd.lip.name") is None  # the live table read through a computed address
    assert steps("proc.aname", "2") is None  # several records deep
    assert steps("k8s.pod.label", "app") is None  # a dict: no memo keys on it
