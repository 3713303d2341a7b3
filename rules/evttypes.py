"""Event-type analysis: which event types a condition can possibly match.

The rule engine indexes rules by event type so that an event is only tested against the rules
that can match it, and collectors can publish only the event types some rule needs. This module
computes that set from a macro-resolved condition AST with libs' algebra
(``userspace/libsinsp/filter/ppm_codes.cpp``), on event *names* instead of event codes:

- ``and`` intersects, ``or`` unites; ``not`` is pushed down to the leaves (De Morgan).
- ``evt.type``/``syscall.type`` (no argument) with ``=``, ``==``, ``!=`` or ``in`` and no modifier
  gives the named types (``!=`` and a negation complement them). ``intersects``, ``pmatch``,
  string operators and modifiers do not narrow: as in libs, they give "all".
- ``evt.type exists`` gives all types, and ``not evt.type exists`` none.
- Statically decided ``evt.num`` checks (libs master's ``evaluate_field_invariant``): evt.num
  starts at 1, so ``evt.num = 0``, ``< 1``, ``<= 0`` and ``in (0, ...)`` match nothing, and
  ``!= 0``, ``> 0``, ``>= 1`` everything. So a rule guarded by Falco's ``never_true`` macro
  (``evt.num=0``) as in ``... and never_true`` gets the empty set, and ``not never_true`` is neutral.
- Every other check is neutral: "all", and a negation leaves it "all".
- libs has one event code pair for every syscall without an event of its own (PPME_GENERIC_E/X,
  ``names_to_event_set``): a name that is only a syscall name stands for all of them. So
  ``evt.type = open_tree`` also gives open_tree_attr (the condition still compares the name), and
  ``evt.type != open_tree`` excludes every generic type, open_tree_attr included, as in libs.

Complements are taken over ``rules.record.EVENT_TYPES``; a name a rule uses that is outside that
table stays in a (non-complemented) result so the caller can warn about it. ``None`` stands for
"every event type" (a result covering the whole table is returned as None).

Like libs, comparing ``evt.type`` with a field (``val()``) or a transformer, or applying a
transformer to ``evt.type`` in such a check, is refused (ValueError), and so is an unresolved
macro reference.
"""

from __future__ import annotations

import re
from typing import Final

from rules.ast import (
    AndExpr,
    BinaryCheckExpr,
    Expr,
    FieldExpr,
    IdentifierExpr,
    ListExpr,
    NotExpr,
    OrExpr,
    TransformerArg,
    TransformerExpr,
    UnaryCheckExpr,
    ValueExpr,
)
from rules.libs_event_table import EVENT_NAMES, SYSCALL_NAMES
from rules.record import EVENT_TYPES, GENERIC_TYPE_IDS

__all__ = ["event_types", "libs_event_count", "matched_types"]

# None: every event type, including types outside our table
TypeSet = frozenset[str] | None

_TABLE: Final = frozenset(EVENT_TYPES)
_EMPTY: Final[frozenset[str]] = frozenset()
_GENERIC_TYPES: Final = frozenset(EVENT_TYPES[i] for i in GENERIC_TYPE_IDS)
_EVTTYPE_FIELDS: Final = ("evt.type", "syscall.type")
_EVTTYPE_OPS: Final = ("=", "==", "!=", "in")
# names libs resolves to its generic event: syscall names that are no event's name
_GENERIC_NAMES: Final = SYSCALL_NAMES - EVENT_NAMES
# what sscanf("%llu%c") accepts as a whole: libs reads evt.num literals with it
_U64: Final = re.compile(r"[ \t\n\v\f\r]*([+-]?)([0-9]+)")


def event_types(
    expr: Expr, *, universe: frozenset[str] = _TABLE, by_name: bool = False
) -> frozenset[str] | None:
    """The event-type names ``expr`` can match, or None for all. ``expr`` must be macro-resolved.

    ``universe`` is what a complement is taken over (tests pass libs' names). With ``by_name``, a
    generic syscall's name stands for its own type only: the types on which the condition can
    hold, as it compares names, rather than those libs' index evaluates it on; the types a rule
    can match are in both.
    """
    return _Analysis(universe, by_name).visit(expr, False)


def matched_types(expr: Expr) -> frozenset[str] | None:
    """The event-type names a rule can match on, or None for all: where libs' index evaluates
    it and where its condition can hold, so `evt.type = personality` is personality alone."""
    names = event_types(expr)
    held = event_types(expr, by_name=True)
    return names if held is None else held if names is None else names & held


def libs_event_count(types: frozenset[str]) -> int:
    """How many of libs' events ``types`` stands for: the generic record types are libs' one
    generic event (PPME_GENERIC_X), so together they count once."""
    return len(types - _GENERIC_TYPES) + (not types.isdisjoint(_GENERIC_TYPES))


