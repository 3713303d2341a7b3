"""Generic syscall types that compile to the same code: one bucket serves them all.

Every syscall libs sends as its generic event has a record type (`rules.record.GENERIC_TYPE_IDS`,
219 of them) with the same shape: parameters ``ID`` and ``nativeID``, no return value, no fd. A
rule whose condition reads nothing that differs between those types (no rendered ``evt.arg.ID``,
``evt.type`` compared only for equality with names that are no generic type's) compiles to the
same tree on each, so `rules.ruleset` lowers it once,
for the lowest of them, and the others run that one bucket. Without this a rule with no
``evt.type`` restriction would be compiled 280 times instead of 63, and every generic type would
add a function and a gate program of its own. A generic type some other rule may match on
(``evt.type = personality``) is compiled on its own as before.
"""

from __future__ import annotations

import dataclasses
from functools import cache
from typing import Final

from rules.ast import BinaryCheckExpr, Expr, FieldExpr, ListExpr, ValueExpr
from rules.fields import lookup
from rules.record import EVENT_TYPES, GENERIC_TYPE_IDS

GENERIC_IDS: Final = tuple(sorted(GENERIC_TYPE_IDS))
_GENERIC_NAMES: Final = frozenset(EVENT_TYPES[i] for i in GENERIC_IDS)
_EVTTYPE_FIELDS: Final = ("evt.type", "syscall.type")


def uniform(condition: Expr) -> bool:
    """Whether every field `condition` reads has the same code on every generic type, or is
    ``evt.type`` compared for equality with no generic type's name (false on all of them)."""
    stack: list[object] = [condition]
    while stack:
        node = stack.pop()
        if _same_on_generic_types(node):
            continue
        if isinstance(node, FieldExpr) and not _same_code(node.name, node.arg):
            return False
        if dataclasses.is_dataclass(node) and not isinstance(node, type):
            for item in dataclasses.fields(node):
                child = getattr(node, item.name)
                stack.extend(child if isinstance(child, list | tuple) else [child])
    return True


def _same_on_generic_types(node: object) -> bool:
    """``evt.type = openat``, ``evt.type in (openat, execve)`` and their ``!=``: one constant on
    every generic type, as long as no name is a generic type's."""
    if not isinstance(node, BinaryCheckExpr) or node.op not in ("=", "==", "!=", "in") or node.modifier:
        return False
    left, right = node.left, node.right
    if not isinstance(left, FieldExpr) or left.name not in _EVTTYPE_FIELDS or left.arg is not None:
        return False
    values = right.values if isinstance(right, ListExpr) else [right]
    return all(isinstance(v, ValueExpr) and v.value not in _GENERIC_NAMES for v in values)


@cache
def _same_code(name: str, arg: str | None) -> bool:
    found = lookup(name, arg)
    if found is None:  # an unknown field fails the rule's compilation anyway
        return True
    spec, effective = found
    try:
        return len({spec.code(effective, type_id).key for type_id in GENERIC_IDS}) == 1
    except Exception:  # compiled type by type, where the compiler reports it with the rule's place
        return False
