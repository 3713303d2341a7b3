"""rules.resolve: Falco's textual list substitution and AST macro inlining.

Expected texts come from reading falco ``userspace/engine/rule_loader_compiler.cpp``
(``resolve_list``, ``compile_list_infos``, ``quote_item``) and ``filter_macro_resolver.cpp``.
"""

from __future__ import annotations

import pytest

from rules.ast import (
    AndExpr,
    BinaryCheckExpr,
    Expr,
    FieldExpr,
    IdentifierExpr,
    NotExpr,
    OrExpr,
    Pos,
    ValueExpr,
)
from rules.resolve import (
    ListDef,
    MacroError,
    expand_lists,
    inline_macros,
    join_items,
    original_offset,
    quote_item,
    relocate,
    substitute_lists,
)


def sub(condition: str, **lists: list[str]) -> str:
    return substitute_lists(condition, [(name, join_items(items)) for name, items in lists.items()])


@pytest.mark.parametrize(
    ("item", "quoted"),
    [("bash", "bash"), ("a b", '"a b"'), ('"a b"', '"a b"'), ("'a b'", "'a b'"), ("", ""), ('"x"', '"x"')],
)
def test_quote_item(item: str, quoted: str) -> None:
    assert quote_item(item) == quoted


def test_substitution_inside_parentheses() -> None:
    assert sub("proc.name in (shells)", shells=["ash", "bash"]) == "proc.name in ( ash, bash )"


def test_substitution_eats_blanks_around_the_name() -> None:
    assert sub("proc.name in ( shells\t)", shells=["sh"]) == "proc.name in ( sh )"


def test_empty_list_removes_one_neighbouring_comma() -> None:
    assert sub("x in (a, empty)", empty=[]) == "x in (a  )"
    assert sub("x in (empty, a)", empty=[]) == "x in (   a)"
    assert sub("x in (empty)", empty=[]) == "x in (  )"


def test_names_are_whole_words_between_delimiters() -> None:
    assert sub("x = bashful and y = mybash", bash=["zsh"]) == "x = bashful and y = mybash"
    assert sub("x=bash", bash=["zsh"]) == "x= zsh "
    assert sub("x.bash = 1", bash=["zsh"]) == "x.bash = 1"


def test_every_occurrence_is_replaced() -> None:
    assert sub("a in (l) or b in (l)", l=["x"]) == "a in ( x ) or b in ( x )"


def test_occurrence_right_after_a_substitution_at_offset_0_is_skipped() -> None:
    # resolve_list resumes its search one character past the inserted text's trailing blank
    assert sub("l l", l=["x"]) == "x l"


def test_item_naming_the_list_itself_does_not_loop() -> None:
    assert sub("p in (l)", l=["l", "m"]) == "p in ( l, m )"


def test_lists_apply_in_order_so_later_lists_expand_inserted_names() -> None:
    lists = [("outer", "inner, b"), ("inner", "x")]
    assert substitute_lists("p in (outer)", lists) == "p in ( x , b )"
    assert substitute_lists("p in (outer)", list(reversed(lists))) == "p in ( inner, b )"


def test_used_names_are_recorded() -> None:
    used: set[str] = set()
    substitute_lists("p in (a)", [("a", "1"), ("b", "2")], used)
    assert used == {"a"}


def test_origin_maps_substituted_text_back_to_what_was_written() -> None:
    written = "evt.type = execve and shells or x"
    origin = list(range(len(written)))
    text = substitute_lists(written, [("shells", "bash, sh")], None, origin)
    assert text == "evt.type = execve and bash, sh or x"
    assert len(origin) == len(text)
    comma = text.index(",")
    assert original_offset(origin, comma, len(written)) == written.index("shells")
    assert original_offset(origin, text.index(" or x") + 4, len(written)) == written.index(" or x") + 4
    assert original_offset(origin, len(text), len(written)) == len(written)