class _Analysis:
    """One walk; holds the universe complements are taken over."""

    __slots__ = ("universe", "by_name")

    def __init__(self, universe: frozenset[str], by_name: bool) -> None:
        self.universe = universe
        self.by_name = by_name

    def visit(self, e: Expr, negated: bool) -> TypeSet:
        if isinstance(e, AndExpr | OrExpr):
            # De Morgan: under a negation, "and" unites and "or" intersects
            if isinstance(e, AndExpr) != negated:
                result: TypeSet = None
                for c in e.children:
                    result = _intersect(result, self.visit(c, negated))
                return result
            union: TypeSet = _EMPTY
            for c in e.children:
                union = self.unite(union, self.visit(c, negated))
            return union
        if isinstance(e, NotExpr):
            return self.visit(e.child, not negated)
        if isinstance(e, BinaryCheckExpr):
            return self.binary_check(e, negated)
        if isinstance(e, UnaryCheckExpr):
            if _is_evttype_field(e.left):
                return _EMPTY if negated else None
            _refuse_transformed_evttype(e.left)
            return None
        if isinstance(e, IdentifierExpr):
            raise ValueError(f"event-type analysis needs macros resolved: '{e.name}' is still a reference")
        raise TypeError(f"not a condition node: {e!r}")

    def binary_check(self, e: BinaryCheckExpr, negated: bool) -> TypeSet:
        invariant = _evt_num_invariant(e)
        if invariant is not None:
            decided: TypeSet = None if invariant else _EMPTY
            return self.complement(decided) if negated else decided
        if e.op not in _EVTTYPE_OPS or e.modifier is not None:
            return None
        if not _is_evttype_field(e.left):
            _refuse_transformed_evttype(e.left)
            return None
        right = e.right
        if isinstance(right, ValueExpr):
            named = frozenset((right.value,))
        elif isinstance(right, ListExpr):
            named = frozenset(v.value for v in right.values if isinstance(v, ValueExpr))
        else:
            raise ValueError(
                f"comparing evt.type with a field or a transformer is not supported: '{e.to_source()}'"
            )
        names: TypeSet = named if self.by_name or named.isdisjoint(_GENERIC_NAMES) else named | _GENERIC_TYPES
        if negated:
            names = self.complement(names)
        return self.complement(names) if e.op == "!=" else names

    def complement(self, s: TypeSet) -> TypeSet:
        if s is None:
            return _EMPTY
        rest = self.universe - s
        return None if rest == self.universe else rest

    def unite(self, a: TypeSet, b: TypeSet) -> TypeSet:
        if a is None or b is None:
            return None
        union = a | b
        return None if self.universe <= union else union


def _evt_num_invariant(e: BinaryCheckExpr) -> bool | None:
    """True/False when ``e`` is always/never true because evt.num >= 1; None when undecided."""
    left = e.left
    if not isinstance(left, FieldExpr) or left.name != "evt.num" or left.arg is not None or e.modifier:
        return None
    if e.op == "in":
        if not isinstance(e.right, ListExpr):
            return None
        if all(isinstance(v, ValueExpr) and _u64(v.value) == 0 for v in e.right.values):
            return False  # also the empty list
        return None
    if not isinstance(e.right, ValueExpr):
        return None
    n = _u64(e.right.value)
    if n is None:
        return None
    if e.op in ("=", "==", "<="):
        return False if n == 0 else None
    if e.op == "<":
        return False if n <= 1 else None
    if e.op in ("!=", ">"):
        return True if n == 0 else None
    if e.op == ">=":
        return True if n <= 1 else None
    return None


def _u64(text: str) -> int | None:
    """libs' tryparseu64: a negative literal wraps around, so only "-0" stays small."""
    m = _U64.fullmatch(text)
    if m is None:
        return None
    n = int(m.group(2))
    return 1 << 64 if m.group(1) == "-" and n != 0 else n


def _is_evttype_field(node: object) -> bool:
    return isinstance(node, FieldExpr) and node.name in _EVTTYPE_FIELDS and node.arg is None


def _refuse_transformed_evttype(left: FieldExpr | TransformerExpr) -> None:
    if isinstance(left, TransformerExpr) and _mentions_evttype(left):
        raise ValueError(
            f"event-type analysis does not support transformers on evt.type: '{left.to_source()}'"
        )


def _mentions_evttype(node: TransformerArg) -> bool:
    if isinstance(node, TransformerExpr):
        return any(_mentions_evttype(v) for v in node.values)
    if isinstance(node, ListExpr):
        return any(_mentions_evttype(v) for v in node.values)
    return _is_evttype_field(node)


def _intersect(a: TypeSet, b: TypeSet) -> TypeSet:
    if a is None:
        return b
    if b is None:
        return a
    return a & b
