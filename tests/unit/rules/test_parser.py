"""rules.parser: the tree it builds, its errors and positions, and that to_source() parses back."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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
    quote_string,
)
from rules.errors import ParseError
from rules.parser import TRANSFORMERS, parse, parse_field_or_transformer, unescape
from rules.resolve import join_items, substitute_lists


def f(name: str, arg: str | None = None) -> FieldExpr:
    return FieldExpr(name, arg)


def v(value: str) -> ValueExpr:
    return ValueExpr(value)


def check(field: str, op: str, value: str) -> BinaryCheckExpr:
    return BinaryCheckExpr(f(field), op, v(value))


def error_of(text: str, **kwargs: int) -> tuple[str, int | None]:
    with pytest.raises(ParseError) as info:
        parse(text, **kwargs)
    return info.value.message, info.value.location.offset


# --- structure ---------------------------------------------------------------------------------


def test_precedence_not_over_and_over_or() -> None:
    a, b = check("a.a", "=", "1"), check("b.b", "=", "2")
    assert parse("a.a=1 or b.b=2 and c") == OrExpr((a, AndExpr((b, IdentifierExpr("c")))))
    assert parse("not a.a=1 and b.b=2") == AndExpr((NotExpr(a), b))
    assert parse("not (a.a=1 and b.b=2)") == NotExpr(AndExpr((a, b)))
    assert parse("(a or b) and c") == AndExpr(
        (OrExpr((IdentifierExpr("a"), IdentifierExpr("b"))), IdentifierExpr("c"))
    )


def test_and_or_are_nary_and_never_wrap_a_single_child() -> None:
    assert parse("a and b and c") == AndExpr(tuple(IdentifierExpr(n) for n in "abc"))
    assert parse("a or b or(c)") == OrExpr(tuple(IdentifierExpr(n) for n in "abc"))
    assert parse("((a))") == IdentifierExpr("a")
    # a parenthesised group stays a child of its own
    assert parse("a and (b and c)") == AndExpr(
        (IdentifierExpr("a"), AndExpr((IdentifierExpr("b"), IdentifierExpr("c"))))
    )


def test_negations_toggle_like_libs() -> None:
    a = IdentifierExpr("a")
    assert parse("not not a") == a
    assert parse("not not not a") == NotExpr(a)
    assert parse("not (not a)") == NotExpr(NotExpr(a))
    assert parse("not(not(a))") == NotExpr(NotExpr(a))
    assert parse("notb") == IdentifierExpr("notb")
    assert NotExpr(NotExpr(a)).to_source() == "not (not a)"
    # a macro named "not": libs reads "(not) and a" so, and "not and a" as a negation
    tricky = AndExpr((IdentifierExpr("not"), a))
    assert parse("(not) and a") == tricky and parse(tricky.to_source()) == tricky


NUM_OPS = ["<", "<=", ">", ">="]
STR_OPS = [
    "=",
    "==",
    "!=",
    "contains",
    "icontains",
    "bcontains",
    "startswith",
    "bstartswith",
    "endswith",
    "glob",
    "iglob",
    "regex",
]
LIST_OPS = ["in", "intersects", "pmatch"]


@pytest.mark.parametrize("op", NUM_OPS)
def test_numeric_operators(op: str) -> None:
    assert parse(f"proc.pid {op} 10") == check("proc.pid", op, "10")
    assert parse(f"proc.pid{op}-1.5e+3") == check("proc.pid", op, "-1.5e+3")
    assert parse(f"proc.pid {op} 0x1F") == check("proc.pid", op, "0x1F")
    assert error_of(f"proc.pid {op} abc")[0].startswith("expected a number value or a field with a valid")


@pytest.mark.parametrize("op", STR_OPS)
def test_string_operators(op: str) -> None:
    assert parse(f"proc.name {op} bash") == check("proc.name", op, "bash")
    assert parse(f"proc.name {op} 'a b'") == check("proc.name", op, "a b")


def test_symbol_operators_need_no_blank_but_words_do() -> None:
    assert parse("proc.name=bash") == check("proc.name", "=", "bash")
    assert parse("proc.name!=bash") == check("proc.name", "!=", "bash")
    assert error_of("proc.name containsbash")[0].startswith(
        "expected a valid check operator: one of 'exists',"
    )


@pytest.mark.parametrize("op", LIST_OPS)
def test_list_operators(op: str) -> None:
    expected = BinaryCheckExpr(f("proc.name"), op, ListExpr((v("a"), v("b c"), v("1"))))
    assert parse(f'proc.name {op} (a, "b c", 1)') == expected
    assert parse(f"proc.name {op}()") == BinaryCheckExpr(f("proc.name"), op, ListExpr(()))
    # libs: an identifier there is a value naming a list (the loader substitutes lists before)
    assert parse(f"proc.name {op} my_list") == check("proc.name", op, "my_list")


def test_exists() -> None:
    assert parse("proc.name exists") == UnaryCheckExpr(f("proc.name"), "exists")
    assert parse("tolower(proc.name) exists") == UnaryCheckExpr(
        TransformerExpr("tolower", (f("proc.name"),)), "exists"
    )
    assert parse("proc.name existsand a") == AndExpr(
        (UnaryCheckExpr(f("proc.name"), "exists"), IdentifierExpr("a"))
    )


@pytest.mark.parametrize("modifier", ["oneof", "anyof", "allof"])
@pytest.mark.parametrize("op", ["=", "==", "!=", "contains", "startswith", "glob"])
def test_modifiers(op: str, modifier: str) -> None:
    text = f"proc.name {op} {modifier} (cat, nginx)"
    expected = BinaryCheckExpr(f("proc.name"), op, ListExpr((v("cat"), v("nginx"))), modifier)
    assert parse(text) == expected
    assert expected.to_source() == text
    assert parse(f"proc.name {op} {modifier} names") == BinaryCheckExpr(
        f("proc.name"), op, v("names"), modifier
    )
    # not a modifier: a plain value
    assert parse(f"proc.name {op} {modifier} and a") == AndExpr(
        (check("proc.name", op, modifier), IdentifierExpr("a"))
    )
    assert parse(f"(proc.name {op} {modifier})") == check("proc.name", op, modifier)


def test_modifier_is_not_taken_by_numeric_or_list_operators() -> None:
    assert error_of("proc.pid > oneof (1, 2)")[0].startswith("expected a number value")
    assert error_of("proc.name in oneof (a)")[0] == "unexpected token after 'oneof', expecting 'or', 'and'"


def test_documented_libs_quirks() -> None:
    # list operators need no blank after them
    assert parse("a.b inx") == check("a.b", "in", "x")
    # after a modifier, a name starting with and/or/not plus a non-alphanumeric is a keyword
    assert error_of("proc.name = oneof and_list")[0] == "expected blank or '(' after 'and'"
    # a top-level and/or starts where the text does, blanks included, as in libs
    assert parse("  a or b").pos == Pos(0, 1, 1)
    assert parse("(  a or b)").pos == Pos(3, 1, 4)


# --- fields, values, transformers --------------------------------------------------------------


def test_fields_and_arguments() -> None:
    assert parse("evt.arg.flags contains O_CREAT").left == f("evt.arg.flags")  # type: ignore[union-attr]
    assert parse("proc.aname[2]=bash").left == f("proc.aname", "2")  # type: ignore[union-attr]
    assert parse('evt.arg["key with space"] = x').left == f("evt.arg", "key with space")  # type: ignore[union-attr]
    assert parse("evt.arg['q\\'s'] = x").left == f("evt.arg", "q's")  # type: ignore[union-attr]
    assert parse('test.str[""] = x').left == f("test.str", "")  # type: ignore[union-attr]
    assert parse('test.str[""] = x') != parse("test.str = x")
    assert f("evt.arg", "key with space").to_source() == 'evt.arg["key with space"]'
    assert f("evt.arg", "").to_source() == 'evt.arg[""]'


def test_a_field_on_the_right_is_a_string_and_val_makes_it_a_field() -> None:
    assert parse("a.b = c.d") == check("a.b", "=", "c.d")
    assert parse("a.b = val(c.d)") == BinaryCheckExpr(f("a.b"), "=", FieldRefExpr(f("c.d")))
    assert parse("a.b < val( c.d )") == BinaryCheckExpr(f("a.b"), "<", FieldRefExpr(f("c.d")))
    assert parse("a.b in val(c.d[1])") == BinaryCheckExpr(f("a.b"), "in", FieldRefExpr(f("c.d", "1")))
    assert parse("a.b = val(c.d)[2]") == BinaryCheckExpr(f("a.b"), "=", FieldRefExpr(f("c.d"), arg="2"))
    assert error_of("a.b = val(tolower(c.d))") == ("expected a field within 'val' transformer", 10)
    assert error_of("val(c.d) exists")[0] == "unexpected token after 'val', expecting 'or', 'and'"


def test_transformers() -> None:
    nested = TransformerExpr("b64", (TransformerExpr("toupper", (f("fd.name"),)),))
    assert parse("b64(toupper(fd.name)) exists").left == nested  # type: ignore[union-attr]
    assert parse("a.b = b64( toupper(fd.name) )").right == nested  # type: ignore[union-attr]
    joined = TransformerExpr(
        "join",
        (v(","), ListExpr((f("proc.name"), TransformerExpr("tolower", (f("fd.name"),)), v("x"), v("7")))),
    )
    assert parse('join(",", (proc.name, tolower(fd.name), "x", 7)) = y').left == joined  # type: ignore[union-attr]
    getopt = TransformerExpr("getopt", (f("proc.args"), v("o:")), arg="o")
    assert parse('getopt(proc.args, "o:")[o] = out').left == getopt  # type: ignore[union-attr]
    assert getopt.to_source() == 'getopt(proc.args, "o:")[o]'
    assert parse('concat(proc.name, "-", 1, proc.pid) = x').left == TransformerExpr(  # type: ignore[union-attr]
        "concat", (f("proc.name"), v("-"), v("1"), f("proc.pid"))
    )
    assert parse("len(proc.args) > 3").left == TransformerExpr("len", (f("proc.args"),))  # type: ignore[union-attr]
    assert error_of("b64 (fd.name) exists")[0] == "unexpected token after 'b64', expecting 'or', 'and'"
    assert error_of('join("-", (barestring)) = x')[0].startswith("expected transformer list argument")


def test_every_transformer_name() -> None:
    for name in TRANSFORMERS:
        assert parse(f"{name}(fd.name) exists").left == TransformerExpr(name, (f("fd.name"),))  # type: ignore[union-attr]


def test_parse_field_or_transformer_for_output_templates() -> None:
    text = "parent=%proc.aname[2]) x"
    node, end = parse_field_or_transformer(text, 8)
    assert node == f("proc.aname", "2") and text[end:] == ") x"
    assert parse_field_or_transformer("%proc.pname)", 1) == (f("proc.pname"), 11)
    assert parse_field_or_transformer("tolower(proc.name)!") == (
        TransformerExpr("tolower", (f("proc.name"),)),
        18,
    )
    assert parse_field_or_transformer("proc.name.") == (f("proc.name"), 9)
    # an argument that does not lex is left out, as libs' formatter retries shorter prefixes
    assert parse_field_or_transformer("proc.name[a b]") == (f("proc.name"), 9)
    assert parse_field_or_transformer("getopt(proc.args, 'o:')[x") == (
        TransformerExpr("getopt", (f("proc.args"), v("o:"))),
        23,
    )
    assert parse_field_or_transformer("x%evt.arg.flags", 2)[0].pos == Pos(2, 1, 3)
    for bad in ("name", " proc.name", "tolower(proc.name", "val(proc.name)"):
        with pytest.raises(ParseError):
            parse_field_or_transformer(bad)


# --- strings and escapes -----------------------------------------------------------------------

VALID_ESCAPES = [
    ("\\b", "\b"),
    ("\\f", "\f"),
    ("\\n", "\n"),
    ("\\r", "\r"),
    ("\\t", "\t"),
    ("\\\\", "\\"),
    ("\\/", "/"),
    ("\\ ", "\\"),
    ("\\x41", "A"),
    ("\\xAb", "\udcab"),  # a byte that is not UTF-8, as records hold it
    ("\\xc3\\xa9", "\xe9"),  # the two bytes of é are é
    ("\\x00", "\0"),
    ("\\x413", "A3"),
]


@pytest.mark.parametrize(("escape", "value"), VALID_ESCAPES)
@pytest.mark.parametrize("quote", ["'", '"'])
def test_valid_escapes(quote: str, escape: str, value: str) -> None:
    assert parse(f"a.b = {quote}<{escape}>{quote}") == check("a.b", "=", f"<{value}>")
    assert unescape(f"{quote}{escape}{quote}") == value


def test_quote_escapes_need_their_own_quotes() -> None:
    assert parse('a.b = "say \\"hi\\""') == check("a.b", "=", 'say "hi"')
    assert parse("a.b = 'it\\'s'") == check("a.b", "=", "it's")
    assert parse("a.b = 'mixed \"'") == check("a.b", "=", 'mixed "')


INVALID_ESCAPES = [
    ("a.b = 'x\\\"'", "invalid \\\" escape in '-quoted string", 8),
    ('a.b = "x\\\'"', "invalid \\' escape in \"-quoted string", 8),
    ('a.b = "\\q"', "unsupported string escape sequence: \\q", 7),
    ('a.b = "\\x4"', "truncated hex char escape sequence", 7),
    ('a.b = "ab\\x"', "truncated hex char escape sequence", 9),
    ('a.b = "\\xg1"', "invalid hex char escape sequence: g1", 7),
    ('a.b = "\\x-1"', "invalid hex char escape sequence: -1", 7),
    ('a.b = "\\x+a"', "invalid hex char escape sequence: +a", 7),
    ('a.b in (x, "\\q")', "unsupported string escape sequence: \\q", 12),
    ('a.b in ("\\q")', "unsupported string escape sequence: \\q", 9),  # libs: an empty list
    ('evt.arg["\\q"] = x', "unsupported string escape sequence: \\q", 9),
]


@pytest.mark.parametrize(("text", "message", "offset"), INVALID_ESCAPES)
def test_invalid_escapes(text: str, message: str, offset: int) -> None:
    assert error_of(text) == (message, offset)


def test_unescape_needs_quoted_text() -> None:
    with pytest.raises(ParseError) as info:
        unescape('"a\\zb"')
    assert (info.value.message, info.value.location.offset) == ("unsupported string escape sequence: \\z", 2)


# libs' filter_escaping.ut.cpp (falcosecurity/libs @ 48dfd53c): what escape_str() writes.
@pytest.mark.parametrize(
    ("value", "quoted"),
    [
        ("some string", '"some string"'),
        ("some\\b\\f\\n\\r\\tstring", '"some\\\\b\\\\f\\\\n\\\\r\\\\tstring"'),
        ('some "quoted string"', '"some \\"quoted string\\""'),
        ("some 'quoted string'", "\"some 'quoted string'\""),
        ("a\nb\tc\bd\fe\rf", '"a\\nb\\tc\\bd\\fe\\rf"'),
        # ours, where libs' text does not read back: NUL and a trailing backslash
        ("\0", '"\\x00"'),
        ("a \\", '"a \\x5c"'),
        ("ba\udcffsh", '"ba\\xffsh"'),  # a byte that is not UTF-8
    ],
)
def test_quote_string(value: str, quoted: str) -> None:
    assert quote_string(value) == quoted
    assert unescape(quoted) == value
    assert parse(f"a.b = {quoted}") == check("a.b", "=", value)


def test_values_print_bare_only_when_they_lex_back() -> None:
    assert check("a.b", "=", "/etc/shadow").to_source() == "a.b = /etc/shadow"
    assert check("a.b", "=", "runc:[0:PARENT]").to_source() == "a.b = runc:[0:PARENT]"
    for value in ["", "a b", "a,b", "f(x)", "x=y", "a\\b", "\vx", "it's"]:
        assert parse(check("a.b", "=", value).to_source()) == check("a.b", "=", value)


def test_nul_ends_a_quoted_string_but_not_a_bare_one() -> None:
    assert error_of('a.b = "x\0y"')[0].startswith("expected a string value")
    assert parse("a.b = x\0y") == check("a.b", "=", "x\0y")


def test_string_lexing_quirk_escaped_backslash_before_closing_quote() -> None:
    # libs' lexer ends a string at the first quote not preceded by a backslash
    assert error_of('a.b = "x\\\\"')[0].startswith("expected a string value")
    assert parse('a.b = "x\\\\" "') == check("a.b", "=", 'x\\" ')  # read as one string


# --- errors, positions, depth ------------------------------------------------------------------

MALFORMED = [
    ("", "filter input string is empty", 0),
    ("   ", "expected a '(' token, a field check, or an identifier", 3),
    ("a andb", "expected blank or '(' after 'and'", 5),
    ("a orb", "expected blank or '(' after 'or'", 4),
    ("a b", "unexpected token after 'a', expecting 'or', 'and'", 2),
    ("proc.name = bash x", "unexpected token after 'bash', expecting 'or', 'and'", 17),
    ("(a.b = 1", "expected a ')' token", 8),
    ("a.b in (x,)", "expected a string value", 10),
    ("a.b in (x", "expected a ')' token", 9),
    (
        "a.b bogus x",
        "expected a valid check operator: one of 'exists', '<=', '<', '>=', '>', '==', '=', '!=', "
        "'glob', 'iglob', 'contains', 'icontains', 'bcontains', 'startswith', 'bstartswith', 'endswith', "
        "'regex', 'intersects', 'in', 'pmatch'",
        4,
    ),
    (
        "a.b = 'open",
        "expected a string value or a field with a valid transformer: 'val', 'tolower', "
        "'toupper', 'b64', 'basename', 'len', 'join', 'concat', 'getopt'",
        6,
    ),
    ("a.b[] = x", "expected a valid field argument: a quoted string or a bare string", 4),
    ("a.b[x = 1", "expected a ']' token", 5),
    ("b64(a.b exists", "expected a ')' token closing the transformer", 8),
    ("macro > 12", "unexpected token after 'macro', expecting 'or', 'and'", 6),
    (
        "a and\n  b.c >",
        "expected a number value or a field with a valid transformer: 'val', 'tolower', "
        "'toupper', 'b64', 'basename', 'len', 'join', 'concat', 'getopt'",
        13,
    ),
]


@pytest.mark.parametrize(("text", "message", "offset"), MALFORMED)
def test_error_messages_and_offsets(text: str, message: str, offset: int) -> None:
    assert error_of(text) == (message, offset)


def test_error_renders_a_caret() -> None:
    with pytest.raises(ParseError) as info:
        parse("proc.name = bash x")
    assert str(info.value).endswith("proc.name = bash x\n                     ^")


def test_positions_count_lines_like_libs() -> None:
    e = parse("a.b = 1 and\r\n  c.d exists")
    assert isinstance(e, AndExpr)
    assert e.children[0].pos == Pos(0, 1, 1)
    assert e.children[1].pos == Pos(15, 3, 3)  # \r and \n each start a line
    rhs = parse("tolower(a.b) in (x, y)").right  # type: ignore[union-attr]
    assert rhs.pos == Pos(16, 1, 17) and rhs.values[1].pos == Pos(20, 1, 21)


@pytest.mark.parametrize(
    "text",
    [
        "(" * 100_000,
        "not(" * 50_000 + "a",
        "a and(" * 50_000,
        "b64(" * 50_000 + "a.b) exists",
        "a.b = " + "b64(" * 50_000,
        'join(",", (' * 50_000,
        "a.b in (" * 50_000,
    ],
)
def test_depth_is_capped_without_recursion_error(text: str) -> None:
    message, _ = error_of(text)
    assert message in ("exceeded max depth limit of 1000", "expected a string value", "expected a ')' token")


def test_depth_limit_is_libs_depth_accounting() -> None:
    assert parse("(" * 199 + "a" + ")" * 199) == IdentifierExpr("a")
    assert error_of("(" * 200 + "a" + ")" * 200)[0] == "exceeded max depth limit of 1000"
    assert (
        error_of("((((((((((((((((((((a))))))))))))))))))))", max_depth=100)[0]
        == "exceeded max depth limit of 100"
    )
    assert parse("((((((((((a))))))))))", max_depth=100) == IdentifierExpr("a")
    assert parse("not " * 10_000 + "a") == IdentifierExpr("a")  # a chain of not is a loop


# --- generated trees and text ------------------------------------------------------------------

LETTERS = "abcnotrdxyzAZ"
# keywords are valid names (macros, fields parts, list names) wherever libs reads them so
names = st.builds(
    "{}{}".format, st.sampled_from(LETTERS), st.text(LETTERS + "019_", max_size=5)
) | st.sampled_from(["and", "or", "not", "notb", "and_x", "exists", "in", "oneof"])
# after a modifier, libs takes a name starting with and/or/not + non-alnum for a keyword
list_names = names.filter(lambda s: not re.match(r"(and|or|not)([^a-zA-Z0-9]|$)", s))
field_names = st.lists(names, min_size=2, max_size=3).map(".".join)
texts = st.text(max_size=8)
args = st.none() | texts
numbers = st.sampled_from(["0", "1", "-1", "+0.25e+10", "1.", "0x1F", "0XaB", "42.5", "7e-3"])
fields = st.builds(FieldExpr, field_names, args)


def _transformers(inner: st.SearchStrategy[TransformerArg]) -> st.SearchStrategy[TransformerExpr]:
    literal = st.builds(ValueExpr, numbers | texts)
    listed = st.builds(ListExpr, st.lists(fields | literal, max_size=3).map(tuple))
    values = st.lists(inner | literal | listed, min_size=1, max_size=3).map(tuple)
    return st.builds(TransformerExpr, st.sampled_from(TRANSFORMERS), values, args)


transformers: st.SearchStrategy[TransformerExpr] = st.recursive(
    st.builds(TransformerExpr, st.sampled_from(TRANSFORMERS), st.tuples(fields), args),
    lambda inner: _transformers(fields | inner),
    max_leaves=4,
)
lefts = fields | transformers
rhs_fields = st.builds(FieldRefExpr, fields, arg=args) | transformers
value_lists = st.builds(ListExpr, st.lists(st.builds(ValueExpr, texts), max_size=3).map(tuple))
checks = st.one_of(
    st.builds(UnaryCheckExpr, lefts, st.just("exists")),
    st.builds(BinaryCheckExpr, lefts, st.sampled_from(NUM_OPS), st.builds(ValueExpr, numbers) | rhs_fields),
    st.builds(BinaryCheckExpr, lefts, st.sampled_from(STR_OPS), st.builds(ValueExpr, texts) | rhs_fields),
    st.builds(
        BinaryCheckExpr,
        lefts,
        st.sampled_from(LIST_OPS),
        value_lists | st.builds(ValueExpr, names) | rhs_fields,
    ),
    st.builds(
        BinaryCheckExpr,
        lefts,
        st.sampled_from(STR_OPS),
        value_lists | st.builds(ValueExpr, list_names),
        st.sampled_from(["oneof", "anyof", "allof"]),
    ),
    st.builds(IdentifierExpr, names),
)
exprs: st.SearchStrategy[Expr] = st.recursive(
    checks,
    lambda inner: st.one_of(
        st.builds(NotExpr, inner),
        st.builds(AndExpr, st.lists(inner, min_size=2, max_size=3).map(tuple)),
        st.builds(OrExpr, st.lists(inner, min_size=2, max_size=3).map(tuple)),
    ),
    max_leaves=8,
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(exprs)
def test_to_source_parses_back_to_the_same_tree(e: Expr) -> None:
    assert parse(e.to_source()) == e


TOKENS = [
    "a.b",
    "proc.name",
    "x",
    " ",
    "\n",
    "(",
    ")",
    ",",
    "=",
    "==",
    "!=",
    "<",
    ">=",
    "in",
    "exists",
    "contains ",
    "and",
    "or",
    "not",
    "not(",
    "oneof ",
    "'",
    '"',
    "\\",
    "[",
    "]",
    "1",
    "0x1",
    "val(",
    "tolower(",
    "join(",
    "'q'",
    '"\\x4',
    "\0",
    "\t",
    "é",
]


@settings(max_examples=500)
@given(st.lists(st.sampled_from(TOKENS), max_size=30).map("".join) | st.text(max_size=40))
def test_any_text_parses_or_raises_parse_error(text: str) -> None:
    try:
        e = parse(text)
    except ParseError as err:
        assert err.location.offset is not None and 0 <= err.location.offset <= len(text)
    else:
        assert parse(e.to_source()) == e


# --- Falco's rules files -----------------------------------------------------------------------

FALCO_FILES = ("falco_rules.yaml", "falco-incubating_rules.yaml", "falco-sandbox_rules.yaml")


def _conditions(rules_dir: Path) -> list[tuple[str, str]]:
    """(item name, condition) of every macro and rule of the three files, lists substituted."""
    docs = [yaml.safe_load((rules_dir / name).read_text(encoding="utf-8")) for name in FALCO_FILES]
    items = [item for doc in docs for item in doc]
    lists: dict[str, list[str]] = {}
    for item in items:
        if "list" in item:
            # an item naming an earlier list is expanded in place
            expanded = [x for raw in item["items"] for x in lists.get(str(raw), [str(raw)])]
            lists[item["list"]] = expanded
    joined = [(name, join_items(values)) for name, values in lists.items()]
    return [
        (item.get("macro") or item["rule"], substitute_lists(item["condition"], joined))
        for item in items
        if "condition" in item
    ]


def test_every_falco_condition_parses(falco_rules_dir: Path) -> None:
    conditions = _conditions(falco_rules_dir)
    assert len(conditions) > 400
    start = time.perf_counter()
    for _, text in conditions:
        parse(text)
    elapsed = time.perf_counter() - start
    print(f"parsed {len(conditions)} Falco conditions in {elapsed * 1000:.1f} ms")
    for name, text in conditions:
        e = parse(text)
        assert parse(e.to_source()) == e, name
