"""The event contract: round trips, and malformed input never escapes as anything but WireError."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wire_strategies import batches

from collectors.wire import MAX_BATCH_BYTES, Batch, WireError, decode_batch, encode_batch
from rules.record import (
    EV_PROC,
    EVENT_PARAMS,
    EVENT_TYPES,
    P_NAME,
    P_PARENT,
    PROCESS_LEN,
    SCHEMA_VERSION,
)


def _unresolve(batch: Batch) -> tuple[list[list[object]], list[list[object]]]:
    """Turn decoded references back into indexes, to compare with what was encoded."""
    index = {id(p): i for i, p in enumerate(batch.procs)}
    procs = [
        [*p[:P_PARENT], -1 if p[P_PARENT] is None else index[id(p[P_PARENT])], *p[P_PARENT + 1 :]]
        for p in batch.procs
    ]
    events = [[*e[:EV_PROC], index[id(e[EV_PROC])], *e[EV_PROC + 1 :]] for e in batch.events]
    return procs, events


@given(batches())
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_round_trip_preserves_every_field(batch: Batch) -> None:
    import copy

    original = copy.deepcopy(batch)
    decoded = decode_batch(encode_batch(batch))
    assert (decoded.node, decoded.boot_id, decoded.seq, decoded.t_first, decoded.t_last, decoded.v,
            decoded.drops) == (
        original.node, original.boot_id, original.seq, original.t_first, original.t_last, SCHEMA_VERSION,
        original.drops,
    )
    procs, events = _unresolve(decoded)
    assert procs == original.procs
    assert events == original.events


def test_decode_resolves_process_and_parent_references() -> None:
    parent = [None] * PROCESS_LEN
    parent[P_PARENT], parent[P_NAME] = -1, "containerd-shim"
    child = [None] * PROCESS_LEN
    child[P_PARENT], child[P_NAME] = 0, "bash"
    ev = [0, 1, 42, 1, 0, [None] * len(EVENT_PARAMS[0]), None, 1]
    decoded = decode_batch(encode_batch(Batch("node-a", "boot", 7, 1, 1, [parent, child], [ev])))
    proc = decoded.events[0][EV_PROC]
    assert proc[P_NAME] == "bash"
    assert proc[P_PARENT][P_NAME] == "containerd-shim"
    assert proc[P_PARENT][P_PARENT] is None


def _envelope(**changes: object) -> dict[str, object]:
    p = [None] * PROCESS_LEN
    p[P_PARENT] = -1
    env: dict[str, object] = {
        "v": SCHEMA_VERSION, "node": "n", "boot_id": "b", "seq": 1, "t_first": 0, "t_last": 0,
        "procs": [p], "events": [[0, 0, 1, 0, 0, [None] * len(EVENT_PARAMS[0]), None, 1]],
    }
    env.update(changes)
    return env


def _bad_proc(**slots: object) -> list[object]:
    p: list[object] = [None] * PROCESS_LEN
    p[P_PARENT] = -1
    for k, v in slots.items():
        p[int(k[1:])] = v
    return p


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "malformed msgpack"),
        (b"\xc1", "malformed msgpack"),
        (msgpack.packb(_envelope())[:-3], "malformed msgpack"),
        (msgpack.packb(_envelope()) + b"\x00", "trailing bytes"),
        (msgpack.packb([1, 2, 3]), "envelope is not a map"),
        (msgpack.packb(_envelope(v=SCHEMA_VERSION + 1)), "unsupported schema version"),
        (msgpack.packb(_envelope(v="1")), "unsupported schema version"),
        (msgpack.packb({k: v for k, v in _envelope().items() if k != "seq"}), "missing envelope field"),
        (msgpack.packb(_envelope(node="")), "bad envelope field"),
        (msgpack.packb(_envelope(seq="7")), "bad envelope field"),
        (msgpack.packb(_envelope(procs={})), "bad envelope field"),
        (msgpack.packb(_envelope(events=None)), "bad envelope field"),
        (msgpack.packb(_envelope(procs=[[None] * (PROCESS_LEN - 1)])), "bad process record"),
        (msgpack.packb(_envelope(procs=[_bad_proc(s28="meta")])), "bad process record"),
        (msgpack.packb(_envelope(procs=[_bad_proc(s27=5)])), "bad process reference"),
        (msgpack.packb(_envelope(procs=[_bad_proc(s27=0)])), "bad process reference"),
        (msgpack.packb(_envelope(procs=[_bad_proc(s27=1), _bad_proc(s27=0)])), "bad process reference"),
        (msgpack.packb(_envelope(events=[[0, 0, 1, 3, 0, [], None, 1]])), "bad process reference"),
        (msgpack.packb(_envelope(events=[[0, 0, 1, "0", 0, [], None, 1]])), "bad process reference"),
        (msgpack.packb(_envelope(events=[[len(EVENT_TYPES), 0, 1, 0, 0, [], None, 1]])),
         "unknown event type"),
        (msgpack.packb(_envelope(events=[[0, 0, 1, 0]])), "bad event record"),
        (msgpack.packb(_envelope(events=[[0, 0, 1, 0, 0, [1], None, 1]])), "bad event record"),
        (msgpack.packb(_envelope(events=[[0, 0, 1, 0, 0, None, None, 1]])), "bad event record"),
        (msgpack.packb(_envelope(events=[{"type": 0}])), "bad event record"),
        (msgpack.packb({1: 2}), "malformed msgpack"),  # strict_map_key: only str/bytes keys
        (b"\xa3\xff\xfe\xfd", "malformed msgpack"),  # invalid UTF-8 in a str
    ],
)
def test_malformed_batches_raise_wire_error_with_reason(data: bytes, reason: str) -> None:
    with pytest.raises(WireError) as info:
        decode_batch(data)
    assert info.value.reason == reason


def test_oversized_batch_is_refused_before_unpacking() -> None:
    with pytest.raises(WireError, match="batch too large"):
        decode_batch(b"\x00" * (MAX_BATCH_BYTES + 1))


def test_non_bytes_input_is_a_wire_error() -> None:
    with pytest.raises(WireError, match="not bytes"):
        decode_batch("text")  # type: ignore[arg-type]


@given(st.binary(max_size=512))
@settings(max_examples=2000)
def test_fuzzed_bytes_raise_only_wire_error(data: bytes) -> None:
    try:
        decode_batch(data)
    except WireError:
        pass


@given(batches(), st.data())
@settings(max_examples=350, suppress_health_check=[HealthCheck.too_slow])
def test_mutated_valid_batches_raise_only_wire_error(batch: Batch, data: st.DataObject) -> None:
    raw = bytearray(encode_batch(batch))
    for _ in range(data.draw(st.integers(min_value=1, max_value=4))):
        pos = data.draw(st.integers(min_value=0, max_value=len(raw) - 1))
        raw[pos] = data.draw(st.integers(min_value=0, max_value=255))
    cut = data.draw(st.integers(min_value=0, max_value=len(raw)))
    try:
        decode_batch(bytes(raw[:cut]))
    except WireError:
        pass


def test_deeply_nested_input_is_a_wire_error_not_a_crash() -> None:
    with pytest.raises(WireError):
        decode_batch(b"\x91" * 100_000 + b"\xc0")


def test_a_batch_without_drops_encodes_as_before_the_key_existed() -> None:
    """Old workers and captures: no drops, no key, the same bytes as the eight-key envelope."""
    batch = Batch("node-a", "boot", 7, 1, 2, [], [])
    old = msgpack.packb({"v": SCHEMA_VERSION, "node": "node-a", "boot_id": "boot", "seq": 7, "t_first": 1,
                         "t_last": 2, "procs": [], "events": []}, use_bin_type=True)  # fmt: skip
    assert encode_batch(batch) == old
    assert decode_batch(old).drops is None


def test_drop_causes_are_the_stats_categories() -> None:
    from collectors import stats, wire

    assert wire.DROP_CAUSES == stats.CATEGORIES
    assert wire.LOST_CAUSES == stats.LOST_CATEGORIES
