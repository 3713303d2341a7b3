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

import ast

from rules import operators as ops
from rules.affixes import Affixes
from rules.condtree import (
    FALSE,
    TRUE,
    And,
    Const,
    Context,
    Leaf,
    Node,
    Not,
    Or,
    Test,
    conjuncts,
    cost,
    make_leaf,
    p_true,
    signature,
)
from rules.pyexpr import Code, Read, and_, call, clone, compare, const, is_not_none, method, name, or_, set_of


def simplify(node: Node, ctx: Context) -> Node:
    """Fold constants, flatten nested and/or, drop double negation and repeated checks, factor
    a conjunct shared by alternatives out of an or, merge same-field alternatives, and order
    children cheap first."""
    if isinstance(node, (Leaf, Const)):
        return node
    if isinstance(node, Not):
        child = simplify(node.child, ctx)
        if isinstance(child, Const):
            return FALSE if child.value else TRUE
        if isinstance(child, Not):
            return child.child
        return Not(child)
    kind = type(node)
    absorbing = kind is Or  # True absorbs an or, False absorbs an and
    children: list[Node] = []
    for c in node.children:
        c = simplify(c, ctx)
        if isinstance(c, Const):
            if c.value == absorbing:
                return c
            continue
        children.extend(c.children if isinstance(c, (And, Or)) and type(c) is kind else [c])
    if not children:
        return Const(not absorbing)
    children = list({signature(c): c for c in children}.values())  # a repeated check adds nothing
    if kind is Or:
        factored = _factor_or(children, ctx)
        if factored is not None:
            return factored
        children = _merge_alternatives(children, ctx)
    children = _share_presence_tests(kind is Or, children)
    if len(children) == 1:
        return children[0]
    # Cheapest expected work first: for `and`, checks likely to be false and cheap lead; for `or`,
    # checks likely to be true. Every leaf is pure and cannot raise, so the order is free.
    if kind is And:
        children.sort(key=lambda c: cost(c) / max(1e-3, 1 - p_true(c)))
        return And(tuple(children))
    children.sort(key=lambda c: cost(c) / max(1e-3, p_true(c)))
    return Or(tuple(children))


def _share_presence_tests(is_or: bool, children: list[Node]) -> list[Node]:
    """``(x is not None and a) or (x is not None and b)`` -> ``(x is not None and (a or b))``,
    and the same for and: the read and its presence test run once."""
    groups: dict[int, list[int]] = {}
    for i, node in enumerate(children):
        if isinstance(node, Leaf) and node.guard is not None:
            groups.setdefault(node.guard[0], []).append(i)
    shared = {read: members for read, members in groups.items() if len(members) >= 2}
    if not shared:
        return children
    join = or_ if is_or else and_
    out: list[Node] = []
    taken = {i for members in shared.values() for i in members}
    for read, members in shared.items():
        leaves = [leaf for i in members if isinstance(leaf := children[i], Leaf)]
        bodies = join([clone(leaf.guard[1]) for leaf in leaves if leaf.guard is not None])
        code = and_([is_not_none(Read(read, True)), bodies])
        together: Node = Or(tuple(leaves)) if is_or else And(tuple(leaves))
        affixes = _combined_affixes(is_or, leaves)
        out.append(Leaf(code, cost(together), p_true(together), None, None, (read, clone(bodies)), affixes))
    out.extend(child for i, child in enumerate(children) if i not in taken)
    return out


def _combined_affixes(is_or: bool, leaves: list[Leaf]) -> tuple[Code, Affixes] | None:
    """What an and/or of leaves requires of one string read: any conjunct's requirement, or
    the union of every alternative's when all of them require affixes of the same read."""
    found = [leaf.required_affixes() for leaf in leaves]
    if not is_or:
        return next((a for a in found if a is not None), None)
    if any(a is None for a in found) or len({a[0] for a in found if a is not None}) != 1:
        return None
    return found[0][0], Affixes.union(a[1] for a in found)  # type: ignore[index]


def _factor_or(children: list[Node], ctx: Context) -> Node | None:
    """``(a and b) or (a and c) or d`` -> ``(a and (b or c)) or d``: the shared conjunct is
    tested once (a distributive rewrite, exact for pure checks)."""
    counts: dict[str, list[int]] = {}
    for i, child in enumerate(children):
        for sig in {signature(c) for c in conjuncts(child)}:
            counts.setdefault(sig, []).append(i)
    shared = [(len(members), sig) for sig, members in counts.items() if len(members) >= 2]
    if not shared:
        return None
    _, sig = max(shared)
    members = set(counts[sig])
    common = next(c for c in conjuncts(children[min(members)]) if signature(c) == sig)
    rests: list[Node] = []
    for i in sorted(members):
        rest = tuple(c for c in conjuncts(children[i]) if signature(c) != sig)
        rests.append(And(rest) if rest else TRUE)
    grouped: Node = And((common, Or(tuple(rests))))
    others = tuple(child for i, child in enumerate(children) if i not in members)
    return simplify(Or((grouped, *others)) if others else grouped, ctx)


def _merge_alternatives(alternatives: list[Node], ctx: Context) -> list[Node]:
    """Turn alternatives testing one read the same way into one test: ``x = a or x = b`` into
    ``x in {a, b}``, startswith/endswith chains into one call with a tuple of affixes, and three
    or more contains into one precompiled search. Falco's macros are full of such chains."""
    groups: dict[tuple[Code, str], list[int]] = {}
    tests: dict[int, Test] = {}
    for i, node in enumerate(alternatives):
        if isinstance(node, Leaf) and node.test is not None:
            tests[i] = node.test
            groups.setdefault((node.test[0], node.test[1]), []).append(i)
    merged: dict[int, Node] = {}
    dropped: set[int] = set()
    for (read, op), members in groups.items():
        if len(members) < 2 or (op == "contains" and len(members) < 3):
            continue
        values = tuple(dict.fromkeys(v for i in members for v in tests[i][2]))
        prior = min(0.9, sum(p_true(alternatives[i]) for i in members))
        merged[members[0]] = _merged_leaf(read, op, values, prior, ctx)
        dropped.update(members[1:])
    return [merged.get(i, node) for i, node in enumerate(alternatives) if i not in dropped]


def _merged_leaf(read: Code, op: str, values: tuple[object, ...], prior: float, ctx: Context) -> Node:
    if op == "in":
        return make_leaf(
            ctx, [read], lambda b, r: compare(b(read), ast.In(), set_of(values)), 1, key=(read, values),
            test=(read, op, values), prior=prior,
        )
    if op == "contains":
        texts = tuple(str(v) for v in values)
        program = ctx.constants.add(("contains", texts), lambda: ops.substring_program(texts))
        return make_leaf(
            ctx, [read], lambda b, r: and_([is_not_none(b(read)), is_not_none(call(name(program), r(read)))]),
            4, prior=prior, test=(read, op, texts),
        )
    affixes = tuple(values)
    return make_leaf(
        ctx, [read], lambda b, r: and_([is_not_none(b(read)), method(r(read), op, const(affixes))]), 2,
        test=(read, op, affixes), prior=prior,
    )
