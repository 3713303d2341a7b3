"""The boolean tree compiled conditions are written from, and what building it needs.

A condition is lowered (`rules.compiler`) to nested tuples: ``("leaf", Leaf)``, ``("and", [..])``,
``("or", [..])``, ``("not", node)``, ``("const", bool)``. A `Leaf` is one Python expression over
the positional records that never raises and has no side effect (a missing value is ``None`` and
every test is false on it), which is what makes every rewrite in `rules.optimize` and every
ordering in `rules.codegen` exact: evaluation order cannot change a result.

Reads of the record inside leaves are placeholders numbered by `Values`, so `rules.codegen` can
decide per function which reads become locals. `Constants` holds the load-time objects (glob and
regex programs, path tables, networks) generated code reads as globals.
"""

from __future__ import annotations

import ast as pyast
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypeAlias

from rules.affixes import Affixes
from rules.ast import Pos
from rules.errors import CompileError, Location
from rules.loaded import LoadWarning

# ("leaf", Leaf) | ("and", [..]) | ("or", [..]) | ("not", node) | ("const", bool)
Node: TypeAlias = tuple[Any, ...]
TRUE: Node = ("const", True)
FALSE: Node = ("const", False)
SIMPLE_READ = re.compile(r"(ev|p|pp|c|f|a)\[\d+\]")
CALL = re.compile(r"\b_\w+\(")


@dataclass(slots=True)
class Constants:
    """Load-time objects (glob and regex programs, path tables, networks) the generated module
    reads as globals, deduplicated across all rules of a ruleset."""

    values: dict[str, object] = field(default_factory=dict)
    _names: dict[object, str] = field(default_factory=dict)

    def add(self, key: object, make: Callable[[], object]) -> str:
        name = self._names.get(key)
        if name is None:
            name = self._names[key] = f"_k{len(self._names)}"
            self.values[name] = make()
        return name


@dataclass(slots=True)
class Values:
    """The record reads of one generated function, numbered so each is written once: leaves
    hold placeholders, and `resolve` decides per read whether it is inlined, bound to a local up
    front, or computed on first use and kept (see `resolve`)."""

    codes: list[str] = field(default_factory=list)
    _index: dict[str, int] = field(default_factory=dict)

    def ref(self, code: str) -> int:
        n = self._index.get(code)
        if n is None:
            n = self._index[code] = len(self.codes)
            self.codes.append(code)
        return n

    def placeholder(self, code: str) -> str:
        """Where generated code reads `code` (`rules.codegen.resolve` decides how)."""
        return f"\x01{self.ref(code)}\x02"


@dataclass(slots=True)
class Context:
    """What one lowering needs: the rule (for error locations), the event type being specialised
    to (None: any), the shared constants, and the function's table of record reads."""

    location: Location
    constants: Constants
    event_type: int | None = None
    warnings: list[LoadWarning] | None = None
    values: Values = field(default_factory=Values)

    def bind(self, code: str) -> str:
        """Placeholder for the first read of `code` in a leaf."""
        return self.values.placeholder(code)

    def reuse(self, code: str) -> str:
        """Placeholder for a later read of `code` in the same leaf, after `bind` ran."""
        return f"\x03{self.values.ref(code)}\x02"

    def error(self, message: str, pos: Pos) -> CompileError:
        return CompileError(message, replace(self.location, offset=pos.idx))

    def warn(self, message: str, pos: Pos) -> None:
        if self.warnings is not None:
            where = replace(self.location, offset=pos.idx)
            self.warnings.append(LoadWarning("LOAD_COMPILE_CONDITION", message, where))


Placeholders = Callable[[str], str]


