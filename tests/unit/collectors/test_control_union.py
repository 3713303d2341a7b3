"""`collectors.control.union`: the effective interest of several worker groups keeps every event
any group's interest keeps (checked with `FieldInterest.admits` and, with alternatives,
`rules.interest.admits` on events: neither is used by `union`), and no more than it must where the
groups agree."""

from __future__ import annotations

from collections.abc import Mapping

from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks.workload import build_event
from collectors.control import union
from rules.interest import (
    KERNEL_FIELDS,
    MAX_ALTERNATIVES,
    MAX_VALUES,
    Alternative,
    FieldInterest,
    TypeInterest,
)
from rules.interest import admits as interest_admits

TYPES = ("openat", "execve", "connect")
_texts = st.text(alphabet="/abc.", max_size=5)
_values = st.frozensets(_texts, max_size=3)
_fields = st.builds(FieldInterest, st.sampled_from(KERNEL_FIELDS), _values, _values, _values, _values)
interests = st.dictionaries(st.sampled_from(TYPES), st.lists(_fields, max_size=3), max_size=3).map(
    lambda d: {name: TypeInterest(name, tuple(fields)) for name, fields in d.items()}
)


def passes(interest: Mapping[str, TypeInterest], event_type: str, values: Mapping[str, str]) -> bool:
    wanted = interest.get(event_type)
    return wanted is not None and all(f.admits(values[f.field]) for f in wanted.fields)


@settings(max_examples=150, deadline=None)
@given(groups=st.lists(interests, max_size=4), event_type=st.sampled_from(TYPES),
       values=st.fixed_dictionaries({f: _texts for f in KERNEL_FIELDS}))
def test_the_union_keeps_what_any_group_keeps(
    groups: list[dict[str, TypeInterest]], event_type: str, values: dict[str, str]
) -> None:
    merged = union(groups)
    if any(passes(g, event_type, values) for g in groups):
        assert passes(merged, event_type, values)
    assert set(merged) == {name for g in groups for name in g}  # a type no group names stays out


_alternatives = st.builds(
    Alternative, st.lists(_fields, max_size=2, unique_by=lambda f: f.field).map(tuple),
    st.none() | st.frozensets(st.integers(0, 3)), st.none() | st.booleans(),
)
with_alternatives = st.dictionaries(
    st.sampled_from(TYPES), st.tuples(st.lists(_fields, max_size=2), st.lists(_alternatives, max_size=3)),
    max_size=3,
).map(lambda d: {name: TypeInterest(name, tuple(fields), tuple(alts)) for name, (fields, alts) in d.items()})


@settings(max_examples=150, deadline=None)
@given(groups=st.lists(with_alternatives, max_size=4), event_type=st.sampled_from(TYPES),
       values=st.fixed_dictionaries({f: _texts for f in KERNEL_FIELDS}), flags=st.integers(0, 7),
       res=st.sampled_from((-2, -1, 0, 3)))  # fmt: skip
def test_the_union_keeps_what_any_group_keeps_alternatives_and_all(
    groups: list[dict[str, TypeInterest]], event_type: str, values: dict[str, str], flags: int, res: int
) -> None:
    args: dict[str, object] = {"flags": flags} if event_type == "openat" else {}
    ev = build_event(event_type, args=args, res=res, fd={"name": values["fd.name"], "num": res},
                     proc={"name": values["proc.name"]})  # fmt: skip
    merged = union(groups)
    if any(interest_admits(g, ev) for g in groups):
        assert interest_admits(merged, ev), (groups, merged)
    assert all(len(t.alternatives) <= MAX_ALTERNATIVES for t in merged.values())


def test_alternatives_concatenate_and_one_group_without_them_frees_the_type() -> None:
    reads = {"openat": TypeInterest("openat", (fd("/etc/"),), (Alternative((), frozenset({0}), True),))}
    fails = {"openat": TypeInterest("openat", (fd("/root/"),), (Alternative((), None, False),))}
    both = union([reads, fails])["openat"]
    assert both.fields == (fd("/etc/", "/root/"),)
    assert set(both.alternatives) == {Alternative((fd("/etc/"),), frozenset({0}), True),
                                      Alternative((fd("/root/"),), None, False)}  # fmt: skip
    assert union([reads, {"openat": TypeInterest("openat", (fd("/root/"),))}])["openat"].alternatives == ()


def test_alternatives_past_the_cap_are_merged_within_it() -> None:
    def name(text: str) -> FieldInterest:
        return FieldInterest("proc.name", frozenset({text}), frozenset(), frozenset(), frozenset())

    def group(g: int) -> dict[str, TypeInterest]:  # MAX_ALTERNATIVES each
        alternatives = (Alternative((name(f"g{g}n{i}"),), frozenset({i % 4})) for i in range(64))
        return {"openat": TypeInterest("openat", (), tuple(alternatives))}

    groups = [group(0), group(1)]
    merged = union(groups)["openat"]
    assert 0 < len(merged.alternatives) <= MAX_ALTERNATIVES
    for g in range(2):
        for i in range(MAX_ALTERNATIVES):
            ev = build_event("openat", args={"flags": i % 4}, proc={"name": f"g{g}n{i}"})
            assert interest_admits({"openat": merged}, ev)


def fd(*prefixes: str) -> FieldInterest:
    return FieldInterest("fd.name", frozenset(), frozenset(prefixes), frozenset(), frozenset())


def test_fields_both_groups_constrain_stay_constrained_with_both_values() -> None:
    a = {"openat": TypeInterest("openat", (fd("/etc/"),))}
    b = {"openat": TypeInterest("openat", (fd("/root/"),)), "execve": TypeInterest("execve", ())}
    assert union([a, b]) == {"openat": TypeInterest("openat", (fd("/etc/", "/root/"),)),
                             "execve": TypeInterest("execve", ())}  # fmt: skip
    assert union([a]) == a and union([]) == {}


def test_a_field_one_group_leaves_free_is_freed() -> None:
    a = {"openat": TypeInterest("openat", (fd("/etc/"),))}
    b = {"openat": TypeInterest("openat", ())}
    assert union([a, b]) == {"openat": TypeInterest("openat", ())}


def test_a_union_past_the_value_bound_frees_the_field() -> None:
    half = MAX_VALUES // 2 + 1
    a = {"openat": TypeInterest("openat", (fd(*(f"/a{i}" for i in range(half))),))}
    b = {"openat": TypeInterest("openat", (fd(*(f"/b{i}" for i in range(half))),))}
    assert union([a, b]) == {"openat": TypeInterest("openat", ())}


def test_the_union_carries_the_fd_table_when_any_interest_does() -> None:
    reads = {"connect": TypeInterest("connect", (), (), fd_table=True)}
    not_reads = {"connect": TypeInterest("connect", ()), "openat": TypeInterest("openat", ())}
    merged = union([not_reads, reads])
    assert merged["connect"].fd_table and not merged["openat"].fd_table
    assert union([reads, not_reads]) == merged
