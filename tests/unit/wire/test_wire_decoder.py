"""The C wire decoder (`collectors.wire.Decoder`, wiredecode.c) against the reference `decode_batch`:
the same batch for every input the reference accepts, the same WireError for every one it refuses."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wire_strategies import batches, hostile_drops, hostile_fd_tables

from benchmarks.bench_worker import node_order, wire_batch
from benchmarks.workload import make_events
from collectors.wire import (
    DROP_CAUSES,
    MAX_BATCH_BYTES,
    MAX_DROP_COUNT,
    Batch,
    Decoder,
    Drops,
    WireError,
    decode_batch,
    encode_batch,
)
from rules.record import (
    EV_ARGS,
    EV_FD,
    EV_FDTYPES,
    EV_PROC,
    EVENT_PARAMS,
    FDTYPE_NAMES,
    MAX_FDTYPES_FDS,
    P_PARENT,
    SCHEMA_VERSION,
)

SLOW_OK = [HealthCheck.too_slow, HealthCheck.function_scoped_fixture]


@pytest.fixture(scope="module")
def decoder() -> Decoder:
    made = Decoder()
    assert made.native, "collectors/wiredecode.c is not built: run ./scripts/setup"
    return made


def _same(decoder: Decoder, data: bytes) -> Batch | None:
    """Decode with both; assert they agree (equal batches, or the same error); the batch if any."""
    try:
        expected = decode_batch(data)
    except WireError as exc:
        with pytest.raises(WireError) as info:
            decoder.decode(data)
        assert (info.value.reason, info.value.detail) == (exc.reason, exc.detail)
        return None
    got = decoder.decode(data)
    assert got == expected
    for a, b in zip(got.procs, expected.procs, strict=True):  # references resolved the same way
        assert (a[P_PARENT] is None) == (b[P_PARENT] is None)
        if a[P_PARENT] is not None:
            assert got.procs.index(a[P_PARENT]) == expected.procs.index(b[P_PARENT])
    for a, b in zip(got.events, expected.events, strict=True):
        assert any(a[EV_PROC] is p for p in got.procs)
        assert got.procs.index(a[EV_PROC]) == expected.procs.index(b[EV_PROC])
    return got


@given(batches())
@settings(max_examples=200, suppress_health_check=SLOW_OK)
def test_valid_batches_decode_as_the_reference_does(decoder: Decoder, batch: Batch) -> None:
    assert _same(decoder, encode_batch(batch)) is not None


@given(batches(), st.data())
@settings(max_examples=400, suppress_health_check=SLOW_OK)
def test_mutated_batches_decode_or_fail_as_the_reference_does(
    decoder: Decoder, batch: Batch, data: st.DataObject
) -> None:
    raw = bytearray(encode_batch(batch))
    for _ in range(data.draw(st.integers(min_value=1, max_value=4))):
        pos = data.draw(st.integers(min_value=0, max_value=len(raw) - 1))
        raw[pos] = data.draw(st.integers(min_value=0, max_value=255))
    _same(decoder, bytes(raw[: data.draw(st.integers(min_value=0, max_value=len(raw)))]))


@given(st.binary(max_size=512))
@settings(max_examples=2000, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_fuzzed_bytes_fail_as_the_reference_does(decoder: Decoder, data: bytes) -> None:
    _same(decoder, data)


def _envelope(**fields: object) -> dict[str, object]:
    base: dict[str, object] = {"v": SCHEMA_VERSION, "node": "n", "boot_id": "b", "seq": 1, "t_first": 0,
                               "t_last": 0, "procs": [], "events": []}  # fmt: skip
    return {**base, **fields}


def test_workload_batches_decode_as_the_reference_does(decoder: Decoder) -> None:
    events = node_order(make_events(4000, seed=3))
    for i in range(0, len(events), 500):
        assert _same(decoder, wire_batch(events[i : i + 500], "node-1", i)) is not None


@pytest.mark.parametrize(
    "fields",
    [
        {"v": True},  # True == 1: the reference accepts it as version 1
        {"extra": 1},  # unknown envelope keys are ignored
        {"procs": [[None] * 29]},
        {"events": [{"a": 1}]},
        {"node": ""},
        {"node": "\udcff"},  # not encodable: packed as bytes below
        {"seq": 2**64 - 1},
        {"seq": 1.5},
    ],
    ids=repr,
)
def test_odd_envelopes_agree_with_the_reference(decoder: Decoder, fields: dict[str, object]) -> None:
    try:
        data = msgpack.packb(_envelope(**fields), use_bin_type=True)
    except UnicodeEncodeError:
        data = msgpack.packb(_envelope(node=b"\xff"), use_bin_type=True)
    _same(decoder, data)


@given(hostile_drops, st.booleans())
@settings(max_examples=1500, suppress_health_check=SLOW_OK)
def test_hostile_drops_decode_or_fail_as_the_reference_does(
    decoder: Decoder, drops: object, reordered: bool
) -> None:
    envelope = _envelope(drops=drops)
    if reordered:  # "drops" first, where the C pass meets it before the required keys
        envelope = dict(reversed(list(envelope.items())))
    try:
        data = msgpack.packb(envelope, use_bin_type=True)
    except (UnicodeEncodeError, OverflowError, TypeError, ValueError):
        return  # not packable: no collector could send it
    got = _same(decoder, data)
    if got is not None:  # accepted: exactly the valid shape
        assert type(drops) is list and len(drops) == 2 + len(DROP_CAUSES)
        assert 0 <= drops[0] <= drops[1] and all(0 <= n <= MAX_DROP_COUNT for n in drops[2:])
        assert got.drops == (Drops(drops[0], drops[1], tuple(drops[2:])) if any(drops[2:]) else None)


def _one_event(*tail: object) -> dict[str, object]:
    """An envelope of one execve event ending with `tail` after EV_NUM."""
    proc: list[object] = [None] * 30
    proc[P_PARENT] = -1
    return _envelope(procs=[proc], events=[[0, 1, 2, 0, 0, [None] * len(EVENT_PARAMS[0]), None, 1, *tail]])


@given(hostile_fd_tables)
@settings(max_examples=1500, suppress_health_check=SLOW_OK)
def test_hostile_fd_tables_decode_or_fail_as_the_reference_does(decoder: Decoder, table: object) -> None:
    try:
        data = msgpack.packb(_one_event(table), use_bin_type=True)
    except (UnicodeEncodeError, OverflowError, TypeError, ValueError):
        return  # not packable: no collector could send it
    got = _same(decoder, data)
    if got is not None:  # accepted: exactly the valid shape
        if table is not None:
            assert isinstance(table, bytes) and len(table) <= MAX_FDTYPES_FDS
            assert max(table, default=0) <= len(FDTYPE_NAMES)
        assert got.events[0][EV_FDTYPES] == table


@pytest.mark.parametrize(
    "table",
    [b"\x01" * (MAX_FDTYPES_FDS + 1), bytes([1, len(FDTYPE_NAMES) + 1]), [1, 2], "file", 3, True],
    ids=repr,
)
def test_hostile_fd_tables_are_refused_with_a_clear_error(decoder: Decoder, table: object) -> None:
    data = msgpack.packb(_one_event(table), use_bin_type=True)
    for decode in (decode_batch, decoder.decode):
        with pytest.raises(WireError) as info:
            decode(data)
        assert info.value.reason == "bad event record"
        expected = f"events[0] fd types must be null or at most {MAX_FDTYPES_FDS} bytes"
        assert info.value.detail.startswith(expected)


def test_fd_tables_absent_null_and_present(decoder: Decoder) -> None:
    """An event written before EV_FDTYPES existed decodes unchanged (not captured), as null does."""
    for tail, want in (((), None), ((None,), None), ((b"",), b""), ((b"\x01\x00\x03",), b"\x01\x00\x03")):
        got = _same(decoder, msgpack.packb(_one_event(*tail), use_bin_type=True))
        assert got is not None
        ev = got.events[0]
        assert (ev[EV_FDTYPES] if len(ev) > EV_FDTYPES else None) == want
    one_more = msgpack.packb(_one_event(None, None), use_bin_type=True)
    with pytest.raises(WireError, match="must be an array of 9"):
        decode_batch(one_more)


_TOO_MANY = [0, 1, MAX_DROP_COUNT + 1, 0, 0, 0, 0, 0]


@pytest.mark.parametrize(
    ("drops", "detail"),
    [
        (None, "drops must be an array of 8 integers"),
        ([0, 1, 2], "drops must be an array of 8 integers"),
        ([0, 1, 1, 0, 0, 0, 0, 0, 0], "drops must be an array of 8 integers"),
        ([0, 1, True, 0, 0, 0, 0, 0], "drops must be an array of 8 integers"),
        ([0, 1, 1.0, 0, 0, 0, 0, 0], "drops must be an array of 8 integers"),
        ({"ring_full": 1}, "drops must be an array of 8 integers"),
        ([5, 4, 1, 0, 0, 0, 0, 0], "drops window 5..4 is not 0 <= first <= last"),
        ([-1, 4, 1, 0, 0, 0, 0, 0], "drops window -1..4 is not 0 <= first <= last"),
        ([0, 2**64 - 1, 1, 0, 0, 0, 0, 0], f"drops window 0..{2**64 - 1} is not 0 <= first <= last"),
        (_TOO_MANY, f"drops counts must be 0..{MAX_DROP_COUNT}"),
        ([0, 1, 0, 0, 0, 0, 0, -1], f"drops counts must be 0..{MAX_DROP_COUNT}"),
        ([0, 1, 2**64 - 1, 0, 0, 0, 0, 0], f"drops counts must be 0..{MAX_DROP_COUNT}"),
    ],
    ids=repr,
)
def test_hostile_drops_are_refused_with_the_same_error(decoder: Decoder, drops: object, detail: str) -> None:
    data = msgpack.packb(_envelope(drops=drops), use_bin_type=True)
    for decode in (decode_batch, decoder.decode):
        with pytest.raises(WireError) as info:
            decode(data)
        assert (info.value.reason, info.value.detail) == ("bad envelope field", detail)


def test_drops_absent_zero_and_present(decoder: Decoder) -> None:
    plain = msgpack.packb(_envelope(), use_bin_type=True)
    zero = msgpack.packb(_envelope(drops=[1, 2, 0, 0, 0, 0, 0, 0]), use_bin_type=True)
    some = msgpack.packb(_envelope(drops=[10, 20, 3, 0, 0, 4, 5, 0]), use_bin_type=True)
    assert decoder.decode(plain).drops is None and decode_batch(plain).drops is None
    assert decoder.decode(zero).drops is None  # nothing lost: as if absent
    got = _same(decoder, some)
    assert got is not None and got.drops == Drops(10, 20, (3, 0, 0, 4, 5, 0))
    assert got.drops.lost == 3 + 5  # page-fault reads lose a field, not an event
    assert got.drops.by_cause()["page_fault_reads"] == 4


def test_keys_in_another_order_and_maps_inside_records(decoder: Decoder) -> None:
    proc = [None] * 30
    proc[P_PARENT] = -1
    proc[3] = {"nested": ["map"]}  # not in the contract's records today, but the reference decodes it
    ev = [0, 1, 2, 0, 0, [None] * len(EVENT_PARAMS[0]), None, 1]
    reordered = dict(reversed(list(_envelope(procs=[proc], events=[ev]).items())))
    data = msgpack.packb(reordered, use_bin_type=True)
    got = _same(decoder, data)
    assert got is not None and got.procs[0][3] == {"nested": ["map"]}


def test_oversized_and_non_bytes_input(decoder: Decoder) -> None:
    with pytest.raises(WireError, match="batch too large"):
        decoder.decode(b"\x00" * (MAX_BATCH_BYTES + 1))
    with pytest.raises(WireError, match="not bytes"):
        decoder.decode("text")  # type: ignore[arg-type]
    assert _same(decoder, b"\x91" * 100_000 + b"\xc0") is None


def test_strings_are_shared_within_and_across_batches(decoder: Decoder) -> None:
    events = make_events(1000, seed=5)
    data = wire_batch(events[:500], "node-1", 1)
    hits_before, _ = decoder.cache_counts()
    first, second = decoder.decode(data), decoder.decode(data)
    opens = [e for e in first.events if e[EV_FD] is not None and isinstance(e[EV_FD][2], str) and
             e[EV_FD][2].startswith("/") and e[EV_FD][2] == e[EV_FD][3]]  # fmt: skip
    assert opens, "the workload has opens with absolute paths"
    assert all(e[EV_FD][2] is e[EV_FD][3] for e in opens)  # fd.name and fd.nameraw: one object
    assert first.events[0][EV_ARGS] == second.events[0][EV_ARGS]
    assert first.events[0][EV_ARGS] is not second.events[0][EV_ARGS]  # lists are never shared
    assert decoder.cache_counts()[0] > hits_before
    assert first == decode_batch(data)