@dataclass(frozen=True, slots=True)
class Leaf:
    """One check in generated code, with what the optimiser needs to order and index it."""

    code: str
    cost: float  # rough relative cost: 1 is a local read and a compare
    p_true: float  # guessed probability of being true on a typical event
    key: tuple[str, tuple[object, ...]] | None = None  # (read placeholder, values): "read in values"
    test: Test | None = None  # what it tests, when an or of such leaves can become one test
    guard: tuple[str, str] | None = None  # (read, body): the leaf is "read is not None and body"
    affixes: tuple[str, Affixes] | None = None  # (read code, affixes) the leaf requires, if known

    def required_affixes(self) -> tuple[str, Affixes] | None:
        """(read code, affixes): a string read this leaf can only be true for if it matches."""
        if self.affixes is not None:
            return self.affixes
        if self.test is not None:
            read, op, values = self.test
            found = Affixes.of_test(op, values)
            if found is not None:
                return read, found
        return None


Test: TypeAlias = tuple[str, str, tuple[object, ...]]  # (read code, operator, values)


def make_leaf(
    ctx: Context,
    reads: list[str],
    build: Callable[[Placeholders, Placeholders], str],
    op_cost: int,
    *,
    likely: bool = False,
    key: tuple[str, tuple[object, ...]] | None = None,
    prior: float = 0.1,
    test: Test | None = None,
    affixes: tuple[str, Affixes] | None = None,
) -> Node:
    """A leaf over record reads; folded to a constant when every read is a constant (``evt.type``
    on a specialised function, a parameter this event type lacks). `likely` marks checks that
    usually hold (``!=``, ``exists``); `key` marks "read is one of these values" for the index."""
    if all(_is_constant(code) for code in reads):
        plain = build(_paren, _paren)
        return ("const", bool(eval(plain, {**ctx.constants.values}, {})))  # noqa: S307 - our own code
    weight = op_cost + sum(_read_cost(code) for code in reads)
    if key is not None:
        key = (ctx.bind(key[0]), key[1])
    leaf = Leaf(build(ctx.bind, ctx.reuse), weight, 0.9 if likely else prior, key, test, None, affixes)
    return ("leaf", leaf)


def _read_cost(code: str) -> float:
    if SIMPLE_READ.fullmatch(code):
        return 0.5
    return 0.5 + 0.5 * code.count("[") + 4 * len(CALL.findall(code))


def _paren(code: str) -> str:
    return f"({code})"


def _is_constant(code: str) -> bool:
    try:
        pyast.literal_eval(code)
    except (ValueError, SyntaxError):
        return False
    return True


def set_literal(values: Sequence[object]) -> str:
    """A set display of constants: CPython turns ``x in {...}`` into a frozenset constant."""
    if not values:
        return "()"
    unique = list(dict.fromkeys(values))
    return "{" + ", ".join(repr(v) for v in unique) + "}"


def emit(node: Node) -> str:
    kind = node[0]
    if kind == "leaf":
        return str(node[1].code)
    if kind == "const":
        return "True" if node[1] else "False"
    if kind == "not":
        return f"not {emit(node[1])}"
    joiner = " and " if kind == "and" else " or "
    return "(" + joiner.join(emit(c) for c in node[1]) + ")"


def cost(node: Node) -> float:
    kind = node[0]
    if kind == "leaf":
        return float(node[1].cost)
    if kind == "const":
        return 0.0
    if kind == "not":
        return cost(node[1])
    # expected work: a child runs only if the ones before it did not decide the result
    total, reach = 0.0, 1.0
    for c in node[1]:
        total += reach * cost(c)
        reach *= p_true(c) if kind == "and" else 1 - p_true(c)
    return total


def p_true(node: Node) -> float:
    kind = node[0]
    if kind == "leaf":
        return float(node[1].p_true)
    if kind == "const":
        return 1.0 if node[1] else 0.0
    if kind == "not":
        return 1 - p_true(node[1])
    product = 1.0
    for c in node[1]:
        product *= p_true(c) if kind == "and" else 1 - p_true(c)
    return product if kind == "and" else 1 - product


def conjuncts(node: Node) -> list[Node]:
    return list(node[1]) if node[0] == "and" else [node]
