"""Lists and macros, resolved exactly as Falco resolves them.

Lists are substituted as TEXT, before parsing (falco ``rule_loader_compiler.cpp``, ``resolve_list``):
every occurrence of a list name bounded by the string's ends or by one of `` \\t\\n\\r(),=`` is
replaced by the list's items joined with ``", "`` (an item with a space is wrapped in double quotes
unless it already starts with a quote), the blanks around the name are eaten and, for an empty
list, one neighbouring comma too. Lists are tried one after the other in definition order, and the
search resumes after each inserted text, so items naming a LATER list get expanded by that list's
turn, while items naming an earlier one stay literal. Quirks such as a second occurrence right
after a substitution at offset 0 being skipped are kept on purpose: they are Falco's behaviour.

Lists inside lists are expanded one level when lists are compiled (``compile_list_infos``): an item
naming a list defined before the containing list's last (re)definition is replaced by that list's
raw items.

Macros are inlined on the AST (``filter_macro_resolver.cpp``): each identifier naming a visible
macro becomes that macro's (resolved) condition; a macro met again on its own expansion path is
"reference loop in macro 'x'", an identifier naming no visible macro is
"Undefined macro 'x' used in filter.". As in Falco, loop errors are reported before unknown macros.
Unlike Falco, an inlined macro's nodes take the position of the identifier they replace, so every
position in a resolved condition points into that condition's own text: a later error about a
check that came from a macro puts its caret under the macro's name.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, fields
from functools import cache
from typing import TypeVar

from rules.ast import AndExpr, Expr, IdentifierExpr, NotExpr, OrExpr, Pos
from rules.errors import RulesError

_Node = TypeVar("_Node")

_BLANKS = " \t\n\r"
_DELIMS = _BLANKS + "(),="


def quote_item(item: str) -> str:
    """Falco's ``quote_item``: quote an item with a space unless it already starts with a quote."""
    if " " in item and item[0] not in "\"'":
        return f'"{item}"'
    return item


@dataclass(frozen=True, slots=True)
class ListDef:
    """A list as collected: raw items, the index of its first definition, its last (re)definition."""

    name: str
    items: tuple[str, ...]
    index: int
    visibility: int


def expand_lists(lists: Sequence[ListDef]) -> tuple[list[tuple[str, tuple[str, ...]]], set[str]]:
    """Expand list references inside list items (one level), in definition order.

    Returns the lists as (name, items) in definition order, and the names referenced by other lists.
    """
    by_name = {lst.name: lst for lst in lists}
    used: set[str] = set()
    out: list[tuple[str, tuple[str, ...]]] = []
    for lst in lists:
        items: list[str] = []
        for item in lst.items:
            ref = by_name.get(item)
            if ref is not None and ref.index < lst.visibility:
                used.add(ref.name)
                items.extend(ref.items)
            else:
                items.append(item)
        out.append((lst.name, tuple(items)))
    return out, used


def substitute_lists(
    condition: str,
    lists: Iterable[tuple[str, str]],
    used: set[str] | None = None,
    origin: list[int] | None = None,
) -> str:
    """Replace list names in `condition` by their items, as text.

    `lists` gives (name, joined items text) in definition order (see `join_items`). Names of the
    lists that matched are added to `used`. When `origin` is given (one entry per character of
    `condition`: its offset in the text as written), it is updated in place so that it still maps
    each character of the result back to the text as written: errors found by the parser on the
    substituted text can then point into what the user wrote.
    """
    for name, sub in lists:
        start = condition.find(name)
        while start != -1:
            end = start + len(name)
            if (start == 0 or condition[start - 1] in _DELIMS) and (
                end >= len(condition) or condition[end] in _DELIMS
            ):
                name_at = start
                while start > 0 and condition[start - 1] in _BLANKS:
                    start -= 1
                while end < len(condition) and condition[end] in _BLANKS:
                    end += 1
                if not sub:
                    if start > 0 and condition[start - 1] == ",":
                        start -= 1
                    elif end < len(condition) and condition[end] == ",":
                        end += 1
                head = condition[:start] + " " if start > 0 else ""
                if origin is not None:
                    at = origin[name_at]
                    origin[start:end] = [at] * (len(head) - start + len(sub) + 1)
                condition = head + sub + " " + condition[end:]
                start += len(sub) + 1
                if used is not None:
                    used.add(name)
            start = condition.find(name, start + 1)
    return condition


def join_items(items: Iterable[str]) -> str:
    """The text a list name is replaced with."""
    return ", ".join(quote_item(item) for item in items)


def original_offset(origin: list[int], offset: int, written_len: int) -> int:
    """Map an offset in substituted text back to the text as written."""
    return origin[offset] if 0 <= offset < len(origin) else written_len


class MacroError(RulesError):
    """A macro reference that cannot be resolved; `offset` is in the condition being resolved.

    Internal: `rules.collect` turns it into a LoadError located in the file as written."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.offset = offset


@cache
def _field_names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in fields(cls))


def relocate(node: _Node, where: Callable[[Pos], Pos]) -> _Node:
    """A copy of an AST (sub)tree with every node's position replaced by ``where(position)``."""
    kind: type = type(node)
    values: dict[str, object] = {}
    for name in _field_names(kind):
        value = getattr(node, name)
        if name == "pos":
            value = where(value)
        elif type(value) is tuple:
            value = tuple(relocate(v, where) if hasattr(v, "pos") else v for v in value)
        elif hasattr(value, "pos"):
            value = relocate(value, where)
        values[name] = value
    relocated: _Node = kind(**values)
    return relocated


def inline_macros(expr: Expr, lookup: Callable[[str], Expr | None], used: set[str]) -> Expr:
    """Replace every macro identifier in `expr` by the macro's condition, recursively.

    `lookup(name)` returns the condition of a macro visible from here, or None. The names of the
    macros inlined are added to `used`. Raises MacroError for the first loop, else the first
    unknown macro; its offset is that of the identifier written in `expr` that led to it.
    """
    errors: list[tuple[str, int]] = []
    unknown: list[tuple[str, int]] = []

    def visit(node: Expr, path: tuple[str, ...], at: int | None) -> Expr:
        if isinstance(node, AndExpr | OrExpr):
            children = tuple(visit(child, path, at) for child in node.children)
            if all(new is old for new, old in zip(children, node.children, strict=True)):
                return node
            return type(node)(children, node.pos)
        if isinstance(node, NotExpr):
            child = visit(node.child, path, at)
            return node if child is node.child else NotExpr(child, node.pos)
        if isinstance(node, IdentifierExpr):
            here = node.pos.idx if at is None else at
            body = lookup(node.name)
            if body is None:
                unknown.append((node.name, here))
                return node
            if node.name in path:
                errors.append((f"reference loop in macro '{node.name}'", here))
                return node
            used.add(node.name)
            at_name = node.pos
            return relocate(visit(body, (*path, node.name), here), lambda _: at_name)
        return node

    result = visit(expr, (), None)
    if errors:
        raise MacroError(*errors[0])
    if unknown:
        name, offset = unknown[0]
        raise MacroError(f"Undefined macro '{name}' used in filter.", offset)
    return result
