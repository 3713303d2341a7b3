"""Exact rewrites of a lowered condition tree: fewer, cheaper checks, same result.

`simplify` folds constants, flattens nested and/or, drops double negation and repeated checks,
factors a conjunct shared by or-branches out (distributivity), merges or-chains on one read
(``x = a or x = b`` -> one set test; startswith/endswith chains -> one call with a tuple; three
or more contains -> one precompiled search), shares one presence test among siblings, and orders
children by expected cost (`rules.condtree.cost`/`p_true`, guesses that only affect speed).

Why exact: every leaf is pure, total and deterministic on the event (`rules.condtree`), so
boolean algebra holds as written (reordering, distributivity, idempotence), and each merge
rewrites a disjunction of tests on one read into a test with the same truth table, ``None``
included (every merged test is false on a missing value, and so is the merged one).
"""

from __future__ import annotations

from rules import operators as ops
from rules.affixes import Affixes
from rules.condtree import (
    FALSE,
    TRUE,
    Context,
    Leaf,
    Node,
    conjuncts,
    cost,
    emit,
    make_leaf,
    p_true,
    set_literal,
)


def simplify(node: Node, ctx: Context) -> Node:
    """Fold constants, flatten nested and/or, drop double negation and repeated checks, factor
    a conjunct shared by alternatives out of an or, merge same-field alternatives, and order
    children cheap first."""
    kind = node[0]
    if kind in ("leaf", "const"):
        return node
    if kind == "not":
        child = simplify(node[1], ctx)
        if child[0] == "const":
            return FALSE if child[1] else TRUE
        if child[0] == "not":
            return child[1]  # type: ignore[no-any-return]
        return ("not", child)
    absorbing = kind == "or"  # True absorbs an or, False absorbs an and
    children: list[Node] = []
    for c in node[1]:
        c = simplify(c, ctx)
        if c[0] == "const":
            if c[1] == absorbing:
                return c
            continue
        children.extend(c[1] if c[0] == kind else [c])
    if not children:
        return ("const", not absorbing)
    children = list({emit(c): c for c in children}.values())  # a repeated check adds nothing
    if kind == "or":
        factored = _factor_or(children, ctx)
        if factored is not None:
            return factored
        children = _merge_alternatives(children, ctx)
    children = _share_presence_tests(kind, children)
    if len(children) == 1:
        return children[0]
    # Cheapest expected work first: for `and`, checks likely to be false and cheap lead; for `or`,
    # checks likely to be true. Every leaf is pure and cannot raise, so the order is free.
    if kind == "and":
        children.sort(key=lambda c: cost(c) / max(1e-3, 1 - p_true(c)))
    else:
        children.sort(key=lambda c: cost(c) / max(1e-3, p_true(c)))
    return (kind, children)


def _share_presence_tests(kind: str, children: list[Node]) -> list[Node]:
    """``(x is not None and a) or (x is not None and b)`` -> ``(x is not None and (a or b))``,
    and the same for and: the read and its presence test run once."""
    groups: dict[str, list[int]] = {}
    for i, node in enumerate(children):
        if node[0] == "leaf" and node[1].guard is not None:
            groups.setdefault(node[1].guard[0], []).append(i)
    shared = {read: members for read, members in groups.items() if len(members) >= 2}
    if not shared:
        return children
    joiner = " or " if kind == "or" else " and "
    out: list[Node] = []
    taken = {i for members in shared.values() for i in members}
    for read, members in shared.items():
        leaves = [children[i][1] for i in members]
        bodies = joiner.join(f"({leaf.guard[1]})" for leaf in leaves)
        code = f"({read} is not None and ({bodies}))"
        p = p_true((kind, [("leaf", leaf) for leaf in leaves]))
        total = cost((kind, [("leaf", leaf) for leaf in leaves]))
        affixes = _combined_affixes(kind, leaves)
        out.append(("leaf", Leaf(code, total, p, None, None, (read, f"({bodies})"), affixes)))
    out.extend(child for i, child in enumerate(children) if i not in taken)
    return out


