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

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any, Protocol, TypeAlias

from rules import native
from rules import record as R
from rules.affixes import Affixes
from rules.codegen import affixes_of
from rules.condtree import Node, Values, p_true
from rules.fields import BASES
from rules.operators import Memo
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
_PLACEHOLDER = re.compile("[\x01\x03]([0-9]+)\x02")
_LITERALS = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"")
_READ = re.compile(r"(?<![\w.])(ev|pp|p|c|f|a)\[(\d+)\]")
_RECORD = re.compile(r"(?<![\w.])(ev|pp|p|c|f|a)\b")
_LIVE = re.compile(r"\b_ipn\b")  # the DNS table the caller updates: not a function of the value
# ``fd.sip.name``: the name the live table gives an IP. gate.c looks the name up itself at each
# event (a RESOLVE step), so the memo keys on the name and never holds a stale answer.
_NAMED = re.compile(r"\(_ipn\.get\(((?:ev|pp|p|c|f|a)\[\d+\])\) if \1 is not None else None\)")
RESOLVE = -1
# proc.aname and the like without an index: a field of every strict ancestor. gate.c walks the
# parents itself (an ANCESTORS step) and keys the memo on the tuple of values.
_ANCESTRAL = re.compile(r"\[_n\[(\d+)\] for _n in _ancestor_nodes\(p\)\]")
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
    for name, code in BASES.items():  # dependency order
        found = re.fullmatch(r"\(?(\w+)\[(\d+)\](?: or _E\w)?\)?", code)
        assert found is not None, code
        parent, _ = paths[found.group(1)]
        paths[name] = ((*parent, (int(found.group(2)), 0)), " or _E" in code)
    return paths


_BASE_PATHS = _base_paths()


def _read_path(read: str) -> tuple[Path_, str] | None:
    """(steps, code of the read with its value as ``_x``) for a read of one record field, plain
    (``p[2]``), through a pure function (``_txt3_3(a[3])``) or through the live DNS table; of a
    field of every ancestor (``proc.aname``); or of up to MAX_FIELDS slots of one record
    (``_cmdline_of(p[2], p[5])``, ``_x[0]`` and ``_x[1]``); None for anything else."""
    named = _NAMED.fullmatch(read)
    if named is not None:
        found = _read_path(named.group(1))
        return None if found is None or found[1] != "_x" else ((*found[0], (RESOLVE, 0)), "_x")
    ancestral = _ANCESTRAL.fullmatch(read)
    if ancestral is not None:
        return ((R.EV_PROC, 0), (ANCESTORS, R.P_PARENT), (int(ancestral.group(1)), 0)), "_x"
    bare = _LITERALS.sub("''", read)
    fields = sorted(set(_READ.findall(bare)), key=lambda field: int(field[1]))
    bases = {base for base, _ in fields}
    if not fields or len(fields) > MAX_FIELDS or len(bases) != 1 or _LIVE.search(bare):
        return None
    base = bases.pop()
    if any((base, int(index)) in _UNKEYED for _, index in fields):
        return None
    code = read
    for position, (_, index) in enumerate(fields):
        code = code.replace(f"{base}[{index}]", "_x" if len(fields) == 1 else f"_x[{position}]")
    if _RECORD.search(_LITERALS.sub("''", code)):
        return None
    steps, lenient = _BASE_PATHS[base]
    if len(fields) == 1:
        return (*steps, (int(fields[0][1]), int(lenient))), code
    # several slots of one record (proc.cmdline: name and args): the memo keys on their tuple
    count = (FIELDS, len(fields) + FIELDS_LENIENT * int(lenient))
    return (*steps, count, *((int(index), 0) for _, index in fields)), code


def single_read(node: Node, values: Values) -> tuple[Path_, str] | None:
    """(steps, Python expression over ``_x``) when `node` tests one record field and nothing
    else: a leaf, its negation, or an and/or of such tests on the same field."""
    kind = node[0]
    if kind == "leaf":
        code = node[1].code
        numbers = set(_PLACEHOLDER.findall(code))
        outside = _LITERALS.sub("''", _PLACEHOLDER.sub("_x", code))
        if len(numbers) != 1 or _RECORD.search(outside) or _LIVE.search(outside):
            return None
        found = _read_path(values.codes[int(numbers.pop())])
        if found is None:
            return None
        steps, read = found
        return steps, _PLACEHOLDER.sub(lambda _: f"({read})", code)
    if kind == "not":
        inner = single_read(node[1], values)
        return None if inner is None else (inner[0], f"not ({inner[1]})")
    if kind in ("and", "or"):
        parts = [single_read(child, values) for child in node[1]]
        if not parts or any(part is None for part in parts):
            return None
        fields = {part[0] for part in parts if part is not None}
        if len(fields) != 1:
            return None
        joiner = f" {kind} "
        return fields.pop(), "(" + joiner.join(f"({part[1]})" for part in parts if part is not None) + ")"
    return None


def _fields(node: Node, values: Values) -> set[Path_]:
    """The fields single-field tests inside `node` read."""
    found = single_read(node, values)
    if found is not None:
        return {found[0]}
    if node[0] in ("and", "or"):
        return set().union(*(_fields(child, values) for child in node[1]))
    return set()


