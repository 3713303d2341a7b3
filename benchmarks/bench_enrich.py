"""Kubernetes enrichment in the worker: cost per event, table memory, cost of a topic record.

* enrich: `K8sTable.enrich` over batches shaped like a node's (500 events, 20 process records,
  half of them in containers), ns per event; baseline: a bare loop reading the same slot of the
  same process records, the floor for touching them at all.
* memory: the table holding 10,000 pods (``--containers`` each), MiB measured with tracemalloc;
  baseline: the same records as msgpack bytes on the topic.
* apply: `K8sTable.apply` (decode + build the container record), us per topic record; baseline:
  bare `msgpack.unpackb` of the same values.

Run: `.venv/bin/python -m benchmarks.bench_enrich [--pods N] [--containers C] [--runs R]`.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
import tracemalloc
from collections.abc import Callable

import msgpack

from benchmarks.results import record
from enrichers.records import ContainerMeta, encode
from enrichers.table import K8sTable
from rules.record import HOST_CONTAINER_ID, P_CONTAINER, P_CONTAINER_ID, PROCESS_LEN, Process

EVENTS_PER_BATCH = 500
PROCS_PER_BATCH = 20
BATCHES = 2000


def pod_records(pods: int, containers: int) -> list[tuple[bytes, bytes]]:
    out = []
    for n in range(pods):
        for c in range(containers):
            meta = ContainerMeta(
                container_id=f"{n:056x}{c:08x}", runtime="containerd", name=f"app-{c}",
                image="registry.example:5000/shop/checkout:1.4.2",
                image_repository="registry.example:5000/shop/checkout", image_tag="1.4.2",
                image_digest="sha256:" + "ab" * 32, privileged=False, start_ts=1_767_225_600_000_000_000,
                mounts=(("/var/lib/kubelet/pods/x/volumes/config", "/etc/app", "ro", False, "private"),),
                namespace=f"team-{n % 50}", pod_name=f"checkout-7d9f8b6c5d-{n:05d}", pod_uid=f"{n:032x}",
                labels={"app": "checkout", "pod-template-hash": "7d9f8b6c5d", "team": f"team-{n % 50}"},
                pod_ip=f"10.{n // 65536 % 256}.{n // 256 % 256}.{n % 256}", node=f"node-{n % 100}",
            )
            out.append(encode(meta))
    return out


def batches(table_ids: list[str], n: int) -> list[list[Process]]:
    out = []
    for b in range(n):
        procs = []
        for i in range(PROCS_PER_BATCH):
            p: Process = [None] * PROCESS_LEN
            p[P_CONTAINER_ID] = table_ids[(b * 7 + i) % len(table_ids)] if i % 2 else HOST_CONTAINER_ID
            procs.append(p)
        out.append(procs)
    return out


def timed(fn: Callable[[], None]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--pods", type=int, default=10_000)
    ap.add_argument("--containers", type=int, default=1, help="containers per pod")
    ap.add_argument("--runs", type=int, default=5)
    a = ap.parse_args()

    records = pod_records(a.pods, a.containers)
    ids = [k.decode() for k, _ in records]

    # memory: what the table holds once every record is applied
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    table = K8sTable()
    table.apply_all(records)
    held = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    scale = 10_000 / a.pods
    mib = held * scale / 2**20
    wire_mib = sum(len(k) + len(v) for k, v in records) * scale / 2**20
    record("enrich: table memory per 10k pods", f"{mib:.1f} MiB ({a.containers} container/pod)",
           f"msgpack on the topic {wire_mib:.1f} MiB", mib / wire_mib, 1)

    # apply: decode + build per topic record
    apply_s, unpack_s = [], []
    for _ in range(a.runs):
        apply_s.append(timed(lambda: K8sTable().apply_all(records)))
        unpack_s.append(timed(lambda: [msgpack.unpackb(v) for _, v in records]))
    per_apply = statistics.median(apply_s) / len(records) * 1e6
    per_unpack = statistics.median(unpack_s) / len(records) * 1e6
    record("enrich: K8sTable.apply per topic record", f"{per_apply:.2f} us",
           f"msgpack.unpackb {per_unpack:.2f} us", per_apply / per_unpack, a.runs)

    # enrich: per event, the batches' process records looked up once per batch
    enrich_s, floor_s = [], []
    for _ in range(a.runs):
        work = batches(ids, BATCHES)
        enrich_s.append(timed(lambda: [table.enrich(procs) for procs in work]))  # noqa: B023
        floor_s.append(timed(lambda: [[p[P_CONTAINER] for p in procs] for procs in work]))  # noqa: B023
        assert all(p[P_CONTAINER] is not None for procs in work for p in procs[1::2])
    events = BATCHES * EVENTS_PER_BATCH
    per_event = statistics.median(enrich_s) / events * 1e9
    floor = statistics.median(floor_s) / events * 1e9
    rate = events / statistics.median(enrich_s)
    record("enrich: K8sTable.enrich per event", f"{per_event:.1f} ns ({rate:,.0f} ev/s)",
           f"bare slot loop {floor:.1f} ns", per_event / floor, a.runs,
           {"events_per_batch": EVENTS_PER_BATCH, "procs_per_batch": PROCS_PER_BATCH})


if __name__ == "__main__":
    main()
