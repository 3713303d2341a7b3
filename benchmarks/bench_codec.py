"""Event-contract codec and broker round-trip throughput.

* encode: `collectors.wire.encode_batch`, events/s; baseline: bare `msgpack.packb` of the same data.
* decode: `collectors.wire.decode_batch` (validation + reference resolution), events/s; baseline:
  bare `msgpack.unpackb` of the same bytes, so the ratio is the price of validation.
* broker: produce batches with confluent-kafka (lz4, idempotent, acks=all) to a real local broker
  and consume them back with confluent-kafka, events/s; baseline: encode + decode in process.

Run: `.venv/bin/python -m benchmarks.bench_codec [--events N] [--runs R]`.
"""

from __future__ import annotations

import argparse
import copy
import random
import tempfile
import uuid
from pathlib import Path

import msgpack

from benchmarks.results import median_rate, record
from collectors.wire import Batch, decode_batch, encode_batch
from rules.record import EVENT_PARAMS, EVENT_TYPE_IDS, FD_LEN, P_NAME, P_PARENT, PROCESS_LEN

PER_BATCH = 500


def realistic_batches(n_events: int, seed: int = 1) -> list[Batch]:
    """Batches shaped like a node's: ~20 process records (with ancestors), opens, execs, connects."""
    rng = random.Random(seed)
    kinds = ["openat"] * 6 + ["execve", "connect", "socket", "setns"]
    batches = []
    for b in range(max(1, n_events // PER_BATCH)):
        procs = []
        for i in range(20):
            p: list[object] = [None] * PROCESS_LEN
            p[0], p[1], p[P_NAME] = 4000 + i, 1, rng.choice(["bash", "nginx", "python3", "java", "runc"])
            p[3], p[4], p[5] = p[P_NAME], f"/usr/bin/{p[P_NAME]}", ["-c", "echo " + "x" * rng.randint(0, 60)]
            p[6], p[7], p[8], p[10], p[12] = "/app", 34816 if i % 5 == 0 else 0, 0, "root", -1
            p[18], p[19], p[29] = 1_700_000_000_000_000_000, 0x1FF, "node-1"
            p[26] = "a" * 64 if i % 2 else "host"
            p[P_PARENT] = -1 if i < 3 else rng.randrange(i)
            procs.append(p)
        events = []
        for i in range(PER_BATCH):
            kind = rng.choice(kinds)
            fd: list[object] | None = None
            if kind == "openat":
                path = rng.choice(["/etc/ld.so.cache", "/proc/self/stat", "/var/log/app.log", "/etc/shadow"])
                args: list[object] = [3, -100, path, 0o2 if rng.random() < 0.2 else 0, 0, 0, 0]
                fd = [3, "f", path, path, None, None, None, None, None, False, False, False]
            elif kind == "connect":
                args = [0, "10.0.0.5:41234->10.96.0.1:443", 5]
                fd = [5, "4", args[1], None, "tcp", "10.0.0.5", 41234, "10.96.0.1", 443, False, True, False]
            else:
                args = ([0, "x", ["a"], 1, 2, 3] * 3)[: len(EVENT_PARAMS[EVENT_TYPE_IDS[kind]])]
            assert fd is None or len(fd) == FD_LEN
            ts = 1_700_000_000_000_000_000 + i
            num = b * PER_BATCH + i + 1
            events.append([EVENT_TYPE_IDS[kind], ts, 4000 + i % 20, i % 20, 0, args, fd, num])
        batches.append(Batch("node-1", "boot", b + 1, events[0][1], events[-1][1], procs, events))
    return batches


def _as_dict(b: Batch) -> dict[str, object]:
    return {"v": b.v, "node": b.node, "boot_id": b.boot_id, "seq": b.seq, "t_first": b.t_first,
            "t_last": b.t_last, "procs": b.procs, "events": b.events}


def bench_in_process(batches: list[Batch], runs: int) -> None:
    n = sum(len(b.events) for b in batches)
    encode, _ = median_rate(lambda: (sum(0 for b in batches if encode_batch(b)), n)[1], runs)
    bare_pack, _ = median_rate(lambda: (sum(0 for b in batches if msgpack.packb(_as_dict(b))), n)[1], runs)
    record("codec encode_batch (500 ev/batch)", f"{encode:,.0f} events/s", "bare msgpack.packb",
           encode / bare_pack, runs)

    payloads = [encode_batch(b) for b in batches]
    size = sum(len(p) for p in payloads) / n
    decode, _ = median_rate(lambda: (sum(0 for p in payloads if decode_batch(p)), n)[1], runs)
    bare_unpack, _ = median_rate(lambda: (sum(0 for p in payloads if msgpack.unpackb(p)), n)[1], runs)
    record("codec decode_batch (validate + resolve)", f"{decode:,.0f} events/s ({size:.0f} B/event)",
           "bare msgpack.unpackb", decode / bare_unpack, runs)


def bench_broker(batches: list[Batch], runs: int) -> None:
    from confluent_kafka import Consumer, Producer

    from devtools import localkafka

    n = sum(len(b.events) for b in batches)
    payloads = [encode_batch(copy.deepcopy(b)) for b in batches]
    root = Path(tempfile.mkdtemp(prefix="peregrine-bench-kafka-"))
    cluster = localkafka.start(root, n=1, heap="1g")
    try:
        def round_trip() -> int:
            topic = f"bench-{uuid.uuid4().hex[:8]}"
            producer = Producer({"bootstrap.servers": cluster.bootstrap, "compression.type": "lz4",
                                 "enable.idempotence": True, "acks": "all", "linger.ms": 20})
            for p in payloads:
                producer.produce(topic, value=p, key=b"node-1")
                producer.poll(0)
            producer.flush(60)
            consumer = Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": topic,
                                 "auto.offset.reset": "earliest", "enable.auto.commit": False})
            consumer.subscribe([topic])
            got = 0
            while got < len(payloads):
                for m in consumer.consume(num_messages=500, timeout=1.0):
                    if m.error() is None:
                        decode_batch(m.value())
                        got += 1
            consumer.close()
            return n

        round_trip()  # warm-up: topic auto-creation, JIT of the broker
        broker, _ = median_rate(round_trip, runs)

        def local() -> int:
            for p in payloads:
                decode_batch(p)
            return n

        base, _ = median_rate(local, runs)
        record("broker round trip (produce lz4 + consume + decode)", f"{broker:,.0f} events/s",
               "decode of the same bytes in process", broker / base, runs)
    finally:
        localkafka.stop(cluster)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--no-broker", action="store_true")
    args = parser.parse_args()
    batches = realistic_batches(args.events)
    bench_in_process(batches, args.runs)
    if not args.no_broker:
        bench_broker(batches, args.runs)


if __name__ == "__main__":
    main()