def necessary(node: Node, values: Values, steps: Path_) -> tuple[str, float] | None:
    """A test of the field at `steps` that holds whenever `node` does, and its guessed chance to
    hold; None when `node` does not constrain that field. An and keeps the parts that test the
    field and drops the others; an or needs every branch to constrain it."""
    exact = single_read(node, values)
    if exact is not None:
        return (exact[1], p_true(node)) if exact[0] == steps else None
    kind = node[0]
    if kind not in ("and", "or"):
        return None
    parts = [necessary(child, values, steps) for child in node[1]]
    if kind == "and":
        kept = [part for part in parts if part is not None]
        if not kept:
            return None
        chance = 1.0
        for _, p in kept:
            chance *= p
        return "(" + " and ".join(f"({body})" for body, _ in kept) + ")", chance
    if not parts or any(part is None for part in parts):
        return None
    miss = 1.0
    for _, p in (part for part in parts if part is not None):
        miss *= 1 - p
    return "(" + " or ".join(f"({part[0]})" for part in parts if part is not None) + ")", 1 - miss


def push_not(node: Node) -> Node:
    """The same condition with every not on a leaf (De Morgan): ``not (a and b)`` becomes
    ``not a or not b``, which `alternatives` can split and `necessary` can use."""
    kind = node[0]
    if kind in ("and", "or"):
        return (kind, [push_not(child) for child in node[1]])
    if kind != "not":
        return node
    inner = node[1]
    if inner[0] == "not":
        return push_not(inner[1])
    if inner[0] in ("and", "or"):
        flipped = "or" if inner[0] == "and" else "and"
        return (flipped, [push_not(("not", child)) for child in inner[1]])
    if inner[0] == "const":
        return ("const", not inner[1])
    return node


def alternatives(tree: Node, limit: int = 8) -> list[Node]:
    """Conditions one of which holds whenever `tree` does, each an and of plain conjuncts: an
    or at the top, or among the top conjuncts, is split into its branches (as far as `limit`
    alternatives), so a rule like ``proc.exe startswith /dev/shm/ or proc.cwd startswith ...``,
    which no single field constrains as a whole, is constrained branch by branch."""
    if tree[0] == "or":
        out: list[Node] = []
        for branch in tree[1]:
            out += alternatives(branch, limit)
        return out if len(out) <= limit else [tree]
    if tree[0] != "and":
        return [tree]
    out = [tree]
    for i, conjunct in enumerate(tree[1]):
        if conjunct[0] != "or" or len(out) * len(conjunct[1]) > limit:
            continue
        out = [
            ("and", [*alt[1][:i], branch, *alt[1][i + 1 :]])
            for alt in out
            for branch in conjunct[1]
        ]
    return out


def program(rules: Sequence[Node], values: Values, namespace: dict[str, Any]) -> Program:
    """One event type's gate: True (keep every event) when some rule constrains no single field
    or the rules' alternatives outnumber the mask's bits, else (steps, memo) per field tested.
    Each alternative of each rule (`alternatives`) has a bit. gate.c stops at the first zero
    mask, so the fields guessed to rule out the most alternatives (the sum of their tests'
    chances to fail) come first."""
    alts = [alt for tree in rules if tree != ("const", False) for alt in alternatives(push_not(tree))]
    if len(alts) > MASK_BITS:
        alts = [tree for tree in rules if tree != ("const", False)]
    if len(alts) > MASK_BITS:
        return True
    if not alts:
        return None
    by_read: dict[Path_, dict[int, str]] = {}
    pruning: dict[Path_, float] = {}
    for position, tree in enumerate(alts):
        fields = _fields(tree, values)
        tests = [(steps, found) for steps in fields if (found := necessary(tree, values, steps)) is not None]
        if not tests:
            return True
        for steps, (body, chance) in tests:
            by_read.setdefault(steps, {})[position] = body
            pruning[steps] = pruning.get(steps, 0.0) + 1 - chance
    every = (1 << len(alts)) - 1
    required = [_plain_affixes(alt) for alt in alts]
    ordered = sorted(by_read.items(), key=lambda item: (-pruning[item[0]], item[0]))
    return tuple(
        (steps, _mask_memo(every, tested, namespace), *_affix_filter(steps, tested, required, every))
        for steps, tested in ordered
    )


def _plain_affixes(alt: Node) -> dict[Path_, Affixes]:
    """The affixes an alternative requires of plain string fields, by field."""
    out: dict[Path_, Affixes] = {}
    for read, affixes in affixes_of(alt).items():
        found = _read_path(read)
        if found is not None and found[1] == "_x":
            out[found[0]] = affixes
    return out


def _affix_filter(
    steps: Path_, tested: Mapping[int, str], required: Sequence[Mapping[Path_, Affixes]], every: int
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


def _mask_memo(every: int, tested: Mapping[int, str], namespace: dict[str, Any]) -> Memo:
    """A memo from a field's value to the mask of rules it lets through: those not testing it,
    and those whose test of it passes."""
    untested = every & ~sum(1 << position for position in tested)
    terms = [f"({1 << position} if {body} else 0)" for position, body in sorted(tested.items())]
    source = f"lambda _x: {untested} | " + " | ".join(terms)
    test: Callable[[Any], int] = eval(compile(source, "<peregrine gate>", "eval"), namespace)  # noqa: S307 - our own generated code
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
