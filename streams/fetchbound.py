"""A fetched record batch is decompressed with a bound, and one over it becomes a dead letter.

aiokafka decompresses each record batch whole, before any of our checks: a node's 30 KB zstd batch of
zeros decompresses to 1 GB in the worker, and the wire's size check (`collectors.wire`) comes too late.
Here the codecs aiokafka calls are replaced by ones that stop at `MAX_BATCH_DECOMPRESSED` (cramjam's
`decompress_into` a fixed buffer fails as soon as the output would overflow it; zlib is given a
`max_length`; raw snappy declares its length up front). A refused batch does not raise into the
fetcher (a raise would refetch the same batch forever, or stop the consumer): its records are replaced
by one empty record at its first unread offset whose header `REFUSED_HEADER` holds the reason, so the
agent dead-letters a reference to it and the partition moves on (`streams.detect.handle_message`).

This leans on aiokafka's internals (module-level codec names, `PartitionRecords(tp, records, ...)`),
checked by tests/unit/worker/test_fetchbound.py against the installed version.
"""

from __future__ import annotations

import struct
import threading
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final

import cramjam
from aiokafka.consumer import fetcher as aiokafka_fetcher
from aiokafka.record import default_records, legacy_records
from aiokafka.record._crecords import default_records as c_default_records
from aiokafka.record._crecords import legacy_records as c_legacy_records
from aiokafka.structs import ConsumerRecord

from bus import topics as catalog
from streams.errors import DecompressionRefused

# A batch of records holds our one message (at most MAX_DECOMPRESSED_BYTES, which collectors.wire
# checks exactly) or a few small ones: this leaves room for the record framing and a neighbour.
MAX_BATCH_DECOMPRESSED: Final = catalog.MAX_DECOMPRESSED_BYTES + catalog.MAX_MESSAGE_BYTES
REFUSED_HEADER: Final = "peregrine.fetch.refused"
REFUSED_REASON: Final = "batch too large decompressed"

_XERIAL_MAGIC: Final = b"\x82SNAPPY\x00"
_XERIAL_HEADER: Final = 16


_buffers = threading.local()  # one output buffer per thread: Faust fetches in its own thread


def _buffer() -> bytearray:
    buf: bytearray | None = getattr(_buffers, "buf", None)
    if buf is None:
        buf = _buffers.buf = bytearray(MAX_BATCH_DECOMPRESSED + 1)
    return buf


def _refused(codec: str, payload: bytes, why: str = "") -> DecompressionRefused:
    text = f"{codec}: {len(payload)} bytes decompress past {MAX_BATCH_DECOMPRESSED}"
    return DecompressionRefused(f"{text} or are corrupt ({why})" if why else text)


def _into(decompress_into: Callable[[bytes, bytearray], int], codec: str) -> Callable[[bytes], bytes]:
    def decode(payload: bytes) -> bytes:
        buf = _buffer()
        try:
            n = decompress_into(bytes(payload), buf)
        except cramjam.DecompressionError as exc:  # the buffer is full, or the data corrupt
            raise _refused(codec, payload, str(exc)[:200]) from None
        if n > MAX_BATCH_DECOMPRESSED:
            raise _refused(codec, payload)
        return bytes(memoryview(buf)[:n])

    return decode


zstd_decode: Final = _into(cramjam.zstd.decompress_into, "zstd")
lz4_decode: Final = _into(cramjam.lz4.decompress_into, "lz4")


def gzip_decode(payload: bytes) -> bytes:
    """Every gzip member, as aiokafka's reader takes them, up to the bound."""
    out: list[bytes] = []
    size, data = 0, bytes(payload)
    while data:
        member = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            chunk = member.decompress(data, MAX_BATCH_DECOMPRESSED + 1 - size)
        except zlib.error as exc:
            raise _refused("gzip", payload, str(exc)[:200]) from None
        size += len(chunk)
        if size > MAX_BATCH_DECOMPRESSED or member.unconsumed_tail:
            raise _refused("gzip", payload)
        if not member.eof:
            raise _refused("gzip", payload, "the data ends inside a member")
        out.append(chunk)
        data = member.unused_data
    return b"".join(out)


def snappy_decode(payload: bytes) -> bytes:
    """Raw snappy, or Kafka's xerial framing of raw blocks; each block declares its length first."""
    data = bytes(payload)
    if not data.startswith(_XERIAL_MAGIC):
        return _snappy_blocks([data])
    blocks, cursor = [], _XERIAL_HEADER
    while cursor + 4 <= len(data):
        (length,) = struct.unpack_from("!i", data, cursor)
        if length < 0 or cursor + 4 + length > len(data):
            raise _refused("snappy", payload, "a block runs past the data")
        blocks.append(data[cursor + 4 : cursor + 4 + length])
        cursor += 4 + length
    return _snappy_blocks(blocks)


