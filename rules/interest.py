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

Whether the kernel sees the same string as the record is the collector's business: ``fd.name`` is
the path the collector resolves (absolute, cwd applied), ``proc.name`` its comm. A kernel filter
that sees another form (a relative path, a comm renamed since exec) must keep the event.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from rules import record as R
from rules.affixes import Affixes
from rules.codegen import affixes_of
from rules.condtree import FALSE, Node
from rules.fields import FIELDS
from rules.record import EVENT_TYPES, Event

KERNEL_FIELDS: Final = ("fd.name", "proc.name")
MAX_VALUES: Final = 4096  # values per field past which a constraint is not worth a kernel map
MAX_ALTERNATIVES: Final = 64  # per type: a kernel filter holds one bit per alternative in a u64


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


def _reads(type_id: int) -> dict[str, str]:
    """The read code's structure (`Code.key`) of each kernel field, as the compiler emits it for
    this event type."""
    return {FIELDS[name].code(None, type_id).key: name for name in KERNEL_FIELDS}


def derive(trees: Mapping[int, Sequence[Node]]) -> dict[str, TypeInterest]:
    """Each event type's interest, from its rules' condition trees (as `rules.ruleset` builds them);
    types whose rules can never match are absent."""
    out: dict[str, TypeInterest] = {}
    for type_id, conditions in sorted(trees.items()):
        live = [tree for tree in conditions if tree != FALSE]
        if live:
            name = EVENT_TYPES[type_id]
            reads = _reads(type_id)
            per_rule = [{reads[c.key]: found for c, found in affixes_of(tree).items() if c.key in reads}
                        for tree in live]  # fmt: skip
            out[name] = TypeInterest(name, _constraints(per_rule), _alternatives(per_rule))
    return out


def _alternatives(per_rule: Sequence[Mapping[str, Affixes]]) -> tuple[Alternative, ...]:
    """One alternative per distinct rule requirement; none when some rule requires nothing (every
    event may match it) or past `MAX_ALTERNATIVES` (then `fields` alone decide)."""
    found: dict[Alternative, None] = {}
    for rule in per_rule:
        fields = tuple(_field(name, rule[name]) for name in sorted(rule) if rule[name].size() <= MAX_VALUES)
        if not fields:
            return ()
        found[Alternative(fields)] = None
    return tuple(found) if len(found) <= MAX_ALTERNATIVES else ()


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
    if alternative.succeeded is not None and (ev[R.EV_RES] >= 0) != alternative.succeeded:
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
