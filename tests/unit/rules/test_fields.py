"""The field catalog: every field Falco's three rules files use has a row, and every row's
extractor is valid code that reads records without raising, present or missing."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from benchmarks.workload import build_event
from rules import record as R
from rules.ast import (
    AndExpr,
    BinaryCheckExpr,
    Expr,
    FieldExpr,
    FieldRefExpr,
    ListExpr,
    NotExpr,
    OrExpr,
    TransformerExpr,
    UnaryCheckExpr,
)
from rules.codegen import reader_module
from rules.collect import load_files
from rules.fields import FIELDS, HELPERS, FieldFlag, bases_of, lookup
from rules.parser import parse_field_or_transformer

FILES = ("falco_rules.yaml", "falco-incubating_rules.yaml", "falco-sandbox_rules.yaml")


def _fields_in(node: object, out: set[tuple[str, str | None]]) -> None:
    if isinstance(node, FieldExpr):
        out.add((node.name, node.arg))
    elif isinstance(node, FieldRefExpr):
        _fields_in(node.field, out)
    elif isinstance(node, TransformerExpr):
        for v in node.values:
            _fields_in(v, out)
    elif isinstance(node, ListExpr):
        for v in node.values:
            _fields_in(v, out)
    elif isinstance(node, (AndExpr, OrExpr)):
        for c in node.children:
            _fields_in(c, out)
    elif isinstance(node, NotExpr):
        _fields_in(node.child, out)
    elif isinstance(node, UnaryCheckExpr):
        _fields_in(node.left, out)
    elif isinstance(node, BinaryCheckExpr):
        _fields_in(node.left, out)
        _fields_in(node.right, out)


def _output_fields(output: str) -> set[tuple[str, str | None]]:
    found: set[tuple[str, str | None]] = set()
    for match in re.finditer(r"%(\d*)", output):
        node, _ = parse_field_or_transformer(output, match.end())
        _fields_in(node, found)
    return found


@pytest.fixture(scope="module")
def used_fields(falco_rules_dir: Path) -> set[tuple[str, str | None]]:
    used: set[tuple[str, str | None]] = set()
    for name in FILES:  # each file on its own, as the rules repo validates them
        for rule in load_files([falco_rules_dir / name]).rules:
            condition: Expr = rule.condition
            _fields_in(condition, used)
            used |= _output_fields(rule.output)
    return used


def test_every_field_falco_rules_use_has_a_row(used_fields: set[tuple[str, str | None]]) -> None:
    missing = sorted(f"{n}[{a}]" if a else n for n, a in used_fields if lookup(n, a) is None)
    assert missing == []
    assert len({n for n, _ in used_fields}) >= 85  # spec 6 counts 90 names with evt.arg.* split


def test_rows_describe_where_the_value_comes_from() -> None:
    for spec in FIELDS.values():
        assert spec.desc and spec.name.count(".") >= 1


def test_evt_arg_names_resolve_to_the_arg_family() -> None:
    assert lookup("evt.arg.flags", None) == (FIELDS["evt.arg"], "flags")
    assert lookup("evt.rawarg.res", None) == (FIELDS["evt.rawarg"], "res")
    assert lookup("evt.arg.nosuch", None) is None


def _sample_arg(name: str) -> str | None:
    spec = FIELDS[name]
    if spec.name in ("evt.arg", "evt.rawarg"):
        return "res" if spec.name == "evt.rawarg" else "flags"
    if spec.flags & FieldFlag.ARG_REQUIRED:
        return {"container.mount.dest": "/proc*", "k8s.pod.label": "app"}[name]
    return "2" if spec.flags & FieldFlag.ANCESTORS else None


def _events() -> list[list[object]]:
    container = {
        "image_repo": "nginx", "ns": "default", "pod_labels": {"app": "web"},
        "mounts": [["/proc", "/host/proc", "", True, ""]],
    }  # fmt: skip
    full = build_event(
        "openat", args={"fd": 3, "dirfd": -100, "name": "/etc/x", "flags": 65, "mode": 0o755},
        proc={"parent": {"name": "sshd", "parent": {"name": "systemd"}}, "env": ["A=b"],
              "container": container},
        fd={"name": "/etc/x"},
    )  # fmt: skip
    bare = build_event("connect", proc=dict.fromkeys(("name", "args", "tty", "exe_flags", "container_id")))
    bare[R.EV_ARGS] = [None] * len(bare[R.EV_ARGS])
    return [full, bare]


@pytest.mark.parametrize("name", sorted(FIELDS))
def test_extractor_reads_present_and_missing_values_without_raising(name: str) -> None:
    spec = FIELDS[name]
    arg = _sample_arg(name)
    namespace = {**HELPERS, "_ipn": {"10.0.0.1": "x"}}
    for ev in _events():
        for event_type in (None, ev[R.EV_TYPE]):
            code = spec.code(arg, event_type)
            exec(compile(reader_module("read", [code]), name, "exec"), namespace)
            namespace["read"](ev)  # type: ignore[operator]
            assert bases_of(code) <= {"p", "pp", "c", "f", "a"}