def _combined_affixes(kind: str, leaves: list[Leaf]) -> tuple[str, Affixes] | None:
    """What an and/or of leaves requires of one string read: any conjunct's requirement, or
    the union of every alternative's when all of them require affixes of the same read."""
    found = [leaf.required_affixes() for leaf in leaves]
    if kind == "and":
        return next((a for a in found if a is not None), None)
    if any(a is None for a in found) or len({a[0] for a in found if a is not None}) != 1:
        return None
    return found[0][0], Affixes.union(a[1] for a in found)  # type: ignore[index]


def _factor_or(children: list[Node], ctx: Context) -> Node | None:
    """``(a and b) or (a and c) or d`` -> ``(a and (b or c)) or d``: the shared conjunct is
    tested once (a distributive rewrite, exact for pure checks)."""
    counts: dict[str, list[int]] = {}
    for i, child in enumerate(children):
        for code in {emit(c) for c in conjuncts(child)}:
            counts.setdefault(code, []).append(i)
    shared = [(len(members), code) for code, members in counts.items() if len(members) >= 2]
    if not shared:
        return None
    _, code = max(shared)
    members = set(counts[code])
    common = next(c for c in conjuncts(children[min(members)]) if emit(c) == code)
    rests: list[Node] = []
    for i in sorted(members):
        rest = [c for c in conjuncts(children[i]) if emit(c) != code]
        rests.append(("and", rest) if rest else TRUE)
    grouped: Node = ("and", [common, ("or", rests)])
    others = [child for i, child in enumerate(children) if i not in members]
    return simplify(("or", [grouped, *others]) if others else grouped, ctx)


def _merge_alternatives(alternatives: list[Node], ctx: Context) -> list[Node]:
    """Turn alternatives testing one read the same way into one test: ``x = a or x = b`` into
    ``x in {a, b}``, startswith/endswith chains into one call with a tuple of affixes, and three
    or more contains into one precompiled search. Falco's macros are full of such chains."""
    groups: dict[tuple[str, str], list[int]] = {}
    for i, node in enumerate(alternatives):
        if node[0] == "leaf" and node[1].test is not None:
            read, op, _ = node[1].test
            groups.setdefault((read, op), []).append(i)
    merged: dict[int, Node] = {}
    dropped: set[int] = set()
    for (read, op), members in groups.items():
        if len(members) < 2 or (op == "contains" and len(members) < 3):
            continue
        values = tuple(dict.fromkeys(v for i in members for v in alternatives[i][1].test[2]))
        prior = min(0.9, sum(alternatives[i][1].p_true for i in members))
        merged[members[0]] = _merged_leaf(read, op, values, prior, ctx)
        dropped.update(members[1:])
    return [merged.get(i, node) for i, node in enumerate(alternatives) if i not in dropped]


def _merged_leaf(read: str, op: str, values: tuple[object, ...], prior: float, ctx: Context) -> Node:
    if op == "in":
        literal = set_literal(values)
        key = (read, values)
        return make_leaf(
            ctx, [read], lambda b, r: f"{b(read)} in {literal}", 1, key=key, test=(read, op, values),
            prior=prior,
        )
    if op == "contains":
        texts = tuple(str(v) for v in values)
        name = ctx.constants.add(("contains", texts), lambda: ops.substring_program(texts))
        return make_leaf(
            ctx, [read], lambda b, r: f"({b(read)} is not None and {name}({r(read)}) is not None)", 4,
            prior=prior, test=(read, op, texts),
        )
    affixes = tuple(values)
    return make_leaf(
        ctx, [read], lambda b, r: f"({b(read)} is not None and {r(read)}.{op}({affixes!r}))", 2,
        test=(read, op, affixes), prior=prior,
    )
