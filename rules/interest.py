"""Interest: per event type, what an event must look like for any loaded rule to match it.

A collector that knew this could drop, in the kernel, events no rule can match (issue #18). This
module derives it from a compiled ruleset, with the analysis the gate and the prefilters already
trust (`rules.codegen.affixes_of`: the affixes a condition requires of a string read), not a
second one. For one event type, a field is *constrained* when every rule of that type requires
affixes of it; the type's interest in that field is the union of those requirements. An event
whose value of a constrained field matches none of them matches no rule of its type, so dropping
it loses nothing (a rule of another type never sees it).

Only fields a kernel can read are offered (`KERNEL_FIELDS`), with the four kinds of requirement
the analysis knows: exact values, prefixes, suffixes and substrings. A kernel filter that cannot
test one kind (substrings, say) must treat a field needing it as unconstrained; a field read
through a transformer (``tolower(fd.name)`` is another read) is unconstrained here already. Fewer
constraints only keep more events. A type with no constraint keeps all its events; a type with no
rule keeps none (the collector still traces what it needs for its own state).

Beside the fields every rule requires, each rule gives an `Alternative`: the fields it requires,
and on the open types the access modes and the outcome it allows (`rules.interest_classes`, from
the same fold over the condition). An event must pass one alternative, so rules constraining
different fields, or reads apart from writes, still narrow. `narrowed` keeps them few without
changing what they admit (repeats, one a wider one implies, two differing in one field's values
merged) and, past MAX_ALTERNATIVES, widens the most alike into one.

Whether the kernel sees the same string as the record is the collector's business: ``fd.name`` is
the path the collector resolves (absolute, cwd applied), ``proc.name`` its comm. A kernel filter
that sees another form (a relative path, a comm renamed since exec) must keep the event.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, cast

from rules import record as R
from rules.affixes import Affixes
from rules.codegen import affixes_of
from rules.condtree import FALSE, Node, Values
from rules.fields import FIELDS
from rules.interest_classes import ACCMODE, ACCMODES, SUCCEEDED, Classes
from rules.record import EVENT_TYPES, Event

KERNEL_FIELDS: Final = ("fd.name", "proc.name")
MAX_VALUES: Final = 4096  # values per field past which a constraint is not worth a kernel map
MAX_ALTERNATIVES: Final = 64  # per type: a kernel filter holds one bit per alternative in a u64
_MAX_COMPARED: Final = 2 * MAX_ALTERNATIVES  # merging compares every pair: bounded work past this


@dataclass(frozen=True, slots=True)
class FieldInterest:
    """An event passes when its `field` equals one of `exact`, starts with one of `prefixes`, ends
    with one of `suffixes` or contains one of `contains`."""

    field: str
    exact: frozenset[str]
    prefixes: frozenset[str]
    suffixes: frozenset[str]
    contains: frozenset[str]

    def admits(self, value: str) -> bool:
        return (
            value in self.exact
            or any(value.startswith(p) for p in self.prefixes)
            or any(value.endswith(s) for s in self.suffixes)
            or any(c in value for c in self.contains)
        )


@dataclass(frozen=True, slots=True)
class Alternative:
    """One way some rule of the type can match: each of `fields` admits the event's value; when
    set, the open's access mode (its flags & O_ACCMODE: 0 read-only, 1 write-only, 2 read-write, 3)
    is one of `accmodes`, and the call succeeded (returned >= 0) or failed as `succeeded` says."""

    fields: tuple[FieldInterest, ...] = ()
    accmodes: frozenset[int] | None = None
    succeeded: bool | None = None


@dataclass(frozen=True, slots=True)
class TypeInterest:
    """What an event of one type needs for some rule to match it: every one of `fields` (none:
    every event of the type) and, when there are `alternatives`, one of them.

    `fields` is what every rule of the type requires, the check a filter that cannot tell rules
    apart applies; `alternatives` (about one per rule) are what one rule or another requires, so
    they narrow further where rules constrain different fields. No alternatives: `fields` alone."""

    event_type: str
    fields: tuple[FieldInterest, ...]
    alternatives: tuple[Alternative, ...] = ()
    # some rule of the type reads fd.types: the collector captures each event's fd table with it
    fd_table: bool = False


def _reads(type_id: int) -> dict[str, str]:
    """The read code's structure (`Code.key`) of each kernel field, as the compiler emits it for
    this event type."""
    return {FIELDS[name].code(None, type_id).key: name for name in KERNEL_FIELDS}


def derive(
    trees: Mapping[int, Sequence[Node]],
    values: Mapping[int, Values],
    namespace: Mapping[str, object],
    fd_tables: Collection[str] = frozenset(),
) -> dict[str, TypeInterest]:
    """Each event type's interest, from its rules' condition trees (as `rules.ruleset` builds them,
    reading `values` of their type, the generated code's `namespace` at hand); types whose rules
    can never match are absent. `fd_tables`: the types some rule reads fd.types on."""
    out: dict[str, TypeInterest] = {}
    for type_id, conditions in sorted(trees.items()):
        live = [tree for tree in conditions if tree != FALSE]
        if live:
            name = EVENT_TYPES[type_id]
            reads = _reads(type_id)
            per_rule = [{reads[c.key]: found for c, found in affixes_of(tree).items() if c.key in reads}
                        for tree in live]  # fmt: skip
            classes = Classes(type_id, values[type_id], namespace)
            found = [_alternative(rule, classes.of(tree)) for rule, tree in zip(per_rule, live, strict=True)]
            alternatives = tuple(alt for alt in found if alt is not None)  # None: the rule matches nothing
            out[name] = TypeInterest(name, _constraints(per_rule), narrowed(alternatives), name in fd_tables)
    return out


def _alternative(rule: Mapping[str, Affixes], classes: Mapping[str, frozenset[object]]) -> Alternative | None:
    """What one rule requires; None when its classes leave no event."""
    fields = tuple(_field(name, rule[name]) for name in sorted(rule) if rule[name].size() <= MAX_VALUES)
    modes = classes.get(ACCMODE)
    results = classes.get(SUCCEEDED)
    if modes is not None and not modes or results is not None and not results:
        return None
    accmodes = None if modes is None or modes >= ACCMODES else frozenset(cast(frozenset[int], modes))
    succeeded = None if results is None or len(results) != 1 else bool(next(iter(results)))
    return Alternative(fields, accmodes, succeeded)


def narrowed(alternatives: Sequence[Alternative]) -> tuple[Alternative, ...]:
    """`alternatives` admitting the same events, fewer: without repeats, without one a wider one
    implies, two alike but for one field's values (or the access modes) as one. Past
    MAX_ALTERNATIVES, the two most alike are widened into one until they fit. () (any event, as
    far as alternatives go) when one requires nothing, or when there are too many to compare."""
    found = list(dict.fromkeys(alternatives))
    if any(requires_nothing(alt) for alt in found) or len(found) > _MAX_COMPARED:
        return ()
    i = 0
    while i < len(found):
        j = i + 1
        while j < len(found):
            both = _exact_union(found[i], found[j])
            if both is None:
                j += 1
                continue
            del found[j]
            found[i], j = both, i + 1  # the merged one is compared again with every later one
        i += 1
    if len(found) <= MAX_ALTERNATIVES:
        return tuple(found)
    pool = dict(enumerate(found))  # by an id, each merged one a new id above the others
    costs = {(a, b): _widening(pool[a], pool[b]) for a in pool for b in pool if a < b}
    fresh = len(found)
    while len(pool) > MAX_ALTERNATIVES:
        a, b = min(costs, key=costs.__getitem__)  # ties: the earliest pair, so the result is stable
        wide = _widened(pool.pop(a), pool.pop(b))
        if requires_nothing(wide):
            return ()
        costs = {pair: cost for pair, cost in costs.items() if a not in pair and b not in pair}
        costs.update({(c, fresh): _widening(pool[c], wide) for c in pool})
        pool[fresh], fresh = wide, fresh + 1
    return tuple(pool.values())



def requires_nothing(alt: Alternative) -> bool:
    """Whether `alt` admits every event (so its type's alternatives narrow nothing)."""
    return not alt.fields and alt.accmodes is None and alt.succeeded is None


def _exact_union(a: Alternative, b: Alternative) -> Alternative | None:
    """One alternative admitting exactly what `a` or `b` does, when there is a simple one: the
    wider when one implies the other, or the two merged when they differ in one field's values or
    in their access modes only."""
    if implies(a, b):
        return b
    if implies(b, a):
        return a
    if a.succeeded != b.succeeded or [f.field for f in a.fields] != [f.field for f in b.fields]:
        return None
    differ = [i for i, (x, y) in enumerate(zip(a.fields, b.fields, strict=True)) if x != y]
    if not differ and a.accmodes is not None and b.accmodes is not None:
        modes = a.accmodes | b.accmodes
        return Alternative(a.fields, None if modes >= ACCMODES else modes, a.succeeded)
    if len(differ) != 1 or a.accmodes != b.accmodes:
        return None
    field = _union_field(a.fields[differ[0]], b.fields[differ[0]])
    if field is None:
        return None
    fields = (*a.fields[: differ[0]], field, *a.fields[differ[0] + 1 :])
    return Alternative(fields, a.accmodes, a.succeeded)


def implies(narrow: Alternative, wide: Alternative) -> bool:
    """Whether every event `narrow` admits, `wide` admits (False when that is not plain)."""
    if wide.accmodes is not None and (narrow.accmodes is None or not narrow.accmodes <= wide.accmodes):
        return False
    if wide.succeeded is not None and narrow.succeeded != wide.succeeded:
        return False
    mine = {f.field: f for f in narrow.fields}
    return all(f.field in mine and _covers(f, mine[f.field]) for f in wide.fields)


def _covers(wide: FieldInterest, narrow: FieldInterest) -> bool:
    """Whether every value `narrow` admits, `wide` does."""
    return (
        all(wide.admits(v) for v in narrow.exact)
        and all(any(p.startswith(q) for q in wide.prefixes) for p in narrow.prefixes)
        and all(any(s.endswith(t) for t in wide.suffixes) for s in narrow.suffixes)
        and all(any(d in c for d in wide.contains) for c in narrow.contains)
    )


def _union_field(a: FieldInterest, b: FieldInterest) -> FieldInterest | None:
    """A field admitting what either does; None past MAX_VALUES (then the field is free)."""
    union = FieldInterest(a.field, a.exact | b.exact, a.prefixes | b.prefixes, a.suffixes | b.suffixes,
                          a.contains | b.contains)  # fmt: skip
    size = len(union.exact) + len(union.prefixes) + len(union.suffixes) + len(union.contains)
    return union if size <= MAX_VALUES else None


def _widened(a: Alternative, b: Alternative) -> Alternative:
    """One alternative admitting all `a` and `b` do, and maybe more: the fields both constrain,
    with both's values; the access modes and outcome both allow."""
    theirs = {f.field: f for f in b.fields}
    unions = (_union_field(f, theirs[f.field]) for f in a.fields if f.field in theirs)
    fields = tuple(f for f in unions if f is not None)
    modes = None if a.accmodes is None or b.accmodes is None else a.accmodes | b.accmodes
    return Alternative(fields, None if modes is not None and modes >= ACCMODES else modes,
                       a.succeeded if a.succeeded == b.succeeded else None)  # fmt: skip


def _widening(a: Alternative, b: Alternative) -> tuple[int, int]:
    """How much merging `a` and `b` widens them (smaller: more alike): the constraints either
    loses, then the values the merged fields hold."""
    wide = _widened(a, b)
    lost = len(a.fields) + len(b.fields) - 2 * len(wide.fields)
    lost += (wide.accmodes != a.accmodes) + (wide.accmodes != b.accmodes)
    lost += (wide.succeeded != a.succeeded) + (wide.succeeded != b.succeeded)
    values = sum(len(f.exact) + len(f.prefixes) + len(f.suffixes) + len(f.contains) for f in wide.fields)
    return lost, values


def _field(name: str, affixes: Affixes) -> FieldInterest:
    return FieldInterest(name, affixes.exact, affixes.prefixes, affixes.suffixes, affixes.contains)


def _constraints(per_rule: Sequence[Mapping[str, Affixes]]) -> tuple[FieldInterest, ...]:
    common = set(per_rule[0]).intersection(*per_rule[1:])
    fields = []
    for field in sorted(common):
        union = Affixes.union(rule[field] for rule in per_rule)
        if union.size() > MAX_VALUES:
            continue
        fields.append(_field(field, union))
    return tuple(fields)


def admits(interest: Mapping[str, TypeInterest], ev: Event) -> bool:
    """Whether a filter applying `interest` keeps `ev`: its type has rules, each constrained
    field's value passes and so does one alternative, if any. An absent value passes (a kernel that
    cannot read it keeps the event)."""
    found = interest.get(EVENT_TYPES[ev[R.EV_TYPE]])
    if found is None or not _fields_admit(found.fields, ev):
        return False
    return not found.alternatives or any(_alternative_admits(a, ev) for a in found.alternatives)


def _fields_admit(fields: Sequence[FieldInterest], ev: Event) -> bool:
    for field in fields:
        value = _value(field.field, ev)
        if isinstance(value, str) and not field.admits(value):
            return False
    return True


def _alternative_admits(alternative: Alternative, ev: Event) -> bool:
    if not _fields_admit(alternative.fields, ev):
        return False
    res = ev[R.EV_RES]
    if alternative.succeeded is not None and isinstance(res, int) and (res >= 0) != alternative.succeeded:
        return False
    if alternative.accmodes is None:
        return True
    mode = _accmode(ev)
    return mode is None or mode in alternative.accmodes


def _accmode(ev: Event) -> int | None:
    """The open's flags & O_ACCMODE; None (passes) for a type without flags."""
    index = R.EVENT_PARAM_INDEX[ev[R.EV_TYPE]].get("flags")
    flags = None if index is None else ev[R.EV_ARGS][index]
    return None if not isinstance(flags, int) else flags & 3


def _value(field: str, ev: Event) -> object:
    if field == "fd.name":
        fd = ev[R.EV_FD]
        return None if fd is None else fd[R.F_NAME]
    return ev[R.EV_PROC][R.P_NAME]
