"""The condition AST: what the parser produces and every later pass consumes.

Node kinds follow libs' ``filter/ast.h`` one to one, as frozen slotted dataclasses. Every node
carries the position of its first character in the condition text (``pos``), which errors use to
point a caret; positions never take part in equality, so a macro inlined from elsewhere compares
equal to the same text written in place. ``to_source()`` prints the canonical form Falco's tests
compare against: ``(a and b)``, ``not x``, ``f op v``, lists as ``(a, b)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeAlias


@dataclass(frozen=True, slots=True)
class Pos:
    """Offset (0-based), line and column (1-based) in the condition text."""

    idx: int = 0
    line: int = 1
    col: int = 1


NOPOS = Pos()


def _quote(value: str) -> str:
    """Quote a value for to_source() when it would not lex back as one bare string."""
    if value and not any(c in value for c in " \t\r\n()\"'=,"):
        return value
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
    return f'"{escaped}"'


@dataclass(frozen=True, slots=True)
class FieldExpr:
    """A field, e.g. ``proc.name``, ``proc.aname[2]``, ``evt.arg.flags`` (arg None), ``evt.arg[0]``."""

    name: str
    arg: str | None = None
    pos: Pos = field(default=NOPOS, compare=False)

    def to_source(self) -> str:
        return self.name if self.arg is None else f"{self.name}[{self.arg}]"


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
        inner = ", ".join(v.to_source() for v in self.values)
        text = f"{self.transformer}({inner})"
        return text if self.arg is None else f"{text}[{self.arg}]"


@dataclass(frozen=True, slots=True)
class ValueExpr:
    """A literal right-hand value, kept as text: typing happens in the compiler."""

    value: str
    pos: Pos = field(default=NOPOS, compare=False)

    def to_source(self) -> str:
        return _quote(self.value)


@dataclass(frozen=True, slots=True)
class ListExpr:
    """``(a, b, c)``: a right-hand list (values), or a transformer list argument."""

    values: tuple[ValueExpr | FieldExpr | TransformerExpr, ...]
    pos: Pos = field(default=NOPOS, compare=False)

    def to_source(self) -> str:
        return "(" + ", ".join(v.to_source() for v in self.values) + ")"


@dataclass(frozen=True, slots=True)
class FieldRefExpr:
    """``val(field)`` on the right-hand side: compare against another field of the same event."""

    field: FieldExpr
    pos: Pos = field(default=NOPOS, compare=False)

    def to_source(self) -> str:
        return f"val({self.field.to_source()})"


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
    (``oneof``, ``anyof``, ``allof``) is carried separately, its right side always a ListExpr."""

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
        return self.name


@dataclass(frozen=True, slots=True)
class NotExpr:
    child: Expr
    pos: Pos = field(default=NOPOS, compare=False)

    def to_source(self) -> str:
        return f"not {self.child.to_source()}"


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
