"""The condition-language parser: Falco condition text in, an AST (``rules.ast``) out.

It accepts and rejects exactly what libs' ``userspace/libsinsp/filter/parser.cpp`` does (every
accept/reject case of libs' ``filter_parser.ut.cpp`` is a test vector here), builds the same tree
and reports errors with libs' messages and the offset where the parser stopped. Grammar, as EBNF
(tokens are the POSIX regexes of parser.cpp; BLANK is space, \\t, \\b, \\r or \\n)::

    Expr        ::= OrExpr
    OrExpr      ::= AndExpr { "or" ( BLANK+ AndExpr | "(" Expr ")" ) }
    AndExpr     ::= NotExpr { "and" ( BLANK+ NotExpr | "(" Expr ")" ) }
    NotExpr     ::= { "not" SPACE+ } ( "not(" Expr ")" | Check )     (* each "not" toggles *)
    Check       ::= "(" Expr ")" | Field Condition | Transformer Condition | Identifier
    Condition   ::= "exists"
                  | NumOp ( RhsTransformerOrVal | NumValue )
                  | StrOp BLANK+ Modifier BLANK+ ListValue          (* list or identifier follows,
                                                                       not and/or/not *)
                  | StrOp ( RhsTransformerOrVal | StrValue )
                  | ListOp ( ListValue | RhsTransformerOrVal )
    NumOp       ::= "<=" | "<" | ">=" | ">"
    StrOp       ::= "==" | "=" | "!=" | ( "glob" | "iglob" | "contains" | "icontains" | "bcontains"
                  | "startswith" | "bstartswith" | "endswith" | "regex" ) BLANK+
    Modifier    ::= "oneof" | "anyof" | "allof"
    ListOp      ::= "intersects" | "in" | "pmatch"                   (* no blank needed after *)
    ListValue   ::= "(" [ StrValue { "," StrValue } ] ")" | Identifier
    Field       ::= FieldName [ "[" ( QuotedStr | FieldArgBareStr ) "]" ]
    Transformer ::= TransformerName "(" TArg { "," TArg } ")" [ "[" ( QuotedStr | FieldArgBareStr ) "]" ]
    TransformerName ::= "tolower" | "toupper" | "b64" | "basename" | "len" | "join" | "concat" | "getopt"
    TArg        ::= NumValue | QuotedStr | "(" [ TListArg { "," TListArg } ] ")" | Transformer | Field
    TListArg    ::= Field | Transformer | QuotedStr | NumValue
    RhsTransformerOrVal ::= "val(" Field ")" [ "[" ( QuotedStr | FieldArgBareStr ) "]" ] | Transformer
    NumValue    ::= HexNumber | Number
    StrValue    ::= QuotedStr | BareStr

    Identifier      ::= [a-zA-Z]+[a-zA-Z0-9_]*
    FieldName       ::= [a-zA-Z]+[a-zA-Z0-9_]*(\\.[a-zA-Z]+[a-zA-Z0-9_]*)+
    FieldArgBareStr ::= [^][\"'[:space:]]+
    HexNumber       ::= 0[xX][0-9a-fA-F]+
    Number          ::= [+\\-]?[0-9]+[\\.]?[0-9]*([eE][+\\-][0-9]+)?
    BareStr         ::= [^()\"'[:space:]=,]+
    QuotedStr       ::= '...' | "..."        (escapes: see unescape())

Things worth knowing, all libs behaviour:
- A right-hand side that looks like a field (``a.b = c.d``) is the bare string ``c.d``; only
  ``val(c.d)`` (FieldRefExpr) or a transformer compares with a field.
- A bare identifier after ``in``/``intersects``/``pmatch`` or after a modifier is a ValueExpr
  holding the name (libs' ``value_expr``), not a ListExpr.
- ``not not x`` is ``x``: consecutive ``not`` toggle one flag. ``not (not x)`` keeps both.
- A single-child and/or is never built: the child is returned.
- ``a.b inx`` reads as ``a.b in x`` (list operators need no blank after them).

Deliberate differences from libs:
- An invalid escape in the first element of a list is an error; libs swallows it and reads
  the list as empty.
- Error offsets for invalid escapes point at the backslash (libs: just after the string).
- Positions: every node has the position of its first character, except that a top-level
  and/or/not node whose text starts with blanks is at 0, as in libs. Transformer arguments
  after a comma and transformer-list elements get their own first character (libs reuses the
  comma's or the list's position).
- ``max_depth`` counts nesting the way libs' depth guard does (about five units per level of
  parentheses); Falco raises libs' default of 100 to 1000 for rule conditions, our default.

Conditions are Python ``str``; a ``\\xHH`` escape (libs master, Falco 0.45) is the byte HH, held
as records hold bytes (UTF-8 decoded, other bytes as surrogate escapes), and a NUL ends a quoted
string (it fails to lex) as in libs. Parsing is one pass with precompiled regexes: the 445 macro
and rule conditions of Falco's three rules files (80k characters) parse in about 0.1 s.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from typing import Final

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
from rules.errors import Location, ParseError

__all__ = [
    "LIST_OPERATORS",
    "OPERATORS",
    "TRANSFORMERS",
    "parse",
    "parse_field_or_transformer",
    "position",
    "unescape",
]

# [[:space:]] in libs' POSIX regexes is ASCII whitespace; Python's \s would also take Unicode.
_NOT_BLANK: Final = re.compile(r"not[ \t\n\v\f\r]+")
_IDENTIFIER: Final = re.compile(r"[a-zA-Z]+[a-zA-Z0-9_]*")
_FIELD_NAME: Final = re.compile(r"[a-zA-Z]+[a-zA-Z0-9_]*(?:\.[a-zA-Z]+[a-zA-Z0-9_]*)+")
_FIELD_ARG_BARE: Final = re.compile(r"[^\]\[\"' \t\n\v\f\r]+")
# one regex for HexNumber | Number: the hex alternative first, as libs tries lex_hex_num first
_NUMBER: Final = re.compile(r"0[xX][0-9a-fA-F]+|[+\-]?[0-9]+\.?[0-9]*(?:[eE][+\-][0-9]+)?")
_BARE_STR: Final = re.compile(r"[^()\"' \t\n\v\f\r=,]+")

_BLANKS: Final = " \t\b\r\n"
_UNARY_OPS: Final = ("exists",)
_NUM_OPS: Final = ("<=", "<", ">=", ">")
_SYMBOL_STR_OPS: Final = ("==", "=", "!=")
# word operators need a blank after them
_WORD_STR_OPS: Final = (
    "glob", "iglob", "contains", "icontains", "bcontains", "startswith", "bstartswith", "endswith", "regex",
)
_MODIFIERS: Final = ("oneof", "anyof", "allof")
LIST_OPERATORS: Final = ("intersects", "in", "pmatch")
TRANSFORMERS: Final = ("tolower", "toupper", "b64", "basename", "len", "join", "concat", "getopt")
# every operator, in libs' supported_operators() order (its error messages list them so)
OPERATORS: Final = _UNARY_OPS + _NUM_OPS + _SYMBOL_STR_OPS + _WORD_STR_OPS + LIST_OPERATORS
_TRANSFORMER_CALLS: Final = tuple(t + "(" for t in TRANSFORMERS)

_OPS_TEXT: Final = ", ".join(f"'{op}'" for op in OPERATORS)
_TRANSFORMERS_TEXT: Final = ", ".join(f"'{t}'" for t in ("val", *TRANSFORMERS))
_SIMPLE_ESCAPES: Final = {
    "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", " ": "\\", "\\": "\\", "/": "/",
}
_HEX_DIGITS: Final = frozenset("0123456789abcdefABCDEF")


def parse(text: str, *, max_depth: int = 1000) -> Expr:
    """Parse a whole condition. Raises ParseError (message, offset in ``text``) when it is not one."""
    if not text:
        raise ParseError("filter input string is empty", Location(condition=text, offset=0))
    p = _Parser(text, max_depth)
    try:
        res = p.parse_or(embedded=False)
    except RecursionError:
        # only reachable when a caller raises max_depth far above the default
        raise p.error(f"exceeded max depth limit of {max_depth}") from None
    if p.i != p.n:
        raise p.error(f"unexpected token after '{p.last}', expecting 'or', 'and'")
    return res


def parse_field_or_transformer(text: str, start: int = 0) -> tuple[FieldExpr | TransformerExpr, int]:
    """Read one field (``proc.aname[2]``) or transformer call (``tolower(proc.name)``) at ``start``.

    For output templates: returns the node and the offset just past it, ignoring what follows, so
    ``%proc.pname)`` stops at ``)``. As libs' formatter does by retrying shorter prefixes, an
    argument that does not lex (``proc.name[x y]``) is left out and the node ends before ``[``.
    A caller that needs an even shorter prefix (the name does not compile) passes ``text`` cut.
    Raises ParseError when no prefix at ``start`` is a field or a transformer.
    """
    p = _Parser(text, 1000)
    p.i = start
    pos = start
    node: FieldExpr | TransformerExpr
    if p.rgx(_FIELD_NAME):
        node = FieldExpr(p.last, None, p.pos(pos))
    elif p.lex_transformer():
        p.blank()
        name, values = p.transformer_call(p.last[:-1])
        node = TransformerExpr(name, values, None, p.pos(pos))
    else:
        raise p.error("expected a field or a field transformer")
    before_arg = p.i
    try:
        arg = p.optional_arg()
    except ParseError:
        p.i = before_arg
        return node, before_arg
    if arg is not None:
        node = (
            FieldExpr(node.name, arg, node.pos)
            if isinstance(node, FieldExpr)
            else TransformerExpr(node.transformer, node.values, arg, node.pos)
        )
    return node, p.i


def position(text: str, offset: int) -> Pos:
    """Line and column of ``offset`` in ``text``, counted as libs does (``\\r`` and ``\\n`` both
    start a line), e.g. for a ParseError's offset."""
    return _Parser(text, 0).pos(offset)


def unescape(quoted: str) -> str:
    """The value of a quoted string token (quotes included), by libs' escaping rules.

    Escapes: ``\\b \\f \\n \\r \\t \\\\ \\/``, ``\\"`` only inside ``"..."``, ``\\'`` only inside
    ``'...'``, ``\\xHH``; ``\\<space>`` is a lone backslash (libs keeps it for old rules). Anything
    else raises ParseError with the offset of the backslash.
    """
    return _unescape(quoted, quoted, 0)


def _unescape(quoted: str, condition: str, base: int) -> str:
    body = quoted[1:-1]
    if "\\" not in body:
        return body
    out: list[str] = []
    raw_bytes = False
    end = len(body)
    k = 0
    while k < end:
        c = body[k]
        if c != "\\":
            out.append(c)
            k += 1
            continue
        if k + 1 == end:
            break  # a dangling backslash (only reachable through unescape()): libs drops it
        e = body[k + 1]
        at = Location(condition=condition, offset=base + 1 + k)
        simple = _SIMPLE_ESCAPES.get(e)
        if simple is not None:
            out.append(simple)
        elif e in "\"'":
            if e != quoted[0]:
                other = "\"" if e == "'" else "'"
                raise ParseError(f"invalid \\{e} escape in {other}-quoted string", at)
            out.append(e)
        elif e == "x":
            if k + 3 >= end:
                raise ParseError("truncated hex char escape sequence", at)
            digits = body[k + 2 : k + 4]
            if not (digits[0] in _HEX_DIGITS and digits[1] in _HEX_DIGITS):
                raise ParseError(f"invalid hex char escape sequence: {digits}", at)
            byte = int(digits, 16)
            # one raw byte (libs escaping.cpp): above 0x7f, its surrogate escape, as records
            # hold bytes that are not UTF-8; whole UTF-8 sequences are decoded below
            out.append(chr(byte) if byte < 0x80 else chr(0xDC00 + byte))
            raw_bytes = raw_bytes or byte >= 0x80
            k += 2
        else:
            raise ParseError(f"unsupported string escape sequence: \\{e}", at)
        k += 2
    text = "".join(out)
    if raw_bytes:  # \xc3\xa9 are the bytes of é: the same text as a record holding them
        text = text.encode("utf-8", "surrogateescape").decode("utf-8", "surrogateescape")
    return text


class _Parser:
    """One parse: a cursor over ``text`` and libs' last-token and depth bookkeeping.

    Methods mirror libs' parse_* functions, but or/and/not share one Python frame and nested
    arguments of a transformer share one, so that even libs' depth limit of 1000 stays far from
    Python's recursion limit.
    """

    __slots__ = ("text", "n", "i", "last", "depth", "max_depth", "_newlines")

    def __init__(self, text: str, max_depth: int) -> None:
        self.text = text
        self.n = len(text)
        self.i = 0
        self.last = ""  # libs' m_last_token: quoted in "unexpected token after '...'"
        self.depth = 0
        self.max_depth = max_depth
        # libs counts both \r and \n as line breaks
        has_breaks = "\n" in text or "\r" in text
        self._newlines = [k for k, c in enumerate(text) if c in "\r\n"] if has_breaks else []

    # --- bookkeeping -------------------------------------------------------------------------

    def pos(self, idx: int) -> Pos:
        if not self._newlines:
            return Pos(idx, 1, idx + 1)
        breaks = bisect_left(self._newlines, idx)
        col = idx + 1 if breaks == 0 else idx - self._newlines[breaks - 1]
        return Pos(idx, breaks + 1, col)

    def error(self, message: str) -> ParseError:
        return ParseError(message, Location(condition=self.text, offset=self.i))

    def enter(self, units: int) -> None:
        self.depth += units
        if self.depth >= self.max_depth:
            raise self.error(f"exceeded max depth limit of {self.max_depth}")

    # --- lexing ------------------------------------------------------------------------------

    def blank(self) -> bool:
        text, i, n = self.text, self.i, self.n
        while i < n and text[i] in _BLANKS:
            i += 1
        found = i != self.i
        self.i = i
        return found

    def lex(self, token: str) -> bool:
        if self.text.startswith(token, self.i):
            self.last = token
            self.i += len(token)
            return True
        return False

    def lex_word_op(self, word: str) -> bool:
        """A word operator or modifier: the word, then at least one blank (all consumed)."""
        if self.text.startswith(word, self.i):
            start, last = self.i, self.last
            self.i += len(word)
            self.last = word
            if self.blank():
                return True
            self.i, self.last = start, last
        return False

    def rgx(self, pattern: re.Pattern[str]) -> bool:
        m = pattern.match(self.text, self.i)
        if m is None:
            return False
        self.last = m.group()
        self.i = m.end()
        return True

    def lex_transformer(self) -> bool:
        if self.i < self.n and self.text[self.i] in "tbljcg":
            for call in _TRANSFORMER_CALLS:
                if self.lex(call):
                    return True
        return False

    def lex_quoted(self) -> bool:
        text, start = self.text, self.i
        if start >= self.n or text[start] not in "\"'":
            return False
        quote = text[start]
        end = text.find(quote, start + 1)
        while end != -1 and text[end - 1] == "\\":
            end = text.find(quote, end + 1)
        nul = text.find("\0", start, self.n if end == -1 else end)
        if end == -1 or nul != -1:
            # libs keeps what it read as the last token, and the cursor where it was
            self.last = text[start : self.n if nul == -1 else nul]
            return False
        self.i = end + 1
        self.last = _unescape(text[start : end + 1], text, start)
        return True

    def bool_keyword_follows(self) -> bool:
        for kw in ("and", "or", "not"):
            if self.text.startswith(kw, self.i):
                after = self.i + len(kw)
                if after == self.n or not (self.text[after].isascii() and self.text[after].isalnum()):
                    return True
        return False

    # --- grammar -----------------------------------------------------------------------------

    def parse_or(self, *, embedded: bool) -> Expr:
        """libs' parse_or with parse_and and parse_not folded in; ``embedded``: after a "("."""
        if embedded:
            self.enter(1)  # parse_embedded_remainder
            self.blank()
        self.enter(1)
        or_pos = self.i
        self.blank()
        or_children: list[Expr] = []
        or_paren = False
        while True:
            if or_paren:
                or_children.append(self.parse_or(embedded=True))
            else:
                or_children.append(self.parse_and())
            self.blank()
            if not self.lex("or"):
                break
            if self.blank():
                or_paren = False
            elif self.lex("("):
                or_paren = True
            else:
                raise self.error("expected blank or '(' after 'or'")
        self.depth -= 1
        if embedded:
            self.blank()
            if not self.lex(")"):
                raise self.error("expected a ')' token")
            self.depth -= 1
        if len(or_children) == 1:
            return or_children[0]
        return OrExpr(tuple(or_children), self.pos(or_pos))

    def parse_and(self) -> Expr:
        self.enter(1)
        and_pos = self.i
        self.blank()
        children: list[Expr] = []
        paren = False
        while True:
            if paren:
                children.append(self.parse_or(embedded=True))
            else:
                # parse_not, inline
                self.enter(1)
                not_pos = self.i
                self.blank()
                negate = False
                while self.rgx(_NOT_BLANK):
                    negate = not negate
                if self.lex("not("):
                    negate = not negate
                    child = self.parse_or(embedded=True)
                else:
                    child = self.parse_check()
                self.depth -= 1
                children.append(NotExpr(child, self.pos(not_pos)) if negate else child)
            self.blank()
            if not self.lex("and"):
                break
            if self.blank():
                paren = False
            elif self.lex("("):
                paren = True
            else:
                raise self.error("expected blank or '(' after 'and'")
        self.depth -= 1
        if len(children) == 1:
            return children[0]
        return AndExpr(tuple(children), self.pos(and_pos))

    def parse_check(self) -> Expr:
        self.enter(1)
        start = self.i
        self.blank()
        res: Expr
        if self.lex("("):
            res = self.parse_or(embedded=True)
        elif self.rgx(_FIELD_NAME):
            res = self.parse_condition(self.field_rest(self.last, start), start)
        elif self.lex_transformer():
            self.blank()
            res = self.parse_condition(self.transformer_rest(self.last[:-1], start), start)
        elif self.rgx(_IDENTIFIER):
            res = IdentifierExpr(self.last, self.pos(start))
        else:
            raise self.error("expected a '(' token, a field check, or an identifier")
        self.depth -= 1
        return res

    def field_rest(self, name: str, start: int) -> FieldExpr:
        self.enter(1)
        arg = self.optional_arg()
        self.depth -= 1
        return FieldExpr(name, arg, self.pos(start))

    def optional_arg(self) -> str | None:
        if not self.lex("["):
            return None
        if not (self.lex_quoted() or self.rgx(_FIELD_ARG_BARE)):
            raise self.error("expected a valid field argument: a quoted string or a bare string")
        arg = self.last
        if not self.lex("]"):
            raise self.error("expected a ']' token")
        return arg

    def transformer_rest(self, name: str, start: int) -> TransformerExpr:
        name, values = self.transformer_call(name)
        return TransformerExpr(name, values, self.optional_arg(), self.pos(start))

    def transformer_call(self, name: str) -> tuple[str, tuple[TransformerArg, ...]]:
        """The arguments of a transformer, after its "(" and up to its ")" (libs'
        parse_field_or_transformer_remainder with parse_field_transformer_arg inline)."""
        self.enter(1)
        self.blank()
        values: list[TransformerArg] = []
        while True:
            self.enter(1)
            self.blank()
            start = self.i
            value: TransformerArg
            if self.rgx(_NUMBER) or self.lex_quoted():
                value = ValueExpr(self.last, self.pos(start))
            elif self.lex("("):
                value = self.transformer_list(start)
            elif self.lex_transformer():
                value = self.transformer_rest(self.last[:-1], start)
            elif self.rgx(_FIELD_NAME):
                value = self.field_rest(self.last, start)
            else:
                raise self.error(
                    "expected field transformer argument: "
                    "field, transformer, quoted string, number, or transformer list"
                )
            self.depth -= 1
            values.append(value)
            self.blank()
            if not self.lex(","):
                break
        self.blank()
        if not self.lex(")"):
            raise self.error("expected a ')' token closing the transformer")
        self.depth -= 1
        return name, tuple(values)

    def transformer_list(self, start: int) -> ListExpr:
        self.blank()
        items: list[ValueExpr | FieldExpr | TransformerExpr] = []
        if self.lex(")"):
            return ListExpr((), self.pos(start))
        while True:
            item_start = self.i
            item: ValueExpr | FieldExpr | TransformerExpr
            if self.rgx(_FIELD_NAME):
                item = self.field_rest(self.last, item_start)
            elif self.lex_transformer():
                self.blank()
                item = self.transformer_rest(self.last[:-1], item_start)
            elif self.lex_quoted() or self.rgx(_NUMBER):
                item = ValueExpr(self.last, self.pos(item_start))
            else:
                raise self.error(
                    "expected transformer list argument: field, transformer, quoted string, or number"
                )
            items.append(item)
            self.blank()
            if not self.lex(","):
                break
            self.blank()
        if not self.lex(")"):
            raise self.error("expected ')'")
        return ListExpr(tuple(items), self.pos(start))

    def parse_condition(self, left: FieldExpr | TransformerExpr, start: int) -> Expr:
        self.enter(1)
        self.blank()
        if self.lex("exists"):
            self.depth -= 1
            return UnaryCheckExpr(left, "exists", self.pos(start))
        self.blank()
        modifier: str | None = None
        right: ValueExpr | ListExpr | FieldRefExpr | TransformerExpr
        op = self.lex_num_op()
        if op is not None:
            right = self.num_value_or_transformer()
        elif (op := self.lex_str_op()) is not None:
            had_blank = op[0].isalpha() or self.blank()
            saved = (self.i, self.last)
            if (
                had_blank
                and self.lex_modifier()
                and self.list_value_follows()
                and not self.bool_keyword_follows()
            ):
                modifier = self.last
                right = self.list_value()
            else:
                self.i, self.last = saved
                right = self.str_value_or_transformer()
        elif (op := self.lex_list_op()) is not None:
            right = self.list_value_or_transformer()
        else:
            raise self.error(f"expected a valid check operator: one of {_OPS_TEXT}")
        self.depth -= 1
        return BinaryCheckExpr(left, op, right, modifier, self.pos(start))

    def lex_num_op(self) -> str | None:
        for op in _NUM_OPS:
            if self.lex(op):
                return op
        return None

    def lex_str_op(self) -> str | None:
        for op in _SYMBOL_STR_OPS:
            if self.lex(op):
                return op
        for op in _WORD_STR_OPS:
            if self.lex_word_op(op):
                return op
        return None

    def lex_modifier(self) -> bool:
        return any(self.lex_word_op(m) for m in _MODIFIERS)

    def lex_list_op(self) -> str | None:
        for op in LIST_OPERATORS:
            if self.lex(op):
                return op
        return None

    def list_value_follows(self) -> bool:
        return self.text.startswith("(", self.i) or _IDENTIFIER.match(self.text, self.i) is not None

    def num_value_or_transformer(self) -> ValueExpr | FieldRefExpr | TransformerExpr:
        self.enter(1)
        self.blank()
        start = self.i
        res: ValueExpr | FieldRefExpr | TransformerExpr | None = self.try_transformer_or_val()
        if res is None:
            if not self.rgx(_NUMBER):
                raise self.error(
                    f"expected a number value or a field with a valid transformer: {_TRANSFORMERS_TEXT}"
                )
            res = ValueExpr(self.last, self.pos(start))
        self.depth -= 1
        return res

    def str_value_or_transformer(self) -> ValueExpr | FieldRefExpr | TransformerExpr:
        self.enter(1)
        self.blank()
        start = self.i
        res: ValueExpr | FieldRefExpr | TransformerExpr | None = self.try_transformer_or_val()
        if res is None:
            if not (self.lex_quoted() or self.rgx(_BARE_STR)):
                raise self.error(
                    f"expected a string value or a field with a valid transformer: {_TRANSFORMERS_TEXT}"
                )
            res = ValueExpr(self.last, self.pos(start))
        self.depth -= 1
        return res

    def str_value(self) -> ValueExpr | None:
        """A list element; None when none lexes (libs' parse_str_value_or_transformer(true))."""
        self.enter(1)
        self.blank()
        start = self.i
        found = self.lex_quoted() or self.rgx(_BARE_STR)
        self.depth -= 1
        return ValueExpr(self.last, self.pos(start)) if found else None

    def try_list(self) -> ListExpr | None:
        start = self.i
        if not self.lex("("):
            return None
        self.blank()
        values: list[ValueExpr | FieldExpr | TransformerExpr] = []
        first = self.str_value()
        if first is not None:
            values.append(first)
            self.blank()
            while self.lex(","):
                value = self.str_value()
                if value is None:
                    raise self.error("expected a string value")
                values.append(value)
                self.blank()
        if not self.lex(")"):
            raise self.error("expected a ')' token")
        return ListExpr(tuple(values), self.pos(start))

    def list_value(self) -> ListExpr | ValueExpr:
        self.enter(1)
        self.blank()
        start = self.i
        res: ListExpr | ValueExpr | None = self.try_list()
        if res is None:
            if not self.rgx(_IDENTIFIER):
                raise self.error("expected a list or an identifier")
            res = ValueExpr(self.last, self.pos(start))
        self.depth -= 1
        return res

    def list_value_or_transformer(self) -> ListExpr | ValueExpr | FieldRefExpr | TransformerExpr:
        self.enter(1)
        self.blank()
        start = self.i
        res: ListExpr | ValueExpr | FieldRefExpr | TransformerExpr | None = self.try_list()
        if res is None:
            res = self.try_transformer_or_val()
        if res is None:
            if not self.rgx(_IDENTIFIER):
                raise self.error(
                    "expected a list, an identifier, or a field with a valid transformer: "
                    + _TRANSFORMERS_TEXT
                )
            res = ValueExpr(self.last, self.pos(start))
        self.depth -= 1
        return res

    def try_transformer_or_val(self) -> FieldRefExpr | TransformerExpr | None:
        self.enter(1)
        self.blank()
        start = self.i
        res: FieldRefExpr | TransformerExpr | None = None
        if self.lex("val("):
            self.blank()
            field_start = self.i
            if not self.rgx(_FIELD_NAME):
                raise self.error("expected a field within 'val' transformer")
            field = self.field_rest(self.last, field_start)
            self.blank()
            if not self.lex(")"):
                raise self.error("expected a ')' token closing the transformer")
            res = FieldRefExpr(field, self.pos(start), self.optional_arg())
        elif self.lex_transformer():
            self.blank()
            res = self.transformer_rest(self.last[:-1], start)
        self.depth -= 1
        return res
