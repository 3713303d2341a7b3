"""rules.render against Falco: the cases of data/render_cases.yaml, and every literal Falco's own
rules files compare a rendered field with (evt.arg.*, evt.res, thread.cap_*, fd.type)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from benchmarks.workload import build_event
from rules import CompileError, record, render
from rules import render_flags as rf
from rules.output import compile_output
from rules.render_paths import resolve_path

CASES = yaml.safe_load((Path(__file__).parent / "data" / "render_cases.yaml").read_text())


def _constant(name: str) -> int:
    for module in (rf, record):
        for attr in (f"LINUX_{name}", name):
            if isinstance(value := getattr(module, attr, None), int):
                return value
    return {**rf.LINUX_PTRACE, **rf.LINUX_AF}[name]


def _raw(raw: Any) -> Any:
    if isinstance(raw, dict):
        value = 0
        for name in raw["names"]:
            value |= _constant(name)
        return value
    return raw


def _ids(cases: list[dict[str, Any]]) -> list[str]:
    return [f"{c.get('event', '')}.{c.get('param', '')}={c.get('raw', c.get('flags'))}" for c in cases]


@pytest.mark.parametrize("case", CASES["args"], ids=_ids(CASES["args"]))
def test_render_arg(case: dict[str, Any]) -> None:
    t = record.event_type_id(case["event"])
    index = record.EVENT_PARAM_INDEX[t][case["param"]]
    assert render.render_arg(t, index, _raw(case["raw"])) == case["text"], case["source"]


@pytest.mark.parametrize("case", CASES["args_lines"], ids=_ids(CASES["args_lines"]))
def test_render_args(case: dict[str, Any]) -> None:
    t = record.event_type_id(case["event"])
    out = render.render_args(t, case["args"], user_names=case.get("user_names"))
    assert out == case["text"], case["source"]


@pytest.mark.parametrize("case", CASES["res"], ids=[str(c["raw"]) for c in CASES["res"]])
def test_errno_name(case: dict[str, Any]) -> None:
    assert render.errno_name(case["raw"]) == case["text"], case["source"]


@pytest.mark.parametrize("case", CASES["caps"], ids=[hex(c["raw"]) for c in CASES["caps"]])
def test_cap_names(case: dict[str, Any]) -> None:
    assert render.cap_names(case["raw"]) == case["text"], case["source"]


@pytest.mark.parametrize("case", CASES["fd_types"], ids=[c["raw"] for c in CASES["fd_types"]])
def test_fd_type_name(case: dict[str, Any]) -> None:
    assert render.fd_type_name(case["raw"]) == case["text"], case["source"]


@pytest.mark.parametrize("case", CASES["open_predicates"], ids=_ids(CASES["open_predicates"]))
def test_open_predicates(case: dict[str, Any]) -> None:
    flags = _raw(case["flags"])
    got = (render.is_open_read(flags), render.is_open_write(flags), render.is_open_exec(flags, case["mode"]))
    assert got == (case["read"], case["write"], case["exec"]), case["source"]


def _text(value: Any) -> str:
    if isinstance(value, dict):
        return str(value["latin1"]) if "latin1" in value else str(value["repeat"]) * int(value["times"])
    return str(value)


@pytest.mark.parametrize("case", CASES["paths"], ids=[f"{i}" for i in range(len(CASES["paths"]))])
def test_resolve_path(case: dict[str, Any]) -> None:
    assert resolve_path(_text(case["base"]), _text(case["path"])) == _text(case["text"])


# --- literals of Falco's rules files ------------------------------------------------------------
_FIELD = r"(evt\.arg\.\w+|evt\.res|thread\.cap_\w+|fd\.type)(?![\w.\[])"
_OP = r"(==|=|!=|icontains|contains|startswith|endswith|intersects|in|pmatch|glob)"
_VALUE = r"(\([^)]*\)|\"[^\"]*\"|'[^']*'|[^\s()]+)"
_COMPARISON = re.compile(rf"{_FIELD}\s*{_OP}\s*{_VALUE}")

# Literals Falco itself never produces, so the clause can never be true in Falco either.
_NEVER_IN_FALCO = {
    ("evt.res", "!=", "-1"): "libs prints -1 as EPERM (errno_to_str)",
    ("evt.arg.cmd", "=", "5"): "libs prints bpf cmd 5 as BPF_PROG_LOAD (test filterchecks/evt.cpp)",
}
# Parameters printed as sent: any literal is producible, which the test checks by rendering it.
_AS_SENT = {"path", "name", "oldpath", "newpath", "target", "filename", "linkpath"}

_CANDIDATES = sorted(
    set(range(256))
    | {1 << i for i in range(32)}
    | set(rf.LINUX_PTRACE.values())
    | {(1 << 22) | (1 << 16)}  # O_TMPFILE
)


def _comparisons(rules_dir: Path) -> Iterator[tuple[str, str, str]]:
    docs = [yaml.safe_load(p.read_text()) for p in sorted(rules_dir.glob("*.yaml"))]
    items = [item for doc in docs for item in doc or []]
    lists: dict[str, list[str]] = {}
    for item in items:
        if "list" in item:
            lists.setdefault(item["list"], []).extend(str(v) for v in item.get("items") or [])

    def expand(token: str) -> Iterator[str]:
        token = token.strip().strip("\"'")
        if token in lists:
            for value in lists[token]:
                yield from expand(value)
        elif token:
            yield token

    for item in items:
        condition = item.get("condition")
        if not isinstance(condition, str):
            continue
        for field, op, value in _COMPARISON.findall(condition):
            for literal in expand(value[1:-1]) if value.startswith("(") else [value]:
                for single in literal.split(",") if value.startswith("(") else [literal]:
                    yield field, op, single.strip().strip("\"'")


@cache
def _vocabulary(field: str) -> frozenset[str]:
    """Every text the renderer produces for the field, over a wide range of raw values."""
    if field == "evt.res":
        return frozenset({render.errno_name(v) for v in range(-600, 1)})
    if field.startswith("thread.cap_"):
        return frozenset(render.cap_names(1 << bit) for bit in range(64)) - {""}
    if field == "fd.type":
        return frozenset(render.fd_type_name(chr(c)) for c in range(128))
    param = field.removeprefix("evt.arg.")
    texts = set()
    for t, index in enumerate(record.EVENT_PARAM_INDEX):
        if param in index:
            texts |= {str(render.render_arg(t, index[param], raw)) for raw in _CANDIDATES}
    return frozenset(texts)


def _producible(field: str, op: str, literal: str) -> bool:
    param = field.removeprefix("evt.arg.")
    if field.startswith("evt.arg.") and param in _AS_SENT:
        t = next(t for t, index in enumerate(record.EVENT_PARAM_INDEX) if param in index)
        return render.render_arg(t, record.EVENT_PARAM_INDEX[t][param], literal) == literal
    if field == "evt.arg.uid":  # a user name, as libs resolves it
        t = record.event_type_id("setuid")
        return render.render_arg(t, 1, 33, user_names={33: literal}) == literal
    texts = _vocabulary(field)
    if op in ("=", "==", "!=", "in", "intersects"):
        return literal in texts
    if op == "icontains":
        return any(literal.lower() in text.lower() for text in texts)
    if op == "startswith":
        return any(text.startswith(literal) for text in texts)
    if op == "endswith":
        return any(text.endswith(literal) for text in texts)
    return any(literal in text for text in texts)  # contains


def test_every_literal_falco_rules_compare_rendered_fields_with_is_producible(
    falco_rules_dir: Path,
) -> None:
    comparisons = set(_comparisons(falco_rules_dir))
    fields = {f for f, _, _ in comparisons}
    # the extraction must see what the rules are known to use (reference rules-language.md section 6)
    expected = {"evt.arg.flags", "evt.arg.request", "evt.arg.domain", "evt.res", "thread.cap_effective",
                "thread.cap_permitted", "fd.type", "evt.arg.mode", "evt.arg.cmd", "evt.arg.uid"}  # fmt: skip
    assert expected <= fields
    missing = sorted(
        c for c in comparisons if c not in _NEVER_IN_FALCO and not _producible(*c)
    )
    assert not missing, f"rules compare with texts the renderer never produces: {missing}"
    for never in _NEVER_IN_FALCO:
        if never in comparisons:
            assert not _producible(*never), f"{never} became producible: Falco would not match it"


@pytest.mark.parametrize("case", CASES["outputs"], ids=[c["template"] for c in CASES["outputs"]])
def test_output_tokens(case: dict[str, Any]) -> None:
    """Output templates split into tokens and text as libs' formatter splits them."""
    if "error" in case:
        with pytest.raises(CompileError) as info:
            compile_output(case["template"], suggested=False)
        assert case["error"] in info.value.message, case["source"]
        return
    spec = dict(case["event"])
    ev = build_event(spec.pop("type"), **spec)
    assert compile_output(case["template"], suggested=False).render(ev)[0] == case["text"], case["source"]
