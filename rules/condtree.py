"""The boolean tree compiled conditions are written from, and what building it needs.

A condition is lowered (`rules.compiler`) to a tree of `Leaf`, `And`, `Or`, `Not` and `Const`
nodes. A `Leaf` is one Python expression (an `ast.expr`) over the positional records that never
raises and has no side effect (a missing value is ``None`` and every test is false on it), which
is what makes every rewrite in `rules.optimize` and every ordering in `rules.codegen` exact:
evaluation order cannot change a result.

Record reads inside leaves are `rules.pyexpr.Read` nodes numbered by `Values`, so
`rules.codegen` can decide per function which reads become locals; user literals are
`ast.Constant` nodes. `Constants` holds the load-time objects (glob and regex programs, path
tables, networks) generated code reads as globals.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TypeAlias

from rules.affixes import Affixes
from rules.ast import Pos
from rules.errors import CompileError, Location
from rules.loaded import LoadWarning
from rules.pyexpr import (
    Code,
    Read,
    and_,
    clone,
    const,
    helper_calls,
    name,
    not_,
    or_,
    shape,
    simple_read,
    walk,
)


@dataclass(slots=True)
class Constants:
    """Load-time objects (glob and regex programs, path tables, networks) the generated module
    reads as globals, deduplicated across all rules of a ruleset."""

    values: dict[str, object] = field(default_factory=dict)
    _names: dict[object, str] = field(default_factory=dict)

    def add(self, key: object, make: Callable[[], object]) -> str:
        found = self._names.get(key)
        if found is None:
            found = self._names[key] = f"_k{len(self._names)}"
            self.values[found] = make()
        return found


@dataclass(slots=True)
class Values:
    """The record reads of one generated function, numbered so each is written once: leaves
    hold `Read` nodes, and `rules.codegen.resolve` decides per read whether it is inlined, bound
    to a local up front, or computed on first use and kept."""

    codes: list[Code] = field(default_factory=list)
    _index: dict[Code, int] = field(default_factory=dict)

    def ref(self, code: Code) -> int:
        n = self._index.get(code)
        if n is None:
            n = self._index[code] = len(self.codes)
            self.codes.append(code)
        return n

    def read(self, code: Code) -> Read:
        """Where generated code reads `code` (`rules.codegen.resolve` decides how)."""
        return Read(self.ref(code), True)


@dataclass(slots=True)
class Context:
    """What one lowering needs: the rule (for error locations), the event type being specialised
    to (None: any), the shared constants, and the function's table of record reads."""

    location: Location
    constants: Constants
    event_type: int | None = None
    warnings: list[LoadWarning] | None = None
    values: Values = field(default_factory=Values)

    def bind(self, code: Code) -> ast.expr:
        """The first read of `code` in a leaf."""
        return self.values.read(code)

    def reuse(self, code: Code) -> ast.expr:
        """A later read of `code` in the same leaf, after `bind` ran."""
        return Read(self.values.ref(code), False)

    def error(self, message: str, pos: Pos) -> CompileError:
        return CompileError(message, replace(self.location, offset=pos.idx))

    def warn(
        self, message: str, pos: Pos, code: str = "LOAD_COMPILE_CONDITION", *, once: bool = False
    ) -> None:
        """Record a warning; with `once`, not again for the same rule (Falco keeps a set per
        condition, e.g. of deprecated fields)."""
        if self.warnings is None:
            return
        where = replace(self.location, offset=pos.idx)
        rule = replace(where, offset=None)
        if once and any(
            w.code == code and w.message == message and replace(w.location, offset=None) == rule
            for w in self.warnings
        ):
            return
        self.warnings.append(LoadWarning(code, message, where))


Reader = Callable[[Code], ast.expr]
Test: TypeAlias = tuple[Code, str, tuple[object, ...]]  # (read, operator, values)


@dataclass(frozen=True, slots=True)
class Leaf:
    """One check in generated code, with what the optimiser needs to order and index it.
    Compared by `sig`, the structure of its code."""

    code: ast.expr = field(compare=False, hash=False, repr=False)
    cost: float = field(compare=False)  # rough relative cost: 1 is a local read and a compare
    p_true: float = field(compare=False)  # guessed probability of being true on a typical event
    key: tuple[int, tuple[object, ...]] | None = field(default=None, compare=False)  # (read, values)
    test: Test | None = field(default=None, compare=False)  # what an or of such leaves may merge
    # (read, body): the leaf is "read is not None and body", body reading it again (`first` False)
    guard: tuple[int, ast.expr] | None = field(default=None, compare=False)
    affixes: tuple[Code, Affixes] | None = field(default=None, compare=False)  # required of a read
    sig: str = ""

    def __post_init__(self) -> None:
        if not self.sig:
            object.__setattr__(self, "sig", shape(self.code))

    def required_affixes(self) -> tuple[Code, Affixes] | None:
        """(read, affixes): a string read this leaf can only be true for if it matches."""
        if self.affixes is not None:
            return self.affixes
        if self.test is not None:
            read, op, values = self.test
            found = Affixes.of_test(op, values)
            if found is not None:
                return read, found
        return None


