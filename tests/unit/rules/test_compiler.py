"""The compiler: errors with positions, libs' warnings, per-event-type specialisation, and
generated code that never raises on records with missing values."""

from __future__ import annotations

import pytest
import yaml
from falco_compiled import FalcoCompiled

from benchmarks.workload import build_event
from rules import CompileError
from rules import record as R
from rules.collect import load_sources
from rules.ruleset import Ruleset, compile_rules


def compile_condition(condition: str) -> Ruleset:
    rule = {"rule": "r", "desc": "d", "condition": condition, "output": "o", "priority": "INFO"}
    text = yaml.safe_dump([rule])
    return compile_rules(load_sources([("t.yaml", text)]))


def error_of(condition: str) -> CompileError:
    with pytest.raises(CompileError) as info:
        compile_condition(condition)
    return info.value


@pytest.mark.parametrize(
    ("condition", "at"),
    [
        ("evt.type = execve and proc.nme = bash", "proc.nme"),
        ("evt.type = execve and evt.rawres contains 1", "evt.rawres"),
        ("evt.type = execve and proc.tty = abc", "abc"),
        ("evt.type = execve and evt.is_open_read = maybe", "maybe"),
        ("evt.type = execve and proc.name = val(proc.aname[1])", "val("),
    ],
)
def test_errors_point_at_the_offending_text(condition: str, at: str) -> None:
    error = error_of(condition)
    assert error.location.offset == condition.index(at)
    assert error.location.item_name == "r" and error.location.file == "t.yaml"
    assert "^" in error.render()


def test_unknown_field_message_names_the_field() -> None:
    assert "proc.nme" in error_of("proc.nme = x").message


def test_value_that_looks_like_a_field_warns() -> None:
    ruleset = compile_condition("evt.type = execve and proc.name = proc.pname")
    assert any("misused as a const string value" in w.message for w in ruleset.warnings)


def test_value_that_looks_like_a_transformer_warns() -> None:
    ruleset = compile_condition("evt.type = execve and proc.name in (x, 'toupper(y)')")
    assert any("transformer misused" in w.message for w in ruleset.warnings)


def test_evt_type_checks_fold_per_event_type() -> None:
    ruleset = compile_condition("evt.type in (open, openat) and proc.name = cat")
    assert ruleset.event_type_names == {"open", "openat"}
    assert "openat" not in ruleset.source("openat").split("def ", 1)[1].split(":", 1)[1]  # folded away
    assert ruleset.source("execve") == ""


def test_never_true_rules_land_in_no_bucket() -> None:
    ruleset = compile_condition("evt.type = execve and evt.num = 0")
    assert ruleset.event_type_ids == frozenset()


def test_parameters_an_event_type_lacks_fold_to_missing() -> None:
    ruleset = compile_condition("evt.type in (openat, connect) and evt.arg.flags contains O_CREAT")
    assert ruleset.event_type_names == {"openat"}


def test_generated_source_is_inspectable_python() -> None:
    ruleset = compile_condition("evt.type = execve and proc.name = bash")
    source = ruleset.source("execve")
    assert source.startswith("def _first_execve(ev")
    compile(source, "x", "exec")
    assert "def _evaluate" in ruleset.source()


def _hollow_events() -> list[list[object]]:
    """Every event type with parameters, fd, parent, container and most process slots missing."""
    slots = ("name", "exe", "exepath", "args", "cwd", "tty", "user", "uid", "loginuid",
             "start", "cap_eff", "cap_perm", "exe_flags", "container_id", "env")  # fmt: skip
    hollow = dict.fromkeys(slots)
    events = []
    for type_name in R.EVENT_TYPES:
        events.append(build_event(type_name, proc=hollow))
        events.append(build_event(type_name, proc={"container": {}}, fd={"typechar": "4"}))
    return events


def test_falco_rules_never_raise_on_missing_values(falco_compiled: FalcoCompiled) -> None:
    ruleset = falco_compiled(True)[1]
    for ev in _hollow_events():
        ruleset.match(ev)
        ruleset.match_all(ev)


@pytest.mark.parametrize(
    ("pattern", "warns"),
    [  # libs test/filter_compiler.ut.cpp@48dfd53 compilation_warnings, lines 651-671
        *((p, True) for p in ["syscall", "^syscall$", "^syscall", "syscall$", ".*syscall", "syscall.*",
                              ".*syscall.*", ".+syscall", "syscall.+", ".+syscall.+", ".?syscall",
                              "syscall.?", ".?syscall.?"]),
        *((p, False) for p in ["syscall.{1}", "syscall\\\\.*", "s.*l", "syscal[l]?"]),
    ],
)
def test_regex_that_a_plain_operator_could_do_warns_as_libs(pattern: str, warns: bool) -> None:
    ruleset = compile_condition(f"evt.type = execve and proc.name regex '{pattern}'")
    messages = [w.message for w in ruleset.warnings]
    written = pattern.replace("\\\\", "\\")  # in a quoted string, two backslashes read as one
    expected = f"regex check with '{written}' may be optimized with simpler operators"
    assert any(expected in m for m in messages) is warns, messages


def test_deprecated_field_warns() -> None:
    """Falco 0.42 (#3690): one LOAD_DEPRECATED_ITEM per deprecated field of a rule, with its
    description (falco_load_result.cpp deprecated_field_descs, filter_warning_resolver.cpp)."""
    ruleset = compile_condition("evt.type in (execve, openat) and evt.dir = < and not evt.dir = >")
    (warning,) = [w for w in ruleset.warnings if w.code == "LOAD_DEPRECATED_ITEM"]
    assert warning.message.startswith("due to the drop of enter events, 'evt.dir = <' always evaluates")
    assert ruleset.match(build_event("execve")) is not None


def test_deprecated_field_in_an_output_warns_as_falco() -> None:
    """Falco 0.42 (#3697): rule_loader_compiler.cpp check_deprecated_fields_in_output."""
    rule = {"rule": "r", "desc": "d", "condition": "evt.type = execve", "output": "dir=%evt.dir",
            "priority": "WARNING"}  # fmt: skip
    ruleset = compile_rules(load_sources([("r.yaml", yaml.safe_dump([rule], sort_keys=False))]))
    (warning,) = [w for w in ruleset.warnings if w.code == "LOAD_DEPRECATED_ITEM"]
    assert warning.message == "usage of deprecated field 'evt.dir' has been detected in the rule output"
    assert warning.location.item_name == "r"
