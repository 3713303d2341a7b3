"""Python syntax trees for generated code: the pieces the rule compiler builds functions from.

Generated code is built from `ast` nodes and compiled from them, never written as text and
edited: a user's literal is an `ast.Constant` from the moment it enters the compiler, so no later
pass can mistake part of it for code. Catalog code that holds no user data (``p[4]``,
``(f[2] if f[9] else f[3])``) may be written as a template: `fill` parses it once and puts the
given nodes or constants into its upper-case holes, by structure.

`Read` marks a record read inside a leaf (see `rules.condtree.Values`); `rules.codegen` replaces
every one before compiling, and `compile` refuses any it left behind.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import TypeVar

T = TypeVar("T")
E = TypeVar("E", bound=ast.AST)

# The locals generated functions bind per event (`rules.fields.BASES`) and the event itself.
RECORDS = frozenset({"ev", "p", "pp", "c", "f", "a"})


class Read(ast.expr):
    """A read of record value number `index` of one function's `Values`. `first` marks the read
    that binds it within its leaf (a later read in the same leaf may reuse the binding)."""

    _fields = ("index", "first")
    index: int
    first: bool

    def __init__(self, index: int = 0, first: bool = True) -> None:
        super().__init__()
        self.index = index
        self.first = first


@dataclass(frozen=True, slots=True)
class Code:
    """Catalog code (an expression over the record locals), compared by structure."""

    tree: ast.expr = field(compare=False, hash=False, repr=False)
    key: str = field(default="")

    def __post_init__(self) -> None:
        if not self.key:
            object.__setattr__(self, "key", shape(self.tree))

    def __str__(self) -> str:
        """The code as Python text, for printing (and outputs, which still take text)."""
        return ast.unparse(self.tree)

    def constant(self) -> tuple[bool, object]:
        """(True, value) when the code is a constant (``None``, ``'<'``), else (False, None)."""
        if isinstance(self.tree, ast.Constant):
            return True, self.tree.value
        return False, None


@cache
def _parsed(template: str) -> ast.expr:
    return ast.parse(template, mode="eval").body


def fill(template: str, **holes: object) -> ast.expr:
    """The expression `template` (fixed catalog text) with each upper-case name in `holes`
    replaced by the given node (copied), `Code`, or constant value."""
    tree = clone(_parsed(template))
    if not holes:
        return tree

    def hole(node: ast.AST) -> ast.expr | None:
        if isinstance(node, ast.Name) and node.id in holes:
            return as_expr(holes[node.id])
        return None

    return rewrite(tree, hole)


def code(template: str, **holes: object) -> Code:
    """`fill` as a `Code`. Code trees are never changed in place (whoever puts one into generated
    code copies it), so a template without holes is built once."""
    if not holes:
        return _fixed(template)
    return Code(fill(template, **holes))


@cache
def _fixed(template: str) -> Code:
    return Code(clone(_parsed(template)))


def as_expr(value: object) -> ast.expr:
    """A node for a hole's value: a copy of a node or `Code`, else a constant."""
    if isinstance(value, Code):
        return clone(value.tree)
    if isinstance(value, ast.expr):
        return clone(value)
    return const(value)


def rewrite(tree: E, replace: Callable[[ast.AST], ast.expr | None]) -> E:
    """`tree` with every node `replace` gives a replacement for replaced (in place; the
    replacement is not looked into), and below the others looked into: an
    `ast.NodeTransformer` without its per-field lookups. Returns the root, replaced or not."""
    found = replace(tree)
    if found is not None:
        return found  # type: ignore[return-value]
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        fields = node.__dict__
        for key, value in fields.items():
            if isinstance(value, ast.AST):
                found = replace(value)
                if found is None:
                    stack.append(value)
                else:
                    fields[key] = found
            elif isinstance(value, list):
                for i, item in enumerate(value):
                    if isinstance(item, ast.AST):
                        found = replace(item)
                        if found is None:
                            stack.append(item)
                        else:
                            value[i] = found
    return tree


def clone(node: T) -> T:
    """A deep copy sharing no node (a transformer may then rewrite each occurrence alone)."""
    if isinstance(node, ast.AST):
        new = node.__class__.__new__(node.__class__)
        for key, value in node.__dict__.items():
            new.__dict__[key] = clone(value) if isinstance(value, (ast.AST, list)) else value
        return new
    if isinstance(node, list):
        return [clone(item) for item in node]  # type: ignore[return-value]
    return node


# --- small builders ---------------------------------------------------------------------------
def name(ident: str) -> ast.Name:
    return ast.Name(ident, ast.Load())


def store(ident: str) -> ast.Name:
    return ast.Name(ident, ast.Store())