@dataclass(frozen=True, slots=True)
class And:
    children: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Or:
    children: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Not:
    child: Node


@dataclass(frozen=True, slots=True)
class Const:
    value: bool


Node: TypeAlias = "Leaf | And | Or | Not | Const"
TRUE = Const(True)
FALSE = Const(False)


def make_leaf(
    ctx: Context,
    reads: list[Code],
    build: Callable[[Reader, Reader], ast.expr],
    op_cost: int,
    *,
    likely: bool = False,
    key: tuple[Code, tuple[object, ...]] | None = None,
    prior: float = 0.1,
    test: Test | None = None,
    affixes: tuple[Code, Affixes] | None = None,
) -> Node:
    """A leaf over record reads; folded to a constant when every read is a constant (``evt.type``
    on a specialised function, a parameter this event type lacks). `likely` marks checks that
    usually hold (``!=``, ``exists``); `key` marks "read is one of these values" for the index."""
    folded = [read.constant() for read in reads]
    if all(is_constant for is_constant, _ in folded):
        # The constants are bound as names: compiling ``'<' is not None`` would warn.
        bound = {read: f"_c{i}" for i, read in enumerate(reads)}
        env: dict[str, object] = {bound[read]: value for read, (_, value) in zip(reads, folded, strict=True)}

        def constant(code: Code) -> ast.expr:
            return name(bound[code])

        tree = ast.fix_missing_locations(ast.Expression(build(constant, constant)))
        result = eval(compile(tree, "<peregrine fold>", "eval"), {**ctx.constants.values, **env})  # noqa: S307 - our own code
        return Const(bool(result))
    weight = op_cost + sum(_read_cost(code) for code in reads)
    index = None if key is None else (ctx.values.ref(key[0]), key[1])
    code = build(ctx.bind, ctx.reuse)
    return Leaf(code, weight, 0.9 if likely else prior, index, test, None, affixes)


def _read_cost(code: Code) -> float:
    if simple_read(code.tree):
        return 0.5
    brackets = sum(isinstance(node, (ast.Subscript, ast.List, ast.ListComp)) for node in walk(code.tree))
    return 0.5 + 0.5 * brackets + 4 * helper_calls(code.tree)


def to_expr(node: Node) -> ast.expr:
    """The node as one expression (a fresh copy: the caller may rewrite it)."""
    if isinstance(node, Leaf):
        return clone(node.code)
    if isinstance(node, Const):
        return const(node.value)
    if isinstance(node, Not):
        return not_(to_expr(node.child))
    if isinstance(node, And):
        return and_([to_expr(c) for c in node.children])
    return or_([to_expr(c) for c in node.children])


def signature(node: Node) -> str:
    """A text naming the check `node` makes, equal for equal checks (a dictionary key)."""
    if isinstance(node, Leaf):
        return node.sig
    if isinstance(node, Const):
        return "True" if node.value else "False"
    if isinstance(node, Not):
        return f"not {signature(node.child)}"
    joiner = " and " if isinstance(node, And) else " or "
    return "(" + joiner.join(signature(c) for c in node.children) + ")"


def cost(node: Node) -> float:
    if isinstance(node, Leaf):
        return node.cost
    if isinstance(node, Const):
        return 0.0
    if isinstance(node, Not):
        return cost(node.child)
    # expected work: a child runs only if the ones before it did not decide the result
    total, reach = 0.0, 1.0
    for c in node.children:
        total += reach * cost(c)
        reach *= p_true(c) if isinstance(node, And) else 1 - p_true(c)
    return total


def p_true(node: Node) -> float:
    if isinstance(node, Leaf):
        return node.p_true
    if isinstance(node, Const):
        return 1.0 if node.value else 0.0
    if isinstance(node, Not):
        return 1 - p_true(node.child)
    product = 1.0
    for c in node.children:
        product *= p_true(c) if isinstance(node, And) else 1 - p_true(c)
    return product if isinstance(node, And) else 1 - product


def conjuncts(node: Node) -> tuple[Node, ...]:
    return node.children if isinstance(node, And) else (node,)
