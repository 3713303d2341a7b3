"""`streams.fetchbound`: the worker's codecs decompress what aiokafka's do, up to the bound, and refuse
past it without decompressing a bomb whole; a refused batch reaches the agent as one record carrying
the reason, at the batch's first offset, and the batches around it are untouched.

The oracle is aiokafka's own codecs (`aiokafka.codec`, which `install` leaves alone) and its own record
batch builder and fetcher classes, so these tests also fail if an aiokafka upgrade moves what
`install` patches."""

from __future__ import annotations

import resource
import subprocess
import sys
from collections.abc import Callable

import pytest
from aiokafka import codec
from aiokafka.consumer.fetcher import PartitionRecords
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.record.memory_records import MemoryRecords
from aiokafka.structs import TopicPartition
from hypothesis import given, settings
from hypothesis import strategies as st

from streams import fetchbound
from streams.errors import DecompressionRefused
from streams.fetchbound import MAX_BATCH_DECOMPRESSED, REFUSED_HEADER

Codec = Callable[[bytes], bytes]
CODECS: dict[str, tuple[int, Codec, Codec, Codec]] = {
    # name: (Kafka's attribute bits, aiokafka's encoder, aiokafka's decoder, ours)
    "gzip": (1, codec.gzip_encode, codec.gzip_decode, fetchbound.gzip_decode),
    "snappy": (2, codec.snappy_encode, codec.snappy_decode, fetchbound.snappy_decode),
    "lz4": (3, codec.lz4_encode, codec.lz4_decode, fetchbound.lz4_decode),
    "zstd": (4, codec.zstd_encode, codec.zstd_decode, fetchbound.zstd_decode),
}


def _raw_snappy(payload: bytes) -> bytes:
    return codec.snappy_encode(payload, xerial_compatible=False)


@settings(max_examples=60, deadline=None)
@given(
    name=st.sampled_from(sorted(CODECS)),
    payload=st.binary(min_size=1, max_size=200_000) | st.just(b"\x00" * 300_000),
)
def test_decodes_what_aiokafka_decodes(name: str, payload: bytes) -> None:
    """Non-empty: a record batch is never empty, and aiokafka cannot read its own xerial b"" back."""
    _, encode, theirs, ours = CODECS[name]
    compressed = encode(payload)
    assert ours(compressed) == theirs(compressed) == payload
    if name == "snappy":
        assert ours(_raw_snappy(payload)) == payload


@settings(max_examples=200, deadline=None)
@given(name=st.sampled_from(sorted(CODECS)), junk=st.binary(max_size=4096))
def test_hostile_bytes_decode_or_are_refused(name: str, junk: bytes) -> None:
    """Whatever a node puts in a batch, the codec returns bytes within the bound or refuses it."""
    try:
        out = CODECS[name][3](junk)
    except DecompressionRefused:
        return
    assert len(out) <= MAX_BATCH_DECOMPRESSED


@pytest.mark.parametrize("name", sorted(CODECS))
def test_just_past_the_bound_is_refused_and_at_it_is_not(name: str) -> None:
    _, encode, _, ours = CODECS[name]
    assert len(ours(encode(b"\x00" * MAX_BATCH_DECOMPRESSED))) == MAX_BATCH_DECOMPRESSED
    with pytest.raises(DecompressionRefused, match=name):
        ours(encode(b"\x00" * (MAX_BATCH_DECOMPRESSED + 1)))


