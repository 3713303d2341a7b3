"""libs' parser unit-test cases (tests/conformance/data/parser_vectors.yaml) against rules.parser."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from rules.ast import (
    AndExpr,
    BinaryCheckExpr,
    Expr,
    FieldExpr,
    FieldRefExpr,
    IdentifierExpr,
    ListExpr,
    NotExpr,
    OrExpr,
    Pos,
    TransformerArg,
    TransformerExpr,
    UnaryCheckExpr,
    ValueExpr,
)
from rules.errors import ParseError
from rules.parser import LIST_OPERATORS, OPERATORS, TRANSFORMERS, parse, position

VECTORS: dict[str, Any] = yaml.safe_load(
    (Path(__file__).parent / "data" / "parser_vectors.yaml").read_text(encoding="utf-8")
)
LIBS_DEPTH = 100  # the tests run libs' parser with its default depth limit


def _cases(section: str) -> list[Any]:
    return [
        pytest.param(case, id=f"{group}-{i}")
        for group, cases in VECTORS[section].items()
        for i, case in enumerate(cases)
    ]


def _whitespace_variants(text: str) -> list[str]:
    """libs' test_accept(): as written, padded with blanks, then spaces as line breaks, then tabs."""
    padded = f" {text} "
    breaks = padded.replace(" ", "\n")
    return [text, padded, breaks, breaks.replace("\n", "\t")]


@pytest.mark.parametrize("case", _cases("accept"))
def test_accept(case: str | dict[str, Any]) -> None:
    texts = [case["text"]] if isinstance(case, dict) else _whitespace_variants(case)
    for text in texts:
        ast = parse(text, max_depth=LIBS_DEPTH)
        assert parse(ast.to_source()) == ast, text


@pytest.mark.parametrize("case", _cases("reject"))
def test_reject(case: str | dict[str, Any]) -> None:
    if isinstance(case, str):
        text, message = case, None
    else:
        text = case["text"] if "text" in case else case["repeat"] * case["count"]
        message = case.get("message")
    with pytest.raises(ParseError) as info:
        parse(text, max_depth=LIBS_DEPTH)
    if message is not None:
        assert info.value.message == message
    assert info.value.location.condition == text
    assert info.value.location.offset is not None and 0 <= info.value.location.offset <= len(text)


@pytest.mark.parametrize("case", VECTORS["equal_ast"], ids=lambda c: c["text"][:40])
def test_equal_ast(case: dict[str, str]) -> None:
    ast = parse(case["text"], max_depth=LIBS_DEPTH)
    assert ast.to_source() == case["source"]
    assert parse(case["source"]) == ast


@pytest.mark.parametrize("case", VECTORS["as_string"], ids=lambda c: c["text"][:40])
def test_as_string(case: dict[str, str]) -> None:
    ast = parse(case["text"], max_depth=LIBS_DEPTH)
    assert ast.to_source() == case["source"]
    assert parse(case["source"]) == ast


def _positions(e: Expr | TransformerArg | FieldRefExpr) -> str:
    """libs' pos_visitor: node kind then "idx line col", depth first; val() is a transformer."""

    def at(kind: str, p: Pos) -> str:
        return f"{kind}{p.idx} {p.line} {p.col}"

    if isinstance(e, AndExpr | OrExpr):
        kind = "and" if isinstance(e, AndExpr) else "or"
        return at(kind, e.pos) + "".join(_positions(c) for c in e.children)
    if isinstance(e, NotExpr):
        return at("not", e.pos) + _positions(e.child)
    if isinstance(e, UnaryCheckExpr):
        return at("unary", e.pos) + _positions(e.left)
    if isinstance(e, BinaryCheckExpr):
        return at("binary", e.pos) + _positions(e.left) + _positions(e.right)
    if isinstance(e, FieldRefExpr):
        return at("transformer", e.pos) + _positions(e.field)
    if isinstance(e, TransformerExpr):
        args = (at("transformer_list", v.pos) if isinstance(v, ListExpr) else _positions(v) for v in e.values)
        return at("transformer", e.pos) + "".join(args)
    kinds = {IdentifierExpr: "identifier", ValueExpr: "value", ListExpr: "list", FieldExpr: "field"}
    return at(kinds[type(e)], e.pos)


@pytest.mark.parametrize("case", VECTORS["positions"], ids=lambda c: c["text"][:40])
def test_positions(case: dict[str, Any]) -> None:
    got = _positions(parse(case["text"], max_depth=LIBS_DEPTH))
    if "nodes" in case:
        assert got == case["nodes"]
    for part in case.get("contains", ()):
        assert part in got


@pytest.mark.parametrize("case", VECTORS["end_positions"], ids=lambda c: repr(c["text"]))
def test_end_positions(case: dict[str, Any]) -> None:
    text = case["text"]
    parse(text, max_depth=LIBS_DEPTH)
    assert position(text, len(text)) == Pos(case["idx"], case["line"], case["col"])


def test_supported_operators_and_transformers() -> None:
    assert sorted(OPERATORS) == sorted(VECTORS["operators"])
    assert sorted(LIST_OPERATORS) == sorted(VECTORS["list_operators"])
    assert sorted(TRANSFORMERS) == sorted(VECTORS["transformers"])