def const(value: object) -> ast.Constant:
    """A constant node (a str, bytes, number, bool, None, or a tuple of those)."""
    return ast.Constant(value)  # type: ignore[arg-type]


def compare(left: ast.expr, op: ast.cmpop, right: ast.expr) -> ast.Compare:
    return ast.Compare(left, [op], [right])


def is_not_none(value: ast.expr) -> ast.Compare:
    return compare(value, ast.IsNot(), const(None))


def call(func: ast.expr | str, *args: ast.expr) -> ast.Call:
    return ast.Call(name(func) if isinstance(func, str) else func, list(args), [])


def method(obj: ast.expr, attr: str, *args: ast.expr) -> ast.Call:
    return ast.Call(ast.Attribute(obj, attr, ast.Load()), list(args), [])


def and_(values: Sequence[ast.expr]) -> ast.expr:
    return values[0] if len(values) == 1 else ast.BoolOp(ast.And(), list(values))


def or_(values: Sequence[ast.expr]) -> ast.expr:
    return values[0] if len(values) == 1 else ast.BoolOp(ast.Or(), list(values))


def not_(value: ast.expr) -> ast.expr:
    return ast.UnaryOp(ast.Not(), value)


def set_of(values: Sequence[object]) -> ast.expr:
    """A set display of constants (CPython turns ``x in {...}`` into a frozenset constant);
    the empty tuple when there are none."""
    unique = list(dict.fromkeys(values))
    if not unique:
        return const(())
    return ast.Set([const(v) for v in unique])


def walk(tree: ast.AST | Iterable[ast.AST]) -> Iterator[ast.AST]:
    """Every node under `tree` (one node or several), in no particular order: `ast.walk`
    without its per-field lookups (the compiler walks its trees often)."""
    stack = [tree] if isinstance(tree, ast.AST) else list(tree)
    while stack:
        node = stack.pop()
        yield node
        for value in node.__dict__.values():
            if isinstance(value, ast.AST):
                stack.append(value)
            elif isinstance(value, list):
                stack.extend(item for item in value if isinstance(item, ast.AST))


def names_in(tree: ast.AST | Iterable[ast.AST]) -> Iterator[ast.Name]:
    """Every `ast.Name` under `tree` (one node or several)."""
    for node in walk(tree):
        if isinstance(node, ast.Name):
            yield node


def reads_in(tree: ast.AST) -> Iterator[Read]:
    for node in walk(tree):
        if isinstance(node, Read):
            yield node


def shape(tree: ast.AST) -> str:
    """Text naming the structure of `tree`, equal for equal trees (a dictionary key; cheaper
    than `ast.dump`, and like it blind to positions)."""
    parts: list[str] = []

    def visit(value: object) -> None:
        if isinstance(value, ast.AST):
            parts.append(type(value).__name__)
            parts.append("(")
            for field_name in value._fields:
                visit(getattr(value, field_name, None))
                parts.append(",")
            parts.append(")")
        elif isinstance(value, list):
            parts.append("[")
            for item in value:
                visit(item)
                parts.append(",")
            parts.append("]")
        else:
            parts.append(repr(value))

    visit(tree)
    return "".join(parts)


def simple_read(tree: ast.expr) -> bool:
    """A plain index into a record local, such as ``p[4]``: the cheapest read there is."""
    return (
        isinstance(tree, ast.Subscript) and isinstance(tree.value, ast.Name) and tree.value.id in RECORDS
        and isinstance(tree.slice, ast.Constant) and type(tree.slice.value) is int
    )


def helper_calls(tree: ast.AST) -> int:
    """How many helpers (``_cmdline_of(...)``, a constant's program ``_k3(...)``) `tree` calls."""
    return sum(
        1 for node in walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id.startswith("_")
    )


def number_lines(tree: ast.Module) -> None:
    """Give every statement its own line, in order, and its expressions the line of their
    statement (as printed source would: tracing and tracebacks then tell statements apart)."""
    line = 0

    def number(stmts: list[ast.stmt]) -> None:
        nonlocal line
        for stmt in stmts:
            line += 1
            blocks: list[list[ast.stmt]] = []
            stack: list[ast.AST] = [stmt]
            while stack:
                node = stack.pop()
                if "lineno" in node._attributes:
                    node.lineno = node.end_lineno = line  # type: ignore[attr-defined]
                    node.col_offset = node.end_col_offset = 0  # type: ignore[attr-defined]
                for value in node.__dict__.values():
                    if isinstance(value, ast.AST):
                        stack.append(value)
                    elif isinstance(value, list) and value:
                        if isinstance(value[0], ast.stmt):
                            blocks.append(value)  # numbered after this statement, in order
                        else:
                            stack.extend(item for item in value if isinstance(item, ast.AST))
            for block in blocks:
                number(block)

    number(tree.body)
