"""Behaviours checked against falcosecurity/libs sources: evt.is_open_* on creat, evt.res per
event type, rendered evt.arg.* with the event's context, fd.type's typechars, arguments on
val()/transformers, and skip-if-unknown-filter."""

from __future__ import annotations

import pytest
import yaml

from benchmarks.workload import build_event
from rules import CompileError
from rules import render_flags as rf
from rules.collect import load_sources
from rules.output import compile_output
from rules.ruleset import Ruleset, compile_rules


def compile_items(*items: dict[str, object]) -> Ruleset:
    full = [{"desc": "d", "output": "o", "priority": "INFO", **item} for item in items]
    return compile_rules(load_sources([("t.yaml", yaml.safe_dump(full))]))


def matches(condition: str, ev: list[object]) -> bool:
    return compile_items({"rule": "r", "condition": condition}).match(ev) is not None


def output_of(text: str, ev: list[object]) -> str:
    return compile_output(text, suggested=False).render(ev)[0]


# libs sinsp_filtercheck_event.cpp TYPE_ISOPEN_*: read/write only for the open family; creat has
# only the exec test, on its mode parameter
@pytest.mark.parametrize(
    ("field", "mode", "expected"),
    [
        ("evt.is_open_read", 0o644, False),
        ("evt.is_open_write", 0o644, False),
        ("evt.is_open_exec", 0o644, False),
        ("evt.is_open_exec", 0o755, True),
    ],
)
def test_is_open_on_creat_follows_libs(field: str, mode: int, expected: bool) -> None:
    ev = build_event("creat", args={"fd": 3, "name": "/tmp/x", "mode": mode}, res=3)
    assert matches(f"evt.type = creat and {field} = true", ev) is expected
    assert matches(f"evt.type = creat and {field} = false", ev) is not expected
    assert output_of(f"%{field}", ev) == str(expected).lower()


def test_is_open_write_still_holds_for_open_for_writing() -> None:
    ev = build_event("openat", args={"fd": 3, "name": "/tmp/x", "flags": rf.LINUX_O_WRONLY}, res=3)
    assert matches("evt.type = openat and evt.is_open_write = true", ev)


def test_evt_res_of_a_failed_clone_is_the_number() -> None:
    ev = build_event("clone", res=-11)
    assert matches("evt.type = clone and evt.res = -11", ev)
    assert not matches("evt.type = clone and evt.res = EAGAIN", ev)
    failed_open = build_event("openat", args={"fd": -2, "name": "/x", "flags": 0}, res=-2)
    assert matches("evt.type = openat and evt.res = ENOENT", failed_open)


def test_evt_res_of_procexit_is_missing() -> None:
    ev = build_event("procexit", res=0)
    assert not matches("evt.type = procexit and evt.res = SUCCESS", ev)
    assert matches("evt.type = procexit and not evt.res exists", ev)


def test_evt_arg_reads_a_bound_text_function() -> None:
    condition = "evt.type = openat and evt.arg.flags contains O_CREAT"
    ruleset = compile_items({"rule": "r", "condition": condition})
    source = ruleset.source("openat")
    assert "_render(" not in source and "_txt" in source
    ev = build_event("openat", args={"fd": 3, "name": "/x", "flags": rf.LINUX_O_CREAT | 1}, res=3)
    assert ruleset.match(ev) is not None


def test_evt_arg_fd_resolves_through_the_event() -> None:
    fd = {"num": 3, "typechar": "f", "name": "/etc/shadow"}
    ev = build_event("fchmod", args={"fd": 3, "mode": 0o644}, res=0, fd=fd)
    assert matches("evt.type = fchmod and evt.arg.fd = '<f>/etc/shadow'", ev)
    # outputs resolve the same way as conditions
    assert output_of("%evt.arg.fd %evt.arg[1]", ev) == "<f>/etc/shadow <f>/etc/shadow"
    assert "fd=3(<f>/etc/shadow)" in output_of("%evt.args", ev)


def open_with_typechar(typechar: str) -> list[object]:
    args = {"fd": 3, "name": "/x", "flags": 0}
    return build_event("openat", args=args, res=3, fd={"num": 3, "typechar": typechar})


@pytest.mark.parametrize(
    ("typechar", "name"), [("t", "timerfd"), ("n", "netlink"), ("r", "io_uring"), ("P", "pidfd")]
)
def test_fd_type_covers_libs_typechars(typechar: str, name: str) -> None:
    ev = open_with_typechar(typechar)
    assert matches(f"evt.type = openat and fd.type = {name}", ev)


def test_fd_type_has_no_made_up_typechar() -> None:
    ev = open_with_typechar("y")
    assert not matches("evt.type = openat and fd.type exists", ev)


@pytest.mark.parametrize(
    ("condition", "name", "at"),
    [
        ("evt.type = execve and proc.name = val(proc.pname)[1]", "val", "val("),
        ("evt.type = execve and tolower(proc.name)[1] = bash", "tolower", "tolower("),
    ],
)
def test_arguments_on_val_and_transformers_are_refused(condition: str, name: str, at: str) -> None:
    with pytest.raises(CompileError) as info:
        compile_items({"rule": "r", "condition": condition})
    assert info.value.message == f"filter error: transformer '{name}' does not support field arguments"
    assert info.value.location.offset == condition.index(at)


def test_skip_if_unknown_filter_skips_the_rule_with_a_warning() -> None:
    ruleset = compile_items(
        {"rule": "future", "condition": "evt.type = execve and plugin.field = x",
         "skip-if-unknown-filter": True},
        {"rule": "future output", "condition": "evt.type = execve", "output": "%plugin.field",
         "skip-if-unknown-filter": True},
        {"rule": "kept", "condition": "evt.type = execve and proc.name = bash"},
    )  # fmt: skip
    assert [r.name for r in ruleset.rules] == ["kept"]
    codes = [w.code for w in ruleset.warnings if w.code == "LOAD_UNKNOWN_FILTER"]
    assert len(codes) == 2
    assert ruleset.match(build_event("execve", proc={"name": "bash"})) is not None


def test_without_skip_if_unknown_filter_an_unknown_field_fails() -> None:
    with pytest.raises(CompileError):
        compile_items({"rule": "r", "condition": "evt.type = execve and plugin.field = x"})
    with pytest.raises(CompileError):  # skipping covers unknown fields only
        compile_items({"rule": "r", "condition": "evt.type = execve and proc.name = val(proc.aname)",
                       "skip-if-unknown-filter": True})  # fmt: skip


def test_an_empty_list_holds_no_value() -> None:
    ev = build_event("execve", proc={"name": "bash"})
    assert not matches("evt.type = execve and proc.name in ()", ev)
    assert not matches("evt.type = execve and proc.args intersects ()", ev)
    assert matches("evt.type = execve and not proc.name in ()", ev)
    missing = build_event("execve", proc={"name": None})
    assert matches("evt.type = execve and not proc.name in ()", missing)
    # a rule needing a value from an empty list is evaluated on no event type at all
    ruleset = compile_items({"rule": "r", "condition": "evt.type = execve and proc.name in ()"})
    assert ruleset.rules[0].event_types == frozenset() and ruleset.source("execve") == ""
