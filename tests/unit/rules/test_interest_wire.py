"""`rules.interest_wire`: the `peregrine.control` interest record.

Round trips of random interests; hostile input (random bytes, random JSON, a valid record with one
part replaced, nesting, oversize lists and values) raises only `InterestRecordError`, naming the
field; what the writer cannot fit is widened, never narrowed (checked with `passes`, built on
`FieldInterest.admits`, on the interest before and after: an oracle the codec does not use); a
version-1 record (fields only, from a worker before alternatives) and a version-2 one (one record
per group, from a worker before replicas) still read."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from rules import interest_wire as wire
from rules.errors import InterestRecordError
from rules.interest import (
    KERNEL_FIELDS,
    MAX_ALTERNATIVES,
    MAX_VALUES,
    Alternative,
    FieldInterest,
    TypeInterest,
)
from rules.record import EVENT_TYPES

GROUP = "peregrine-worker"
REPLICA = "peregrine-worker-7d9f-x2x4q-1"
GROUP_KEY = b"interest/peregrine-worker"  # versions 1 and 2
T = 1_787_307_330_123_456_789
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_values = st.frozensets(st.text(max_size=12), max_size=4)
_fields = st.builds(FieldInterest, st.sampled_from(KERNEL_FIELDS), _values, _values, _values, _values)
_field_lists = st.lists(_fields, max_size=len(KERNEL_FIELDS), unique_by=lambda f: f.field)
_small = st.frozensets(st.text(max_size=6), max_size=2)
_small_fields = st.builds(FieldInterest, st.sampled_from(KERNEL_FIELDS), _small, _small, _small, _small)
_alt_fields = st.lists(_small_fields, max_size=len(KERNEL_FIELDS), unique_by=lambda f: f.field)
_modes = st.none() | st.frozensets(st.integers(0, 3))
_alternatives = st.builds(Alternative, _alt_fields.map(tuple), _modes, st.none() | st.booleans()).filter(
    lambda a: bool(a.fields) or a.accmodes is not None or a.succeeded is not None  # none requiring nothing
)
interests = st.dictionaries(
    st.sampled_from(EVENT_TYPES), st.tuples(_field_lists, st.lists(_alternatives, max_size=2), st.booleans()),
    max_size=5,
).map(lambda d: {name: TypeInterest(name, tuple(fields), tuple(alts), fd_table)
                 for name, (fields, alts, fd_table) in d.items()})  # fmt: skip


def shape(interest: Mapping[str, TypeInterest]) -> dict[str, object]:
    """Order-free: the record sorts fields by name, and alternatives."""
    def alternative(a: Alternative) -> object:
        return frozenset(a.fields), a.accmodes, a.succeeded

    return {name: ({f.field: f for f in t.fields}, frozenset(map(alternative, t.alternatives)), t.fd_table)
            for name, t in interest.items()}  # fmt: skip


def passes(
    interest: Mapping[str, TypeInterest], event_type: str, values: Mapping[str, str],
    accmode: int = 0, succeeded: bool = True,
) -> bool:
    """Whether an event of that type with those field values, access mode and outcome passes."""
    def fields_pass(fields: tuple[FieldInterest, ...]) -> bool:
        return all(f.field not in values or f.admits(values[f.field]) for f in fields)

    def alternative_passes(a: Alternative) -> bool:
        return (fields_pass(a.fields) and (a.accmodes is None or accmode in a.accmodes)
                and a.succeeded in (None, succeeded))  # fmt: skip

    wanted = interest.get(event_type)
    if wanted is None or not fields_pass(wanted.fields):
        return False
    return not wanted.alternatives or any(alternative_passes(a) for a in wanted.alternatives)


def field(name: str = "fd.name", **kinds: frozenset[str]) -> FieldInterest:
    empty: frozenset[str] = frozenset()
    return FieldInterest(name, kinds.get("exact", empty), kinds.get("prefixes", empty),
                         kinds.get("suffixes", empty), kinds.get("contains", empty))  # fmt: skip


SHADOW = field(exact=frozenset({"/etc/shadow"}), prefixes=frozenset({"/etc/"}))
TAR = field("proc.name", exact=frozenset({"tar"}))
WRITES = Alternative((), frozenset({1, 2}), True)
SAMPLE = {"openat": TypeInterest("openat", (SHADOW,), (WRITES, Alternative((TAR,))), fd_table=True),
          "execve": TypeInterest("execve", ())}  # fmt: skip


def valid_doc() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(wire.encode(GROUP, REPLICA, SAMPLE, T).value)
    return doc


def decode_doc(doc: object, key: bytes = wire.key_of(GROUP, REPLICA)) -> wire.InterestRecord:
    return wire.decode(key, json.dumps(doc).encode())


@FAST
@given(interest=interests, time_ns=st.integers(0, 2**63 - 1),
       group=st.text(st.characters(categories=["L", "N", "P", "S"]), min_size=1, max_size=30),
       replica=st.from_regex(r"[A-Za-z0-9._-]{1,30}", fullmatch=True))
def test_a_record_reads_back_as_written(
    interest: dict[str, TypeInterest], time_ns: int, group: str, replica: str
) -> None:
    encoded = wire.encode(group, replica, interest, time_ns)
    record = wire.decode(encoded.key, encoded.value)
    assert (record.group, record.replica) == (group, replica)
    assert (record.time_ns, record.digest) == (time_ns, encoded.digest)
    assert shape(record.interest) == shape(interest)
    assert encoded.key == wire.key_of(group, replica) and wire.is_interest_key(encoded.key)
    # the time is not in the digest: replicas with the same rules agree
    assert encoded.digest == wire.encode(group, "other", interest, 0).digest


def test_the_sample_record_is_the_documented_json() -> None:
    doc = valid_doc()
    shadow = {"exact": ["/etc/shadow"], "prefixes": ["/etc/"], "suffixes": [], "contains": []}
    tar = {"exact": ["tar"], "prefixes": [], "suffixes": [], "contains": []}
    assert doc == {
        "v": 3, "group": GROUP, "replica": REPLICA, "time_ns": T, "digest": doc["digest"],
        "interest": {
            "execve": {"fields": {}, "alternatives": [], "fd_table": False},
            "openat": {"fields": {"fd.name": shadow}, "alternatives": [
                {"fields": {}, "accmodes": [1, 2], "succeeded": True},
                {"fields": {"proc.name": tar}, "accmodes": None, "succeeded": None},
            ], "fd_table": True},
        },
    }  # fmt: skip
    assert wire.key_of(GROUP, REPLICA) == b"interest/peregrine-worker/peregrine-worker-7d9f-x2x4q-1"


def test_a_version_2_record_reads_as_its_whole_group_reading_fd_types() -> None:
    """Written by a worker from before replicas: no replica, the group's key, and no fd_table (read
    as true: the rules may read fd.types); the digest as that worker computed it."""
    doc = valid_doc()
    del doc["replica"]
    doc["v"] = 2
    for body in doc["interest"].values():
        del body["fd_table"]
    doc["digest"] = hashlib.sha256(json.dumps(doc["interest"], sort_keys=True, separators=(",", ":"))
                                   .encode()).hexdigest()  # fmt: skip
    record = decode_doc(doc, GROUP_KEY)
    assert (record.group, record.replica) == (GROUP, None)
    assert shape(record.interest) == shape({n: replace(t, fd_table=True) for n, t in SAMPLE.items()})
    for key in (wire.key_of(GROUP, REPLICA), b"interest/other"):  # a version-2 record has the group's key
        with pytest.raises(InterestRecordError) as caught:
            decode_doc(doc, key)
        assert caught.value.field == "group"
    doc["replica"] = REPLICA
    with pytest.raises(InterestRecordError) as caught:
        decode_doc(doc, GROUP_KEY)
    assert caught.value.field == "replica"


def test_a_version_1_record_still_reads_as_fields_alone() -> None:
    """Written by a worker from before alternatives: the digest as that worker computed it, the
    SHA-256 of the interest's canonical JSON."""
    body = {"execve": {}, "openat": {"fd.name": {"exact": ["/etc/shadow"], "prefixes": ["/etc/"],
                                                 "suffixes": [], "contains": []}}}  # fmt: skip
    digest = hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    doc: dict[str, Any] = {"v": 1, "group": GROUP, "time_ns": T, "digest": digest, "interest": body}
    record = decode_doc(doc, GROUP_KEY)
    fields_alone = {"openat": TypeInterest("openat", (SHADOW,), fd_table=True),
                    "execve": TypeInterest("execve", (), fd_table=True)}  # fmt: skip
    assert record.interest == fields_alone
    assert record.digest == digest
    doc["interest"]["openat"] = {"fields": {}, "alternatives": []}  # version 2's shape in a version-1 record
    with pytest.raises(InterestRecordError) as caught:
        decode_doc(doc, GROUP_KEY)
    assert caught.value.field.startswith("interest/openat/")


