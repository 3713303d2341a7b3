"""The batch gate: which events of a batch some rule could match, decided in C before any
generated code runs.

Most events match no rule, and ruling every rule out in generated Python costs about ten
interpreted lines per event. The gate asks less, in one C loop (rules/gate.c): per event type,
for each record field that rules test on their own (``proc.name``, ``fd.name``, the open flags,
``proc.env``...), a `Memo` maps the field's value to a bit mask of the type's rules whose tests
of that field pass (rules not testing it always pass). An event survives when the AND of its
masks is not zero; only survivors reach the generated code, which decides exactly as before.

Sound by construction: each rule is split into alternatives at its top-level ors
(`alternatives`), each alternative has a bit, and a bit clears only when a test that holds
whenever the alternative does (`necessary`: the alternative's conjuncts on that field) is false.
Tests that read more than one field, call a helper on a whole record (``proc.cmdline``) or read
the live DNS table (``_ipn``) are left to the generated code. A type with an alternative the
gate cannot test keeps all its events, as do types with more alternatives than a mask has bits.
Masks are remembered per value, so a value seen before costs one dict lookup in C; a path seen
once is usually rejected in C by the affixes the rules require of it (`_affix_filter`).

Without a C compiler the gate is absent and every event goes to the generated code: same
results, slower (`build` returns None, `Ruleset.gated` is False).
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any, Protocol, TypeAlias, cast

from rules import native
from rules import record as R
from rules.affixes import Affixes
from rules.codegen import affixes_of
from rules.condtree import FALSE, And, Const, Leaf, Node, Not, Or, Values, p_true
from rules.fields import BASES
from rules.operators import Memo
from rules.pyexpr import (
    RECORDS,
    Code,
    Read,
    and_,
    clone,
    const,
    name,
    names_in,
    not_,
    or_,
    reads_in,
    rewrite,
    shape,
    walk,
)
from rules.record import EVENT_TYPES

# Steps from the event record: (index, 1 when a missing record reads as all None (``x or _EF``)
# else 0), or (RESOLVE, 0), or (ANCESTORS, parent slot) before a last (field, 0).
Path_: TypeAlias = tuple[tuple[int, int], ...]
# A field's test: its steps, its memo, and optionally (gate.c checks them on a memo miss) the
# affixes (exact, prefixes, suffixes, contains) a string value needs to pass any alternative
# requiring affixes, with the mask of a value passing none.
AffixSets: TypeAlias = tuple[frozenset[str], tuple[str, ...], tuple[str, ...], tuple[str, ...]]
Test: TypeAlias = "tuple[Path_, Memo] | tuple[Path_, Memo, AffixSets, int]"
Program: TypeAlias = "None | bool | tuple[Test, ...]"

SOURCE = Path(__file__).with_name("gate.c")
MASK_BITS = 64  # rules per event type a mask can tell apart (uint64 in gate.c)
# ``fd.sip.name``: the name the live DNS table (``_ipn``, which the caller updates) gives an IP.
# gate.c looks the name up itself at each event (a RESOLVE step), so the memo keys on the name
# and never holds a stale answer; any other use of the table is not a function of the value.
_LIVE = "_ipn"
RESOLVE = -1
# proc.aname and the like without an index: a field of every strict ancestor. gate.c walks the
# parents itself (an ANCESTORS step) and keys the memo on the tuple of values.
ANCESTORS = -2
# (FIELDS, count + FIELDS_LENIENT if a missing record reads as all None) before `count` last
# steps (slot, 0): the value is the tuple of those slots of one record.
FIELDS = -3
FIELDS_LENIENT = 256
MAX_FIELDS = 3
_PROCESS_UNKEYED = (R.P_PARENT, R.P_CONTAINER)
# Slots holding records or dicts, which no memo can key on (gate.c would skip the test). A list
# of strings (proc.env) is looked up as a tuple.
_UNKEYED = {
    ("ev", R.EV_PROC), ("ev", R.EV_ARGS), ("ev", R.EV_FD), ("c", R.C_MOUNTS), ("c", R.K_POD_LABELS),
    *(("p", slot) for slot in _PROCESS_UNKEYED), *(("pp", slot) for slot in _PROCESS_UNKEYED),
}


def _base_paths() -> dict[str, tuple[Path_, bool]]:
    """Per record local of generated code (`rules.fields.BASES`): the steps reaching it from the
    event, and whether it reads as an all-None record when missing (``(x or _EF)``)."""
    paths: dict[str, tuple[Path_, bool]] = {"ev": ((), False)}
    for base, read in BASES.items():  # dependency order
        tree, lenient = read.tree, False
        if isinstance(tree, ast.BoolOp) and isinstance(tree.op, ast.Or):
            tree, lenient = tree.values[0], True
        slot = _slot(tree)
        assert slot is not None, base
        parent, _ = paths[slot[0]]
        paths[base] = ((*parent, (slot[1], 0)), lenient)
    return paths


def _slot(tree: ast.AST) -> tuple[str, int] | None:
    """(record local, index) for ``p[4]`` and the like."""
    if (
        isinstance(tree, ast.Subscript) and isinstance(tree.value, ast.Name) and tree.value.id in RECORDS
        and isinstance(tree.slice, ast.Constant) and type(tree.slice.value) is int
    ):
        return tree.value.id, tree.slice.value
    return None


_BASE_PATHS = _base_paths()


def _named(tree: ast.expr) -> ast.expr | None:
    """The IP read of ``(_ipn.get(X) if X is not None else None)``, else None."""
    if not (isinstance(tree, ast.IfExp) and isinstance(tree.test, ast.Compare)):
        return None
    test, body = tree.test, tree.body
    if not (
        len(test.ops) == 1 and isinstance(test.ops[0], ast.IsNot) and _is_none(test.comparators[0])
        and _is_none(tree.orelse) and isinstance(body, ast.Call) and len(body.args) == 1 and not body.keywords
        and isinstance(body.func, ast.Attribute) and body.func.attr == "get"
        and isinstance(body.func.value, ast.Name) and body.func.value.id == _LIVE
        and shape(body.args[0]) == shape(test.left)
    ):
        return None
    return test.left


def _is_none(tree: ast.expr) -> bool:
    return isinstance(tree, ast.Constant) and tree.value is None


def _ancestral(tree: ast.expr) -> int | None:
    """The slot of ``[_n[K] for _n in _ancestor_nodes(p)]``, else None."""
    if not (isinstance(tree, ast.ListComp) and len(tree.generators) == 1):
        return None
    loop, element = tree.generators[0], tree.elt
    walks = (
        isinstance(loop.target, ast.Name) and loop.target.id == "_n" and not loop.ifs
        and isinstance(loop.iter, ast.Call) and isinstance(loop.iter.func, ast.Name)
        and loop.iter.func.id == "_ancestor_nodes" and len(loop.iter.args) == 1
        and isinstance(loop.iter.args[0], ast.Name) and loop.iter.args[0].id == "p"
    )
    slot = (
        isinstance(element, ast.Subscript) and isinstance(element.value, ast.Name)
        and element.value.id == "_n"
        and isinstance(element.slice, ast.Constant) and type(element.slice.value) is int
    )
    if not (walks and slot):
        return None
    return cast(int, cast(ast.Constant, cast(ast.Subscript, element).slice).value)


def _fields_as_x(read: ast.expr, slots: dict[tuple[str, int], int | None]) -> ast.expr:
    """A copy of `read` reading its record slots as ``_x`` (one slot) or ``_x[i]`` (several)."""

    def replace(node: ast.AST) -> ast.expr | None:
        slot = _slot(node)
        if slot is None or slot not in slots:
            return None
        position = slots[slot]
        return name("_x") if position is None else ast.Subscript(name("_x"), const(position), ast.Load())

    return rewrite(clone(read), replace)


def _is_x(tree: ast.expr) -> bool:
    return isinstance(tree, ast.Name) and tree.id == "_x"


def _read_path(read: ast.expr) -> tuple[Path_, ast.expr] | None:
    """(steps, the read with its value as ``_x``) for a read of one record field, plain
    (``p[2]``), through a pure function (``_txt3_3(a[3])``) or through the live DNS table; of a
    field of every ancestor (``proc.aname``); or of up to MAX_FIELDS slots of one record
    (``_cmdline_of(p[2], p[5])``, ``_x[0]`` and ``_x[1]``); None for anything else."""
    named = _named(read)
    if named is not None:
        found = _read_path(named)
        return None if found is None or not _is_x(found[1]) else ((*found[0], (RESOLVE, 0)), found[1])
    ancestral = _ancestral(read)
    if ancestral is not None:
        return ((R.EV_PROC, 0), (ANCESTORS, R.P_PARENT), (ancestral, 0)), name("_x")
    slots = sorted({slot for node in walk(read) if (slot := _slot(node)) is not None}, key=lambda s: s[1])
    bases = {base for base, _ in slots}
    live = any(node.id == _LIVE for node in names_in(read))
    if not slots or len(slots) > MAX_FIELDS or len(bases) != 1 or live:
        return None
    base = bases.pop()
    if any(slot in _UNKEYED for slot in slots):
        return None
    positions: dict[tuple[str, int], int | None] = {
        slot: None if len(slots) == 1 else position for position, slot in enumerate(slots)
    }
    code = _fields_as_x(read, positions)
    if any(node.id in RECORDS for node in names_in(code)):
        return None
    steps, lenient = _BASE_PATHS[base]
    if len(slots) == 1:
        return (*steps, (slots[0][1], int(lenient))), code
    # several slots of one record (proc.cmdline: name and args): the memo keys on their tuple
    count = (FIELDS, len(slots) + FIELDS_LENIENT * int(lenient))
    return (*steps, count, *((index, 0) for _, index in slots)), code


class Analysis:
    """The single-field tests of one function's conditions (its `Values`), each subtree
    analysed once: `necessary` asks the same subtrees again for every field. The expressions
    returned are shared: copy one before changing it."""

    def __init__(self, values: Values) -> None:
        self.values = values
        self._single: dict[int, tuple[Node, tuple[Path_, ast.expr] | None]] = {}
        self._paths: dict[Code, tuple[Path_, ast.expr] | None] = {}

    def read_path(self, read: Code) -> tuple[Path_, ast.expr] | None:
        """`_read_path` of one read, worked out once."""
        if read not in self._paths:
            self._paths[read] = _read_path(read.tree)
        return self._paths[read]

    def single_read(self, node: Node) -> tuple[Path_, ast.expr] | None:
        """(steps, expression over ``_x``) when `node` tests one record field and nothing else:
        a leaf, its negation, or an and/or of such tests on the same field."""
        known = self._single.get(id(node))
        if known is not None and known[0] is node:
            return known[1]
        found = self._analyse(node)
        self._single[id(node)] = (node, found)  # the node is kept: its id stays its own
        return found

    def _analyse(self, node: Node) -> tuple[Path_, ast.expr] | None:
        if isinstance(node, Leaf):
            numbers = {read.index for read in reads_in(node.code)}
            if len(numbers) != 1 or any(n.id in RECORDS or n.id == _LIVE for n in names_in(node.code)):
                return None
            found = self.read_path(self.values.codes[numbers.pop()])
            if found is None:
                return None
            steps, read = found
            return steps, rewrite(clone(node.code), lambda n: clone(read) if isinstance(n, Read) else None)
        if isinstance(node, Not):
            inner = self.single_read(node.child)
            return None if inner is None else (inner[0], not_(inner[1]))
        if isinstance(node, (And, Or)):
            parts = [self.single_read(child) for child in node.children]
            if not parts or any(part is None for part in parts):
                return None
            fields = {part[0] for part in parts if part is not None}
            if len(fields) != 1:
                return None
            join = and_ if isinstance(node, And) else or_
            return fields.pop(), join([part[1] for part in parts if part is not None])
        return None

    def fields(self, node: Node) -> set[Path_]:
        """The fields single-field tests inside `node` read."""
        found = self.single_read(node)
        if found is not None:
            return {found[0]}
        if isinstance(node, (And, Or)):
            return set().union(*(self.fields(child) for child in node.children))
        return set()

    def necessary(self, node: Node, steps: Path_) -> tuple[ast.expr, float] | None:
        """A test of the field at `steps` that holds whenever `node` does, and its guessed chance
        to hold; None when `node` does not constrain that field. An and keeps the parts that test
        the field and drops the others; an or needs every branch to constrain it."""
        exact = self.single_read(node)
        if exact is not None:
            return (exact[1], p_true(node)) if exact[0] == steps else None
        if not isinstance(node, (And, Or)):
            return None
        parts = [self.necessary(child, steps) for child in node.children]
        if isinstance(node, And):
            kept = [part for part in parts if part is not None]
            if not kept:
                return None
            chance = 1.0
            for _, p in kept:
                chance *= p
            return and_([body for body, _ in kept]), chance
        if not parts or any(part is None for part in parts):
            return None
        miss = 1.0
        for _, p in (part for part in parts if part is not None):
            miss *= 1 - p
        return or_([part[0] for part in parts if part is not None]), 1 - miss


def single_read(node: Node, values: Values) -> tuple[Path_, ast.expr] | None:
    """`Analysis.single_read` for one node."""
    return Analysis(values).single_read(node)


def push_not(node: Node) -> Node:
    """The same condition with every not on a leaf (De Morgan): ``not (a and b)`` becomes
    ``not a or not b``, which `alternatives` can split and `necessary` can use."""
    if isinstance(node, And):
        return And(tuple(push_not(child) for child in node.children))
    if isinstance(node, Or):
        return Or(tuple(push_not(child) for child in node.children))
    if not isinstance(node, Not):
        return node
    inner = node.child
    if isinstance(inner, Not):
        return push_not(inner.child)
    if isinstance(inner, And):
        return Or(tuple(push_not(Not(child)) for child in inner.children))
    if isinstance(inner, Or):
        return And(tuple(push_not(Not(child)) for child in inner.children))
    if isinstance(inner, Const):
        return Const(not inner.value)
    return node


def alternatives(tree: Node, limit: int = 8) -> list[Node]:
    """Conditions one of which holds whenever `tree` does, each an and of plain conjuncts: an
    or at the top, or among the top conjuncts, is split into its branches (as far as `limit`
    alternatives), so a rule like ``proc.exe startswith /dev/shm/ or proc.cwd startswith ...``,
    which no single field constrains as a whole, is constrained branch by branch."""
    if isinstance(tree, Or):
        out: list[Node] = []
        for branch in tree.children:
            out += alternatives(branch, limit)
        return out if len(out) <= limit else [tree]
    if not isinstance(tree, And):
        return [tree]
    alts: list[tuple[Node, ...]] = [tree.children]
    for i, conjunct in enumerate(tree.children):
        if not isinstance(conjunct, Or) or len(alts) * len(conjunct.children) > limit:
            continue
        alts = [(*alt[:i], branch, *alt[i + 1 :]) for alt in alts for branch in conjunct.children]
    return [And(alt) for alt in alts]


def program(rules: Sequence[Node], values: Values, namespace: dict[str, Any]) -> Program:
    """One event type's gate: True (keep every event) when some rule constrains no single field
    or the rules' alternatives outnumber the mask's bits, else (steps, memo) per field tested.
    Each alternative of each rule (`alternatives`) has a bit. gate.c stops at the first zero
    mask, so the fields guessed to rule out the most alternatives (the sum of their tests'
    chances to fail) come first."""
    alts = [alt for tree in rules if tree != FALSE for alt in alternatives(push_not(tree))]
    if len(alts) > MASK_BITS:
        alts = [tree for tree in rules if tree != FALSE]
    if len(alts) > MASK_BITS:
        return True
    if not alts:
        return None
    by_read: dict[Path_, dict[int, ast.expr]] = {}
    pruning: dict[Path_, float] = {}
    analysis = Analysis(values)
    for position, tree in enumerate(alts):
        fields = analysis.fields(tree)
        tests = [(steps, found) for steps in fields if (found := analysis.necessary(tree, steps)) is not None]
        if not tests:
            return True
        for steps, (body, chance) in tests:
            by_read.setdefault(steps, {})[position] = body
            pruning[steps] = pruning.get(steps, 0.0) + 1 - chance
    every = (1 << len(alts)) - 1
    required = [_plain_affixes(alt, analysis) for alt in alts]
    ordered = sorted(by_read.items(), key=lambda item: (-pruning[item[0]], item[0]))
    return tuple(
        (steps, _mask_memo(every, tested, namespace), *_affix_filter(steps, tested, required, every))
        for steps, tested in ordered
    )


def _plain_affixes(alt: Node, analysis: Analysis) -> dict[Path_, Affixes]:
    """The affixes an alternative requires of plain string fields, by field."""
    out: dict[Path_, Affixes] = {}
    for read, affixes in affixes_of(alt).items():
        found = analysis.read_path(read)
        if found is not None and _is_x(found[1]):
            out[found[0]] = affixes
    return out


def _affix_filter(
    steps: Path_, tested: Mapping[int, ast.expr], required: Sequence[Mapping[Path_, Affixes]], every: int
) -> tuple[()] | tuple[AffixSets, int]:
    """For a string field most of whose values are new (paths), what gate.c checks before asking
    the memo's Python: the union of the affixes the alternatives testing it require, and the mask
    of a value matching none of them (only alternatives without such a requirement pass). Such
    values are not remembered, so they cannot push the values that repeat out of the memo.
    Empty when no alternative testing the field requires affixes of it."""
    affixed = [position for position in tested if steps in required[position]]
    if not affixed:
        return ()
    union = Affixes.union(required[position][steps] for position in affixed)
    rejected = every & ~sum(1 << position for position in affixed)
    sets = (
        frozenset(union.exact), tuple(sorted(union.prefixes)), tuple(sorted(union.suffixes)),
        tuple(sorted(union.contains)),
    )
    return sets, rejected


def _mask_memo(every: int, tested: Mapping[int, ast.expr], namespace: dict[str, Any]) -> Memo:
    """A memo from a field's value to the mask of rules it lets through: those not testing it,
    and those whose test of it passes: ``lambda _x: untested | (bit if test else 0) | ...``."""
    untested = every & ~sum(1 << position for position in tested)
    mask: ast.expr = const(untested)
    for position, body in sorted(tested.items(), key=lambda item: item[0]):
        mask = ast.BinOp(mask, ast.BitOr(), ast.IfExp(clone(body), const(1 << position), const(0)))
    arguments = ast.arguments([], [ast.arg("_x")], None, [], [], None, [])
    tree = ast.fix_missing_locations(ast.Expression(ast.Lambda(arguments, mask)))
    test: Callable[[Any], int] = eval(compile(tree, "<peregrine gate>", "eval"), namespace)  # noqa: S307 - our own generated code
    return Memo(test)


def programs(
    per_type: Mapping[int, Sequence[Node]], values: Mapping[int, Values], namespace: dict[str, Any]
) -> tuple[Program, ...]:
    """Every event type's program, indexed by type id: None where no rule is evaluated."""
    return tuple(
        program(per_type[type_id], values[type_id], namespace) if per_type.get(type_id) else None
        for type_id in range(len(EVENT_TYPES))
    )


@cache
def _module() -> Any:
    return native.load("gate", SOURCE)


class Gate(Protocol):
    """What gate.c's Gate offers."""

    def select(self, events: Iterable[Any]) -> list[Any]:
        """The events, in order, that some rule could match."""

    def counts(self) -> tuple[int, int, int]:
        """(events given, events kept, field tests run) since the gate was made."""


def build(built: tuple[Program, ...], names: object) -> Gate | None:
    """The C gate over these programs, reading `names` (the live DNS table) for RESOLVE steps;
    None where it cannot be built. gate.c reads only a plain dict: with any other mapping the
    tests through it are dropped (fewer tests only keep more events)."""
    try:
        module = _module()
    except native.NativeError:
        return None
    if type(names) is not dict:
        built = tuple(_without_resolve(entry) for entry in built)
        names = None
    made: Gate = module.Gate(built, names, R.EV_PROC)
    return made


def _without_resolve(entry: Program) -> Program:
    if not isinstance(entry, tuple):
        return entry
    kept = tuple(test for test in entry if all(index != RESOLVE for index, _ in test[0]))
    return kept or True
