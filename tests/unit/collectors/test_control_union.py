"""`collectors.control.union`: the effective interest of several worker groups keeps every event
any group's interest keeps (checked with `FieldInterest.admits`, which `union` does not use), and
no more than it must where the groups agree."""

from __future__ import annotations

from collections.abc import Mapping

from hypothesis import given, settings
from hypothesis import strategies as st

from collectors.control import union
from rules.interest import KERNEL_FIELDS, MAX_VALUES, FieldInterest, TypeInterest

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