def _snappy_blocks(blocks: list[bytes]) -> bytes:
    try:
        declared = sum(cramjam.snappy.decompress_raw_len(b) for b in blocks)
    except cramjam.DecompressionError as exc:
        raise DecompressionRefused(f"snappy: {str(exc)[:200]}") from None
    if declared > MAX_BATCH_DECOMPRESSED:
        raise DecompressionRefused(f"snappy: declares {declared} bytes, past {MAX_BATCH_DECOMPRESSED}")
    try:
        return b"".join(bytes(cramjam.snappy.decompress_raw(b)) for b in blocks)
    except cramjam.DecompressionError as exc:
        raise DecompressionRefused(f"snappy: {str(exc)[:200]}") from None


@dataclass(frozen=True, slots=True)
class _RefusedRecord:
    """What aiokafka reads of a record (`Fetcher._consumer_record`), for a refused batch."""

    offset: int
    timestamp: int
    headers: tuple[tuple[str, bytes], ...]
    timestamp_type: int = 0
    key: bytes | None = None
    value: bytes = b""
    checksum: None = None


class _Records:
    """A fetch response's batches, remembering the last one handed out: the one a refusal is about."""

    __slots__ = ("_records", "last")

    def __init__(self, records: object) -> None:
        self._records = records
        self.last: object = None

    def __getattr__(self, name: str) -> object:
        return getattr(self._records, name)

    def has_next(self) -> bool:
        return bool(self._records.has_next())  # type: ignore[attr-defined]

    def next_batch(self) -> object:
        self.last = batch = self._records.next_batch()  # type: ignore[attr-defined]
        return batch


_Unpack = Callable[[Any], Iterator["ConsumerRecord[Any, Any]"]]


def _unpack_bounded(unpack: _Unpack) -> _Unpack:
    """aiokafka's record generator, resumed after a refused batch (a refusal ends that generator, and
    a fresh one goes on from the next batch: the batches' cursor is the response's), and ended once
    it has handed out `MAX_BATCH_DECOMPRESSED` bytes of values: aiokafka then fetches again from the
    next record. Without that end, the consumer thread decompresses up to 64 records per hand-over
    (`streams.app`), 64 x 16 MB, before the worker's byte budget (`streams.fetchbudget`) sees one."""

    def unpack_records(self: Any) -> Iterator[ConsumerRecord[Any, Any]]:
        handed = 0
        while True:
            try:
                for record in unpack(self):
                    yield record
                    handed += record.serialized_value_size
                    if handed >= MAX_BATCH_DECOMPRESSED:
                        return
                return
            except DecompressionRefused as exc:
                batch = self._records.last
                # format v2 (every Kafka 4 write) has a base offset; a legacy one's first is unread
                unread = max(getattr(batch, "base_offset", 0), self.next_fetch_offset)
                record = _RefusedRecord(unread, getattr(batch, "first_timestamp", -1),
                                        ((REFUSED_HEADER, str(exc).encode()),))  # fmt: skip
                yield self._consumer_record(self._tp, record)
                self.next_fetch_offset = max(batch.next_offset, unread + 1)

    return unpack_records


def refused(headers: object) -> str | None:
    """The reason a fetched message stands for a refused batch, from its headers (Faust gives a list
    of pairs or a mapping), or None."""
    if not headers:
        return None
    pairs = headers.items() if isinstance(headers, dict) else headers
    for name, value in pairs:  # type: ignore[attr-defined]
        if name == REFUSED_HEADER:
            return bytes(value or b"").decode("utf-8", "replace")
    return None


_CODECS: Final = {"gzip_decode": gzip_decode, "snappy_decode": snappy_decode,
                  "lz4_decode": lz4_decode, "zstd_decode": zstd_decode}  # fmt: skip


def install() -> None:
    """Bound every codec aiokafka's record readers call, and turn a refusal into a refused record.
    Idempotent: installing twice wraps once."""
    for module in (default_records, legacy_records, c_default_records, c_legacy_records):
        for name, codec in _CODECS.items():
            if hasattr(module, name):
                setattr(module, name, codec)
    partition_records = aiokafka_fetcher.PartitionRecords
    if getattr(partition_records, "_peregrine_bounded", False):
        return
    original_init = partition_records.__init__

    def init(self: object, tp: object, records: object, *args: object, **kwargs: object) -> None:
        original_init(self, tp, _Records(records), *args, **kwargs)

    partition_records._unpack_records = _unpack_bounded(partition_records._unpack_records)
    partition_records.__init__ = init
    partition_records._peregrine_bounded = True
