"""Generated code keeps every literal as written: code is built from syntax trees, so no pass
that decides how a record is read can reach into a string (issue #14: ``"-c /dev/shm"`` once
compiled to ``'-(p[28] or _EC) /dev/shm'``). Checked through behaviour: compiled rules match
the events their literals describe."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from benchmarks.workload import build_event
from rules.collect import load_files, load_sources
from rules.record import Event
from rules.ruleset import Ruleset, compile_rules

FALCO_FILES = ("falco_rules.yaml", "falco-incubating_rules.yaml", "falco-sandbox_rules.yaml")
# Names generated code uses (record locals, stand-ins, placeholders' bytes), quotes, escapes,
# format characters, and text that reads like generated code.
LITERALS = (
    "c", "p", "f", "a", "ev", "pp", "_EC", "_EP", "_v0", "\x01", "\x01" "0\x02", "'", '"', "a\\b", "%", "%s",
    "{0}", "-c /dev/shm", "c f a p ev", "(p[28] or _EC)", "c[3]", "None",
)  # fmt: skip


def _quoted(text: str) -> str:
    """A double-quoted condition string holding exactly `text`."""
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 32:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _compile(condition: str, all_matches: bool = False) -> Ruleset:
    rule = {"rule": "r", "desc": "d", "condition": condition, "output": "o", "priority": "WARNING"}
    return compile_rules(load_sources([("test.yaml", yaml.safe_dump([rule]))]), all_matches=all_matches)


def _matches(ruleset: Ruleset, ev: Event) -> bool:
    """Whether the rule matches, asked every way the engine answers (the same, or a failure)."""
    first = ruleset.match(ev) is not None
    assert [rule.name for _, rule in ruleset.evaluate([ev])] == (["r"] if first else [])
    return first


# (condition template over a quoted literal, event carrying a value) per kind of record read
READS: dict[str, tuple[str, Callable[[str], Event]]] = {
    "container": (
        "evt.type = execve and container.image.repository = {lit}",
        lambda v: build_event("execve", proc={"container": {"image_repo": v}}),
    ),
    "container startswith": (
        "evt.type = execve and container.image.repository startswith {lit}",
        lambda v: build_event("execve", proc={"container": {"image_repo": v + "/x"}}),
    ),
    "process": ("evt.type = execve and proc.name = {lit}", lambda v: build_event("execve", proc={"name": v})),
    "parent": (
        "evt.type = execve and proc.pname = {lit}",
        lambda v: build_event("execve", proc={"parent": {"name": v}}),
    ),
    "fd": (
        "evt.type = openat and fd.name contains {lit}",
        lambda v: build_event("openat", fd={"name": "/" + v}),
    ),
    "args": (
        "evt.type = execve and proc.args startswith {lit} and container.image.repository != x",
        lambda v: build_event("execve", proc={"args": [v, "y"], "container": {"image_repo": "img"}}),
    ),
}


@pytest.mark.parametrize("literal", LITERALS, ids=repr)
@pytest.mark.parametrize("read", sorted(READS))
def test_a_literal_survives_code_generation(read: str, literal: str) -> None:
    template, event = READS[read]
    for all_matches in (False, True):
        ruleset = _compile(template.format(lit=_quoted(literal)), all_matches)
        assert _matches(ruleset, event(literal)), ruleset.source()
        assert not _matches(ruleset, event("zzz")), ruleset.source()


def test_execution_from_dev_shm_fires(falco_rules_dir: Path) -> None:
    """Falco's stable rule, on each of its shell alternatives (its literal starts with ``-c``)."""
    ruleset = compile_rules(load_files([falco_rules_dir / "falco_rules.yaml"]), all_matches=True)
    rule = "Execution from /dev/shm"

    def fired(args: list[str]) -> bool:
        ev = build_event("execve", proc={"name": "bash", "exe": "bash", "args": args, "cwd": "/"})
        names = [r.name for r in ruleset.match_all(ev)]
        assert names == [r.name for _, r in ruleset.evaluate([ev])]
        return rule in names

    assert fired(["-c", "/dev/shm/payload"])
    assert fired(["-i", "/dev/shm/payload"])
    assert fired(["/dev/shm/payload"])
    assert not fired(["-x", "/dev/shm/payload"])


def test_loading_falco_rules_raises_no_warning(falco_rules_dir: Path) -> None:
    """No SyntaxWarning (``"is not" with a literal``) or any other from compiling Falco's files."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for name in FALCO_FILES:
            compile_rules(load_files([falco_rules_dir / name]))
        compile_rules(load_files([falco_rules_dir / name for name in FALCO_FILES]), all_matches=True)
        # checks folded on every event type (evt.type, a constant there) compile no "is" test
        ruleset = _compile("evt.type startswith open and evt.dir != '>' and proc.name = x")
    assert _matches(ruleset, build_event("openat", proc={"name": "x"}))
    assert not _matches(ruleset, build_event("execve", proc={"name": "x"}))