@settings(max_examples=400, deadline=None)
@given(value=st.binary(max_size=400))
def test_random_bytes_raise_only_the_record_error(value: bytes) -> None:
    with pytest.raises(InterestRecordError):
        wire.decode(wire.key_of(GROUP, REPLICA), value)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(doc=_json)
def test_random_json_raises_only_the_record_error(doc: object) -> None:
    with pytest.raises(InterestRecordError):
        decode_doc(doc)


def _paths(doc: object, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = [path] if path else []
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, (*path, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _paths(v, (*path, str(i)))
    return out


def _replace(doc: Any, path: tuple[str, ...], value: object) -> None:
    *parents, last = path
    for p in parents:
        doc = doc[int(p)] if isinstance(doc, list) else doc[p]
    if isinstance(doc, list):
        doc[int(last)] = value
    else:
        doc[last] = value


@settings(max_examples=250, deadline=None)
@given(data=st.data(), value=_json)
def test_a_record_with_one_part_replaced_is_refused_naming_it(data: st.DataObject, value: object) -> None:
    doc = valid_doc()
    path = data.draw(st.sampled_from(_paths(doc)))
    before = json.dumps(doc, sort_keys=True)
    _replace(doc, path, value)
    assume(json.dumps(doc, sort_keys=True) != before)
    where = "/".join(path)
    try:
        decode_doc(doc)
    except InterestRecordError as exc:
        if path == ("v",) and value in wire.READABLE_VERSIONS:
            return  # another version this build reads: the rest is read as that version, and fails there
        # the part, something in it, or (a change to the interest that is still well-formed) its digest
        assert exc.field in (where, "digest") or exc.field.startswith(where + "/"), (where, exc.field)
    else:
        assert path == ("time_ns",), where  # the one part any other integer can stand for


@pytest.mark.parametrize(("change", "named"), [
    (lambda d: d.update(v=4), "v"),
    (lambda d: d.update(v=True), "v"),
    (lambda d: d.update(group="other"), "group"),
    (lambda d: d.update(group=""), "group"),
    (lambda d: d.update(replica="other"), "replica"),
    (lambda d: d.update(replica="a/b"), "replica"),
    (lambda d: d.pop("replica"), "replica"),
    (lambda d: d.update(time_ns=-1), "time_ns"),
    (lambda d: d.update(time_ns=2**63), "time_ns"),
    (lambda d: d.update(digest="0" * 64), "digest"),
    (lambda d: d.pop("digest"), "digest"),
    (lambda d: d.update(extra=1), "extra"),
    (lambda d: d["interest"].update({"Not A Type": {}}), "interest/Not A Type"),
    (lambda d: d["interest"]["openat"]["fields"]["fd.name"].pop("contains"),
     "interest/openat/fields/fd.name/contains"),
    (lambda d: d["interest"]["openat"]["fields"]["fd.name"].update(globs=[]),
     "interest/openat/fields/fd.name/globs"),
    (lambda d: d["interest"]["openat"]["fields"]["fd.name"]["exact"].append(7),
     "interest/openat/fields/fd.name/exact/1"),
    (lambda d: d["interest"]["openat"]["fields"]["fd.name"]["exact"].append("\ud800"),
     "interest/openat/fields/fd.name/exact/1"),
    (lambda d: d["interest"]["openat"].pop("alternatives"), "interest/openat/alternatives"),
    (lambda d: d["interest"]["openat"].pop("fd_table"), "interest/openat/fd_table"),
    (lambda d: d["interest"]["openat"].update(fd_table=1), "interest/openat/fd_table"),
    (lambda d: d["interest"]["openat"].update(alternatives={}), "interest/openat/alternatives"),
    (lambda d: d["interest"]["openat"]["alternatives"].append(None), "interest/openat/alternatives/2"),
    (lambda d: d["interest"]["openat"]["alternatives"][0].update(accmodes=[1, 4]),
     "interest/openat/alternatives/0/accmodes/1"),
    (lambda d: d["interest"]["openat"]["alternatives"][0].update(accmodes=[2, 1]),
     "interest/openat/alternatives/0/accmodes/1"),
    (lambda d: d["interest"]["openat"]["alternatives"][0].update(accmodes=[True]),
     "interest/openat/alternatives/0/accmodes/0"),
    (lambda d: d["interest"]["openat"]["alternatives"][0].update(accmodes=1),
     "interest/openat/alternatives/0/accmodes"),
    (lambda d: d["interest"]["openat"]["alternatives"][0].update(succeeded=1),
     "interest/openat/alternatives/0/succeeded"),
    (lambda d: d["interest"]["openat"]["alternatives"][1].pop("succeeded"),
     "interest/openat/alternatives/1/succeeded"),
    (lambda d: d["interest"]["openat"]["alternatives"][1]["fields"]["proc.name"].pop("exact"),
     "interest/openat/alternatives/1/fields/proc.name/exact"),
])  # fmt: skip
def test_each_malformed_part_is_named(change: Any, named: str) -> None:
    doc = valid_doc()
    change(doc)
    with pytest.raises(InterestRecordError) as caught:
        decode_doc(doc)
    assert caught.value.field == named
    assert named.split("/")[0] in str(caught.value)


def test_sizes_are_bounded_before_anything_is_parsed_deeply() -> None:
    key = wire.key_of(GROUP, REPLICA)
    for value, named in [
        (b"[" * 200_000, "value"),  # nesting past the parser's stack
        (b" " * (wire.MAX_RECORD_BYTES + 1), "value"),
        (b"\xff\xfe", "value"),
    ]:
        with pytest.raises(InterestRecordError) as caught:
            wire.decode(key, value)
        assert caught.value.field == named
    doc = valid_doc()
    doc["interest"]["openat"]["fields"]["fd.name"]["exact"] = [f"/x{i}" for i in range(MAX_VALUES + 1)]
    with pytest.raises(InterestRecordError, match="more than 4096 values") as caught:
        decode_doc(doc)
    assert caught.value.field == "interest/openat/fields/fd.name/exact"
    doc = valid_doc()
    doc["interest"]["openat"]["fields"]["fd.name"]["prefixes"] = ["/" * (wire.MAX_VALUE_BYTES + 1)]
    with pytest.raises(InterestRecordError, match="UTF-8 bytes or fewer"):
        decode_doc(doc)
    doc = valid_doc()
    doc["interest"] = {f"t{i}": {} for i in range(wire.MAX_TYPES + 1)}
    with pytest.raises(InterestRecordError) as caught:
        decode_doc(doc)
    assert caught.value.field == "interest"


def test_keys_name_group_and_replica_and_other_kinds_are_not_interest_records() -> None:
    assert wire.key_of("g/1", "r") == b"interest/g/1/r"  # a group may hold "/", a replica may not
    assert wire.is_interest_key(b"interest/g1/r") and wire.is_interest_key(b"interest/g1")
    assert not wire.is_interest_key(b"suppression/x") and not wire.is_interest_key(b"\xff")
    for group, replica, named in [("", "r", "group"), ("a\nb", "r", "group"), ("g" * 256, "r", "group"),
                                  ("g", "", "replica"), ("g", "a/b", "replica"), ("g", "r" * 129, "replica"),
                                  ("g", "pod é", "replica")]:  # fmt: skip
        with pytest.raises(InterestRecordError) as caught:
            wire.key_of(group, replica)
        assert caught.value.field == named
        with pytest.raises(InterestRecordError):
            wire.encode(group, replica, SAMPLE, T)
    value = wire.encode(GROUP, REPLICA, SAMPLE, T).value
    for key in (b"interest/other", GROUP_KEY, b"interest/peregrine-worker/other", b"nope/x", b"\xff"):
        with pytest.raises(InterestRecordError):
            wire.decode(key, value)


@given(host=st.text(max_size=300), pid=st.integers(0, 2**22))
def test_any_host_name_makes_a_replica_a_key_can_carry(host: str, pid: int) -> None:
    replica = wire.replica_name(host, pid)
    assert wire.key_of(GROUP, replica).endswith(f"-{pid}".encode())
    assert wire.replica_name("worker-7d9f-x2x4q", 1) == "worker-7d9f-x2x4q-1"  # a pod: its name, pid 1


_any_values = st.frozensets(st.text(max_size=6) | st.just("/" * (wire.MAX_VALUE_BYTES + 1)), max_size=3)
_fat_fields = st.builds(FieldInterest, st.sampled_from(KERNEL_FIELDS), _any_values, _any_values, _any_values,
                        _any_values)  # fmt: skip
_fat_alternatives = st.builds(
    Alternative, st.lists(_fat_fields, max_size=2).map(tuple), st.none() | st.frozensets(st.integers(0, 5)),
    st.none() | st.booleans(),
)
_fat = st.dictionaries(
    st.sampled_from(EVENT_TYPES[:4]),
    st.tuples(st.lists(_fat_fields, max_size=3), st.lists(_fat_alternatives, max_size=3)),
    max_size=4,
).map(lambda d: {name: TypeInterest(name, tuple(fields), tuple(alts)) for name, (fields, alts) in d.items()})


@FAST
@given(interest=_fat, event_type=st.sampled_from(EVENT_TYPES[:4]),
       values=st.dictionaries(st.sampled_from(KERNEL_FIELDS), st.text(max_size=8) | st.just("/" * 9000)),
       accmode=st.integers(0, 3), succeeded=st.booleans())  # fmt: skip
def test_what_does_not_fit_is_widened_never_narrowed(
    interest: dict[str, TypeInterest], event_type: str, values: dict[str, str], accmode: int, succeeded: bool
) -> None:
    """Fields with a value past the bound, a second constraint on one field, access modes no open
    has, and alternatives past their bound are dropped."""
    encoded = wire.encode(GROUP, REPLICA, interest, T)
    written = wire.decode(encoded.key, encoded.value).interest
    assert set(written) == set(interest)  # types are never dropped: that would narrow
    if passes(interest, event_type, values, accmode, succeeded):
        assert passes(written, event_type, values, accmode, succeeded)
    assert all(len(t.alternatives) <= MAX_ALTERNATIVES for t in written.values())


def test_a_record_past_its_size_drops_its_largest_constraints_first() -> None:
    many = frozenset(f"/very/long/path/{i:05d}/" + "x" * 150 for i in range(3000))
    big = field("fd.name", prefixes=many)
    small = field("proc.name", exact=frozenset({"bash"}))
    interest = {"openat": TypeInterest("openat", (big, small)), "open": TypeInterest("open", (big,))}
    encoded = wire.encode(GROUP, REPLICA, interest, T)
    assert len(encoded.value) <= wire.MAX_RECORD_BYTES
    written = wire.decode(encoded.key, encoded.value).interest
    # the large went, the small stayed
    assert shape(written)["openat"] == ({"proc.name": small}, frozenset(), False)
    assert set(written) == {"openat", "open"}


def test_a_record_past_its_size_may_leave_a_type_to_its_fields() -> None:
    many = frozenset(f"/very/long/path/{i:05d}/" + "x" * 150 for i in range(1500))
    alternatives = tuple(Alternative((field("fd.name", prefixes=many - {p}),), frozenset({m}))
                         for m, p in enumerate(sorted(many)[:4]))  # fmt: skip
    small = field("proc.name", exact=frozenset({"bash"}))
    encoded = wire.encode(GROUP, REPLICA, {"openat": TypeInterest("openat", (small,), alternatives)}, T)
    assert len(encoded.value) <= wire.MAX_RECORD_BYTES
    assert wire.decode(encoded.key, encoded.value).interest == {"openat": TypeInterest("openat", (small,))}


def test_alternatives_past_their_bound_leave_the_type_to_its_fields() -> None:
    names = (field("proc.name", exact=frozenset({f"p{i}"})) for i in range(MAX_ALTERNATIVES + 1))
    many = tuple(Alternative((name,)) for name in names)
    encoded = wire.encode(GROUP, REPLICA, {"openat": TypeInterest("openat", (SHADOW,), many)}, T)
    assert wire.decode(encoded.key, encoded.value).interest == {"openat": TypeInterest("openat", (SHADOW,))}
    doc = json.loads(encoded.value)
    doc["interest"]["openat"]["alternatives"] = [{"fields": {}, "accmodes": None, "succeeded": True}] * 65
    with pytest.raises(InterestRecordError, match="more than 64") as caught:
        decode_doc(doc)
    assert caught.value.field == "interest/openat/alternatives"


def test_the_digest_does_not_depend_on_the_order_of_alternatives() -> None:
    forth = TypeInterest("openat", (), (WRITES, Alternative((TAR,))))
    back = TypeInterest("openat", (), (Alternative((TAR,)), WRITES))
    assert wire.encode(GROUP, REPLICA, {"openat": forth}, T).value == \
        wire.encode(GROUP, REPLICA, {"openat": back}, T).value
