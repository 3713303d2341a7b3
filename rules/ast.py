"""The condition AST: what the parser produces and every later pass consumes.

Node kinds follow libs' ``filter/ast.h`` one to one, as frozen slotted dataclasses. Every node
carries the position of its first character in the condition text (``pos``), which errors use to
point a caret; positions never take part in equality, so a macro inlined from elsewhere compares
equal to the same text written in place. ``to_source()`` prints the canonical form Falco's tests
compare against: ``(a and b)``, ``not x``, ``f op v``, lists as ``(a, b)``.

to_source() differs from libs' ``as_string`` only where libs' text would not parse back to the same
tree (``parse(e.to_source()) == e`` holds for every tree the parser builds):
- transformer arguments are separated by ", " and literals in them are quoted unless numeric
  (libs prints ``getopt(proc.args,nt:)``, which does not parse; we print ``getopt(proc.args, "nt:")``);
- values holding ``(``, ``)``, ``,`` or ``\v`` are quoted, and the empty value prints ``""``;
  inside quotes NUL is written ``\x00`` and a trailing backslash ``\x5c``;
- a double negation prints ``not (not x)``, because ``not not x`` parses as ``x``;
- a macro named ``not`` prints ``(not)``, because ``not`` and a blank start a negation.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import TypeAlias


@dataclass(frozen=True, slots=True)
class Pos:
    """Offset (0-based), line and column (1-based) in the condition text."""

    idx: int = 0
    line: int = 1
    col: int = 1


NOPOS = Pos()


# What may stand bare: a BareStr of the grammar without the characters libs' escape_str() quotes
# (backslash, NUL, \b); anything else is printed double-quoted.
_BARE_VALUE = re.compile(r"[^()\"' \t\n\v\f\r=,\\\0\b]+")
# A field argument may stand bare when it is a FieldArgBareStr of the grammar.
_BARE_ARG = re.compile(r"[^\]\[\"' \t\n\v\f\r\\\0\b]+")
# A transformer argument stands bare only when it lexes back as a number.
_NUMBER = re.compile(r"0[xX][0-9a-fA-F]+|[+\-]?[0-9]+\.?[0-9]*(?:[eE][+\-][0-9]+)?")
_ESCAPES = {
    "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\", '"': '\\"', "\0": "\\x00",
}


def quote_string(value: str) -> str:
    """``value`` double-quoted with libs' escapes, so that the lexer reads it back unchanged.

    A trailing backslash is written ``\\x5c``: libs' lexer ends a string at the first quote not
    preceded by a backslash, so ``"a\\\\"`` would not end where it should. A byte that is not
    UTF-8 (held as its surrogate escape, U+DC80-U+DCFF) is written ``\\xHH``, which reads back as
    that byte.
    """
    body = "".join(_ESCAPES.get(c) or _byte_escape(c) for c in value)
    if body.endswith("\\\\"):
        body = body[:-2] + "\\x5c"
    return f'"{body}"'


def _byte_escape(c: str) -> str:
    """``\\xHH`` for the surrogate escape of byte HH (U+DC80 to U+DCFF), else the character."""
    return f"\\x{ord(c) - 0xDC00:02x}" if "\udc80" <= c <= "\udcff" else c


def _quote(value: str) -> str:
    """A right-hand value as to_source() prints it: bare when it lexes back as one bare string."""
    return value if _BARE_VALUE.fullmatch(value) else quote_string(value)


def _arg_source(arg: str | None) -> str:
    if arg is None:
        return ""
    return f"[{arg}]" if _BARE_ARG.fullmatch(arg) else f"[{quote_string(arg)}]"


def _transformer_arg_source(arg: TransformerArg) -> str:
    """Transformer arguments take no bare strings: a literal is a number or a quoted string."""
    if isinstance(arg, ValueExpr):
        return arg.value if _NUMBER.fullmatch(arg.value) else quote_string(arg.value)
    if isinstance(arg, ListExpr):
        return "(" + ", ".join(_transformer_arg_source(v) for v in arg.values) + ")"
    return arg.to_source()


@dataclass(frozen=True, slots=True)
class FieldExpr:
    """A field, e.g. ``proc.name``, ``proc.aname[2]``, ``evt.arg.flags`` (arg None), ``evt.arg[0]``."""

    name: str
    arg: str | None = None
    pos: Pos = field(default=NOPOS, compare=False)

    def to_source(self) -> str:
        return self.name + _arg_source(self.arg)


@dataclass(frozen=True, slots=True)
class TransformerExpr:
    """``tolower(proc.name)``, ``concat(a, "x")``, ``join(",", (a, b))``, ``getopt(proc.args, "o:")[o]``.

    ``values`` holds FieldExpr, TransformerExpr, ValueExpr (quoted strings and numbers) and, for
    ``join``, one ListExpr of those.
    """

    transformer: str
    values: tuple[TransformerArg, ...]
    arg: str | None = None
    pos: Pos = field(default=NOPOS, compare=False)

    def to_source(self) -> str:
        inner = ", ".join(_transformer_arg_source(v) for v in self.values)
        return f"{self.transformer}({inner}){_arg_source(self.arg)}"


@dataclass(frozen=True, slots=True)
class ValueExpr:
    """A literal right-hand value, kept as text: typing happens in the compiler."""

    value: str
    pos: Pos = field(default=NOPOS, compare=False)

    def to_source(self) -> str:
        return _quote(self.value)


@dataclass(frozen=True, slots=True)
class ListExpr:
    """``(a, b, c)``: a right-hand list (ValueExpr only), or a transformer list argument such as
    ``join(",", (proc.name, tolower(fd.name), "x"))`` (fields, transformers, quoted strings, numbers)."""

    values: tuple[ValueExpr | FieldExpr | TransformerExpr, ...]
    pos: Pos = field(default=NOPOS, compare=False)

    def to_source(self) -> str:
        return "(" + ", ".join(v.to_source() for v in self.values) + ")"


@dataclass(frozen=True, slots=True)
class FieldRefExpr:
    """``val(field)`` on the right-hand side: compare against another field of the same event.

    ``arg`` is an argument written after the call, ``val(proc.args)[1]``, which libs' grammar
    accepts; None when absent (always so in Falco's rules files).
    """

    field: FieldExpr
    # spelled in full: the attribute `field` hides dataclasses.field for type checkers
    pos: Pos = dataclasses.field(default=NOPOS, compare=False)
    arg: str | None = None

    def to_source(self) -> str:
        return f"val({self.field.to_source()}){_arg_source(self.arg)}"


@dataclass(frozen=True, slots=True)
class UnaryCheckExpr:
    """``field exists``."""

    left: FieldExpr | TransformerExpr
    op: str
    pos: Pos = field(default=NOPOS, compare=False)

    def to_source(self) -> str:
        return f"{self.left.to_source()} {self.op}"


@dataclass(frozen=True, slots=True)
class BinaryCheckExpr:
    """``left op right``. ``op`` is the canonical spelling (``==`` is kept as ``==``); a modifier
    (``oneof``, ``anyof``, ``allof``) is carried separately, its right side a ListExpr.

    As in libs, a bare identifier after a list operator or a modifier (``evt.type in my_list``)
    is a ValueExpr holding the name; the loader substitutes lists textually before parsing, so
    such a name is one no list defines."""

    left: FieldExpr | TransformerExpr
    op: str
    right: ValueExpr | ListExpr | FieldRefExpr | TransformerExpr
    modifier: str | None = None
    pos: Pos = field(default=NOPOS, compare=False)

    def to_source(self) -> str:
        op = self.op if self.modifier is None else f"{self.op} {self.modifier}"
        return f"{self.left.to_source()} {op} {self.right.to_source()}"


@dataclass(frozen=True, slots=True)
class IdentifierExpr:
    """A bare name: a macro reference until macro resolution replaces it."""

    name: str
    pos: Pos = field(default=NOPOS, compare=False)

    def to_source(self) -> str:
        return "(not)" if self.name == "not" else self.name


@dataclass(frozen=True, slots=True)
class NotExpr:
    child: Expr
    pos: Pos = field(default=NOPOS, compare=False)

    def to_source(self) -> str:
        # libs reads "not not x" as x (each "not" toggles), so a double negation needs parentheses
        inner = self.child.to_source()
        return f"not ({inner})" if isinstance(self.child, NotExpr) else f"not {inner}"


@dataclass(frozen=True, slots=True)
class AndExpr:
    children: tuple[Expr, ...]
    pos: Pos = field(default=NOPOS, compare=False)

    def to_source(self) -> str:
        return "(" + " and ".join(c.to_source() for c in self.children) + ")"


@dataclass(frozen=True, slots=True)
class OrExpr:
    children: tuple[Expr, ...]
    pos: Pos = field(default=NOPOS, compare=False)

    def to_source(self) -> str:
        return "(" + " or ".join(c.to_source() for c in self.children) + ")"


TransformerArg: TypeAlias = "FieldExpr | TransformerExpr | ValueExpr | ListExpr"
Expr: TypeAlias = "AndExpr | OrExpr | NotExpr | IdentifierExpr | UnaryCheckExpr | BinaryCheckExpr"