_BOMB_CHILD = """
import resource, sys
from aiokafka import codec
from streams import fetchbound
name = sys.argv[1]
bomb = {"zstd": codec.zstd_encode, "gzip": codec.gzip_encode}[name](bytes(1 << 30))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    getattr(fetchbound, name + "_decode")(bomb)
except fetchbound.DecompressionRefused:
    print(len(bomb), before, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


@pytest.mark.parametrize("name", ["zstd", "gzip"])
def test_a_one_gigabyte_bomb_is_refused_without_being_decompressed(name: str) -> None:
    """In a fresh process (peak memory is per process): a 1 GiB bomb, a few KB compressed, is refused
    and the peak resident memory grows by about the bound's buffer, not by the gigabyte."""
    done = subprocess.run([sys.executable, "-c", _BOMB_CHILD, name], capture_output=True, text=True,
                          timeout=300, check=True)  # fmt: skip
    size, before_kb, after_kb = map(int, done.stdout.split())
    assert size < 2_000_000
    assert (after_kb - before_kb) * 1024 < 2 * MAX_BATCH_DECOMPRESSED, (before_kb, after_kb)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss > 0


def _batch(offset: int, values: list[bytes], compression: int) -> bytes:
    builder = DefaultRecordBatchBuilder(2, compression, 0, -1, -1, -1, 64 * 1024 * 1024)
    for i, value in enumerate(values):
        builder.append(i, 1_700_000_000_000, b"node-a", value, [])
    raw = bytearray(builder.build())
    raw[0:8] = offset.to_bytes(8, "big")  # the base offset, as the broker assigns it
    return bytes(raw)


def _fetched(data: bytes, fetch_offset: int) -> list[tuple[int, bytes | None, tuple[tuple[str, bytes], ...]]]:
    records = PartitionRecords(TopicPartition("peregrine.events", 0), MemoryRecords(data), [], fetch_offset,
                               None, None, False, 0)  # fmt: skip
    return [(r.offset, r.value, tuple(r.headers)) for r in records]


def test_a_refused_batch_is_one_record_with_the_reason_between_untouched_batches() -> None:
    fetchbound.install()
    fetchbound.install()  # idempotent
    bomb = b"\x00" * (MAX_BATCH_DECOMPRESSED + 1)
    data = (_batch(10, [b"first", b"second"], 4) + _batch(12, [bomb, b"more"], 4)
            + _batch(14, [b"after"], 3))  # fmt: skip
    got = _fetched(data, 10)
    assert [(o, v) for o, v, _ in got] == [(10, b"first"), (11, b"second"), (12, b""), (14, b"after")]
    assert got[0][2] == got[1][2] == got[3][2] == ()
    ((header, reason),) = got[2][2]
    assert header == REFUSED_HEADER and fetchbound.refused(got[2][2]) == reason.decode()
    assert reason.startswith(b"zstd: ") and str(MAX_BATCH_DECOMPRESSED).encode() in reason
    # a fetch from inside the refused batch (the broker returns the batches from the one holding it)
    # gets the reference at the first unread offset
    inside = _batch(12, [bomb, b"more"], 4) + _batch(14, [b"after"], 3)
    assert [(o, v) for o, v, _ in _fetched(inside, 13)] == [(13, b""), (14, b"after")]


def test_refused_reads_faust_header_lists_and_maps() -> None:
    assert fetchbound.refused(None) is None
    assert fetchbound.refused([("other", b"x")]) is None
    assert fetchbound.refused([(REFUSED_HEADER, b"why")]) == "why"
    assert fetchbound.refused({REFUSED_HEADER: b"why"}) == "why"


def test_a_fetch_hands_out_at_most_the_bound_then_is_fetched_again() -> None:
    """Records of 6 MB each: the generator ends after the one that reaches the bound, and its next
    fetch offset is the record after it, where aiokafka fetches again."""
    fetchbound.install()
    six = b"\x01" * 6_000_000
    data = b"".join(_batch(i, [six], 4) for i in range(5))
    records = PartitionRecords(TopicPartition("peregrine.events", 0), MemoryRecords(data), [], 0,
                               None, None, False, 0)  # fmt: skip
    got = [r.offset for r in records]
    handed = -(-MAX_BATCH_DECOMPRESSED // len(six))  # the first count of records that reaches it
    assert got == list(range(handed))
    assert records.next_fetch_offset == handed
