"""`peregrine rules backtest` over a backlog on a real broker: events/s per process.

A backlog of wire batches (500 events each, the seeded mix of `benchmarks.workload`, regrouped per
node) is produced once with `bench_worker`'s batch builder, topics and producer: a fresh events topic
of 8 partitions and an empty compacted k8s topic (so, as there, enrichment always misses).
Then the backtest reads the whole backlog in one process, evaluating two rule sets on every batch:
the new rules (Falco stable + incubating) against a baseline (Falco stable), as
`peregrine rules backtest --rules stable --rules incubating --baseline stable --processes 1` does
(`backtest.job` is called directly so the rules compile once; each run reads the topic again).
Figures, medians over ``--runs``: events per wall second of the reading process (with the cores it
got), and events per CPU second of that process (librdkafka's fetch and lz4 threads included).

Baselines, measured in the same run: one `peregrine worker` process (the same new rules,
exactly_once) draining the same backlog in a fresh group, as `bench_worker` measures it, in events per
core (its CPU over the measured window); and, in this process on the same bytes, without Kafka:
* the backtest's own floor: decode (C wire decoder) + enrich + evaluate both rule sets;
* the worker's compute: decode + enrich + evaluate the new rules only, i.e. what a worker does per
  batch before Faust and Kafka; a worker process cannot be faster than this.

The machine is shared (2 cores: the broker, this process and other jobs), so absolute figures are
what this box gives at the moment; the load average is recorded with each row.

Run: ``.venv/bin/python -m benchmarks.bench_backtest [--events N] [--runs R] [--bootstrap HOST:PORT]``
(without ``--bootstrap`` it starts its own broker from the project's Kafka jars).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from backtest import job, read
from benchmarks.bench_worker import (
    BATCH,
    MAX_BACKLOG_EVENTS,
    NODES,
    PARTITIONS,
    BacklogTooSmall,
    Bench,
    Drain,
    node_order,
    wire_batch,
)
from benchmarks.falco_rules import STABLE_AND_INCUBATING
from benchmarks.results import record
from benchmarks.workload import make_events
from bus.connection import KafkaConnection
from collectors.wire import Decoder
from devtools import localkafka

STABLE = STABLE_AND_INCUBATING[:1]


def in_memory_rate(evaluator: job.Evaluator, batches: list[bytes], both: bool, seconds: float = 3.0) -> float:
    """events per CPU second of decode + enrich + evaluate (both rule sets, or the new ones only), no
    Kafka. CPU time, not wall time: on a shared machine that is the part that does not depend on load."""
    decoder, enrich = Decoder(), evaluator.table.enrich
    new, base = evaluator.new, evaluator.base if both else None
    n, t0 = 0, time.process_time()
    while time.process_time() - t0 < seconds:
        for value in batches:
            batch = decoder.decode(value)
            enrich(batch.procs)
            new.evaluate(batch.events)
            if base is not None:
                base.evaluate(batch.events)
            n += len(batch.events)
    return n / (time.process_time() - t0)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=1_000_000, help="backlog size")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--bootstrap", help="use this broker instead of starting one")
    ap.add_argument("--no-worker", action="store_true", help="skip the worker drains (the last row)")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-backtest-") as tmp:
        cluster = None
        bootstrap = args.bootstrap
        if bootstrap is None:
            cluster = localkafka.start(Path(tmp) / "kafka", n=1, heap="1g")
            bootstrap = cluster.bootstrap
        try:
            run(Bench(bootstrap, Path(tmp), broker_pid=cluster.nodes[0].pid if cluster else None), args)
        finally:
            if cluster is not None:
                localkafka.stop(cluster)


def run(bench: Bench, args: argparse.Namespace) -> None:
    events = node_order(make_events(200 * BATCH, seed=1))
    batches = [wire_batch(events[i : i + BATCH], NODES[k % len(NODES)], k // len(NODES))
               for k, i in enumerate(range(0, len(events), BATCH))]  # fmt: skip
    bench.create_topics()  # the worker benchmark's: 8 partitions, an empty compacted k8s topic
    events_topic, k8s_topic = bench.topic("events"), bench.topic("k8s")
    since_ms = int(time.time() * 1000) - 60_000
    total = bench.produce(batches, max(1, args.events // (len(batches) * BATCH)))

    settings = job.Settings(
        connection=KafkaConnection((bench.bootstrap,)),
        events_topic=events_topic,
        k8s_topic=k8s_topic,
        rules=tuple(map(str, STABLE_AND_INCUBATING)),
        baseline=tuple(map(str, STABLE)),
    )
    table, bad = job.load_table(settings)
    evaluator = job.Evaluator(settings, table, bad)
    spans = read.plan(settings.connection, events_topic, since_ms, None)
    assert sum(s.size for s in spans) == total, "the plan does not cover the backlog"

    shares: list[job.Share] = []
    for _ in range(args.runs):
        shares += job.run(evaluator, spans, 1).shares
    rates = [s.events / s.seconds for s in shares]
    cores = [s.cpu_seconds / s.seconds for s in shares]
    per_core = [s.events / s.cpu_seconds for s in shares]  # librdkafka's threads (fetch, lz4) included
    rate, rate_cpu = statistics.median(rates), statistics.median(per_core)
    floor_both = statistics.median(in_memory_rate(evaluator, batches, both=True) for _ in range(args.runs))
    floor_worker = statistics.median(in_memory_rate(evaluator, batches, both=False) for _ in range(args.runs))
    load = round(os.getloadavg()[0], 1)
    common = {"load_avg_1m": load, "events": total * BATCH, "batch_events": BATCH, "partitions": PARTITIONS,
              "rates": [round(r) for r in rates], "process_cores": [round(c, 2) for c in cores],
              "per_core": [round(r) for r in per_core],
              "alerts": shares[0].diffs.totals(), "floor_both": round(floor_both),
              "floor_worker": round(floor_worker)}  # fmt: skip
    name = "backtest events/s, 1 process, stable+incubating vs stable"
    busy = f"machine shared with other jobs, load {load} on {os.cpu_count()} cores"
    record(f"{name}, wall time ({busy})", f"{rate:,.0f} events/s using {statistics.median(cores):.2f} core",
           "", None, args.runs, common)  # fmt: skip
    figure = f"{rate_cpu:,.0f} events/s per core (CPU time)"
    record(f"{name}, per core ({busy})", figure,
           f"in memory, decode+enrich+both rule sets {floor_both:,.0f} events/s per core",
           rate_cpu / floor_both, args.runs, common)  # fmt: skip
    record(f"{name}, per core, vs the worker's compute ({busy})", figure,
           f"in memory, decode+enrich+new rules only (a worker's work) {floor_worker:,.0f} events/s per core",
           rate_cpu / floor_worker, args.runs, common)  # fmt: skip
    if args.no_worker:
        return
    drains = worker_drains(bench, total, batches, args.runs)
    worker_rate = statistics.median(d.rate for d in drains)
    worker_core = statistics.median(d.rate / d.worker_cores[0] for d in drains)
    common["worker_rates"] = [round(d.rate) for d in drains]
    common["worker_cores"] = [round(d.worker_cores[0], 2) for d in drains]
    record(f"{name}, per core, vs `peregrine worker` exactly_once on the same backlog ({busy})", figure,
           f"worker 1 process {worker_core:,.0f} events/s per core ({worker_rate:,.0f} events/s)",
           rate_cpu / worker_core, args.runs, common)  # fmt: skip


def worker_drains(bench: Bench, total: int, batches: list[bytes], runs: int) -> list[Drain]:
    """One `peregrine worker` (stable + incubating, exactly_once) draining the backlog in a fresh group,
    `runs` times, as `bench_worker` measures it; the backlog grows when it drains before the group is
    stable (the backtest's figures above are from the backlog as it was)."""
    drains: list[Drain] = []
    while len(drains) < runs:
        try:
            drains.append(bench.drain_rate(1, "exactly_once", total))
        except BacklogTooSmall:
            if total * BATCH * 4 > MAX_BACKLOG_EVENTS:
                raise
            total += bench.produce(batches, 3 * total // len(batches))
    return drains


if __name__ == "__main__":
    main()
