"""What bounding decompression (`streams.fetchbound`) costs the worker's fetch path.

A fetch response of realistic wire batches (`bench_codec.realistic_batches`, 500 events each, one per
Kafka record batch, lz4 as the collectors send them) is read through aiokafka's own `PartitionRecords`
and `MemoryRecords`, as the worker's consumer reads it: once with aiokafka's codecs and classes as
installed, once with `fetchbound`'s, alternating run by run in one process (the benchmark swaps the
patched names back and forth). Reports records/s of CPU time with the bound and the ratio to aiokafka
alone (1.0 = free).

    python -m benchmarks.bench_fetchbound [--events 200000] [--runs 7] [--codec lz4]
"""

from __future__ import annotations

import argparse
import statistics
from typing import Any

from aiokafka.consumer import fetcher
from aiokafka.record import default_records
from aiokafka.record._crecords import default_records as c_default_records
from aiokafka.record.memory_records import MemoryRecords
from aiokafka.structs import TopicPartition

from benchmarks.bench_codec import realistic_batches
from benchmarks.results import cpu_rate, record
from collectors.wire import encode_batch
from streams import fetchbound

_CODEC_IDS = {"gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}
_NAMES = ("gzip_decode", "snappy_decode", "lz4_decode", "zstd_decode")


def _response(values: list[bytes], codec: int) -> bytes:
    out = bytearray()
    for offset, value in enumerate(values):
        builder = default_records.DefaultRecordBatchBuilder(2, codec, 0, -1, -1, -1, 64 * 1024 * 1024)
        builder.append(0, 1_700_000_000_000, b"node-a", value, [])
        raw = bytearray(builder.build())
        raw[0:8] = offset.to_bytes(8, "big")
        out += raw
    return bytes(out)


def _state() -> dict[str, Any]:
    state: dict[str, Any] = {n: getattr(c_default_records, n) for n in _NAMES}
    state["init"] = fetcher.PartitionRecords.__dict__["__init__"]
    state["unpack"] = fetcher.PartitionRecords.__dict__["_unpack_records"]
    state["flag"] = fetcher.PartitionRecords.__dict__.get("_peregrine_bounded", False)
    return state


def _restore(state: dict[str, Any]) -> None:
    for n in _NAMES:
        setattr(c_default_records, n, state[n])
    fetcher.PartitionRecords.__init__ = state["init"]  # type: ignore[method-assign]
    fetcher.PartitionRecords._unpack_records = state["unpack"]  # type: ignore[method-assign]
    fetcher.PartitionRecords._peregrine_bounded = state["flag"]  # type: ignore[attr-defined]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--codec", choices=sorted(_CODEC_IDS), default="lz4")
    args = parser.parse_args()

    values = [encode_batch(b) for b in realistic_batches(args.events)]
    data = _response(values, _CODEC_IDS[args.codec])
    tp = TopicPartition("peregrine.events", 0)

    def read() -> int:
        records = fetcher.PartitionRecords(tp, MemoryRecords(data), [], 0, None, None, False, 0)
        return sum(1 for _ in records)

    plain_state = _state()
    fetchbound.install()
    bounded_state = _state()
    assert read() == len(values)
    _restore(plain_state)
    assert read() == len(values)
    base, bounded = [], []
    for _ in range(args.runs):
        _restore(plain_state)
        base.append(cpu_rate(read))
        _restore(bounded_state)
        bounded.append(cpu_rate(read))
    ratio = statistics.median(b / p for b, p in zip(bounded, base, strict=True))
    size = sum(len(v) for v in values) // len(values)
    record(
        f"worker fetch path: {len(values)} {args.codec} record batches of one wire batch (~{size:,} B) "
        "read through aiokafka with decompression bounded (streams.fetchbound)",
        f"{statistics.median(bounded):,.0f} record batches/s (CPU time)",
        f"aiokafka's own codecs, {statistics.median(base):,.0f} record batches/s",
        ratio,
        args.runs,
    )


if __name__ == "__main__":
    main()