def test_lists_in_lists_expand_one_level_from_earlier_lists_only() -> None:
    lists = [
        ListDef("inner", ("x",), 0, 0),
        ListDef("middle", ("inner", "y"), 1, 1),
        ListDef("outer", ("middle", "later"), 2, 2),
        ListDef("later", ("z",), 3, 3),
    ]
    expanded, used = expand_lists(lists)
    assert expanded == [
        ("inner", ("x",)),
        ("middle", ("x", "y")),
        ("outer", ("inner", "y", "later")),  # raw items of middle: one level only
        ("later", ("z",)),
    ]
    assert used == {"inner", "middle"}


def test_list_redefined_later_sees_lists_defined_before_the_redefinition() -> None:
    expanded, _ = expand_lists([ListDef("a", ("b",), 0, 2), ListDef("b", ("x",), 1, 1)])
    assert expanded[0] == ("a", ("x",))


# --- macros ---------------------------------------------------------------------------------------


def check(field: str, value: str) -> BinaryCheckExpr:
    return BinaryCheckExpr(FieldExpr(field), "=", ValueExpr(value))


def ident(name: str, idx: int = 0) -> IdentifierExpr:
    return IdentifierExpr(name, Pos(idx, 1, idx + 1))


def test_macros_are_inlined_recursively_without_flattening() -> None:
    macros: dict[str, Expr] = {
        "open": OrExpr((check("evt.type", "open"), check("evt.type", "openat"))),
        "opener": AndExpr((ident("open"), check("proc.name", "cat"))),
    }
    used: set[str] = set()
    expr = AndExpr((ident("opener"), NotExpr(ident("open"))))
    result = inline_macros(expr, macros.get, used)
    assert result.to_source() == (
        "(((evt.type = open or evt.type = openat) and proc.name = cat)"
        " and not (evt.type = open or evt.type = openat))"
    )
    assert used == {"open", "opener"}


def test_expression_without_identifiers_is_returned_as_is() -> None:
    expr = AndExpr((check("a.b", "1"), NotExpr(check("c.d", "2"))))
    assert inline_macros(expr, {}.get, set()) is expr


def test_unknown_macro_points_at_the_identifier_written_here() -> None:
    macros: dict[str, Expr] = {"outer": AndExpr((check("a.b", "1"), ident("missing", 40)))}
    with pytest.raises(MacroError) as info:
        inline_macros(AndExpr((check("x.y", "1"), ident("outer", 12))), macros.get, set())
    assert info.value.message == "Undefined macro 'missing' used in filter."
    assert info.value.offset == 12


def test_loop_is_reported_before_unknown_macros() -> None:
    macros: dict[str, Expr] = {"a": ident("b"), "b": ident("a")}
    with pytest.raises(MacroError) as info:
        inline_macros(AndExpr((ident("nope", 0), ident("a", 9))), macros.get, set())
    assert info.value.message == "reference loop in macro 'a'"
    assert info.value.offset == 9


def test_same_macro_twice_side_by_side_is_not_a_loop() -> None:
    macros: dict[str, Expr] = {"m": check("a.b", "1")}
    result = inline_macros(OrExpr((ident("m"), ident("m"))), macros.get, set())
    assert result.to_source() == "(a.b = 1 or a.b = 1)"


def test_inlined_macro_nodes_take_the_position_of_the_macro_name() -> None:
    body = AndExpr((check("a.b", "1"), NotExpr(check("c.d", "2"))), Pos(0, 1, 1))
    result = inline_macros(OrExpr((check("x.y", "1"), ident("m", 13))), {"m": body}.get, set())
    assert isinstance(result, OrExpr)
    inlined = result.children[1]
    assert isinstance(inlined, AndExpr) and inlined.pos.idx == 13
    negated = inlined.children[1]
    assert isinstance(negated, NotExpr) and negated.pos.idx == 13 and negated.child.pos.idx == 13
    assert isinstance(negated.child, BinaryCheckExpr) and negated.child.left.pos.idx == 13


def test_relocate_maps_every_position_and_keeps_equality() -> None:
    expr = AndExpr((check("a.b", "1"), ident("m", 9)))
    moved = relocate(expr, lambda pos: Pos(pos.idx + 100, 2, pos.col))
    assert moved == expr
    assert moved.children[1].pos == Pos(109, 2, 10)
