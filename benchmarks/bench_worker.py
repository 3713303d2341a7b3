"""Detection worker end to end through a real broker: events/s per process, scaling, latency.

* throughput: a backlog of wire batches (500 events each, the seeded mix of `benchmarks.workload`)
  is produced once; then ``peregrine worker`` processes (Falco's stable + incubating rules) start in a
  fresh consumer group and drain it. The rate is taken from the group's committed offsets (sampled
  every 0.2 s) from the moment the group is stable with every process holding partitions to the
  end of the backlog, so start-up and the joining rebalance are not counted. When most of the
  backlog is gone before that moment (a faster machine), the backlog grows fourfold and the drain
  runs again, so the default command holds wherever the README's two commands do. Figures: 1 process
  exactly_once against 1 process at_least_once (the cost of transactions); 2 processes against 1
  (the scaling ratio); 1 process exactly_once with evidence (the default) against evidence off.
  Batches are regrouped so each references ~20 process records, as a node's
  batch does (`node_order`); no Kubernetes records are published, so enrichment always misses.
  Each figure is the median of ``--runs``. CPU is measured over the same window: cores used by each
  worker process and by the broker (when the benchmark started it), and how busy the machine was.
* latency: one exactly_once worker on fresh topics; batches produced at half the measured 1-process
  capacity, each with one shell-in-a-container execve stamped with its production time; a
  read_committed consumer (librdkafka defaults, as the sink stage reads) measures production -> alert
  visible. p50/p99 over ``--latency-seconds`` after ``--latency-warmup`` seconds of the same traffic
  (a fresh broker spends its first minute compiling the paths this traffic takes), with the worker's
  CPU over that window.

The machine is shared (2 cores: broker, producer, workers and other jobs), so absolute figures are
what this box gives; the ratios are the comparable part, and the CPU figures say which resource ran out
(two workers and the broker cannot all have a core each on two cores).

Run: ``.venv/bin/python -m benchmarks.bench_worker [--events N] [--runs R] [--bootstrap HOST:PORT]``
(``--evidence-only [--evidence-depth D]``: only the evidence on/off drains, D earlier batches kept)
(without ``--bootstrap`` it starts its own broker from the project's Kafka jars).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack
from confluent_kafka import Consumer, ConsumerGroupState, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from benchmarks.falco_rules import STABLE_AND_INCUBATING
from benchmarks.processes import cpu_seconds, stop
from benchmarks.results import record
from benchmarks.workload import make_events
from collectors.wire import Batch, encode_batch
from devtools import localkafka
from rules import record as R
from rules.record import SCHEMA_VERSION

REPO = Path(__file__).resolve().parents[1]
RULES = list(STABLE_AND_INCUBATING)
BATCH = 500
PARTITIONS = 8
MAX_BACKLOG_EVENTS = 50_000_000  # about 6.7 GB on the wire at 67 KB per 500 events: the broker's disk
NODES = [f"node-{i}" for i in range(16)]


# answered while a fresh broker loads or moves a group's coordinator: wait, then ask again
_COORDINATOR_MOVING = frozenset({
    KafkaError.NOT_COORDINATOR, KafkaError.COORDINATOR_LOAD_IN_PROGRESS, KafkaError.COORDINATOR_NOT_AVAILABLE,
})


def wire_batch(events: list[list[Any]], node: str, seq: int) -> bytes:
    """In-memory records (resolved references) -> a self-contained wire batch."""
    index: dict[int, int] = {}
    procs: list[list[Any]] = []

    def add(p: list[Any]) -> int:
        at = index.get(id(p))
        if at is None:
            parent = p[R.P_PARENT]
            parent_at = add(parent) if parent is not None else -1
            rec = list(p)
            rec[R.P_PARENT], rec[R.P_CONTAINER], rec[R.P_NODE] = parent_at, None, node
            at = index[id(p)] = len(procs)
            procs.append(rec)
        return at

    wire = []
    for ev in events:
        e = list(ev)
        e[R.EV_PROC] = add(ev[R.EV_PROC])
        wire.append(e)
    return encode_batch(Batch(node, "boot-1", seq, wire[0][R.EV_TS], wire[-1][R.EV_TS], procs, wire))


class ProbeBatches:
    """The latency phase's batches: the same events before one probe execve stamped with its
    production time, for each node in turn. Everything but the envelope's seq and last time and
    the probe event is packed once per node, so producing a batch costs the benchmark process
    almost nothing: on this 2-core machine the producer (a node's collector in production) would
    otherwise take CPU from the worker being measured. The bytes equal `wire_batch`'s for the same
    events (the same map, keys in the same order)."""

    def __init__(self, base: list[list[Any]], template: list[Any]) -> None:
        self._parts: dict[str, tuple[bytes, list[Any], list[Any]]] = {}
        for node in NODES:
            wire = msgpack.unpackb(wire_batch([*base, shell_event(template, 0, 0)], node, 0), raw=False)
            *events, probe = wire["events"]
            head = [msgpack.packb("procs"), msgpack.packb(wire["procs"], use_bin_type=True),
                    msgpack.packb("events"), b"\xdc" + (len(events) + 1).to_bytes(2, "big"),  # array 16
                    *(msgpack.packb(e, use_bin_type=True) for e in events)]  # fmt: skip
            self._parts[node] = (b"".join(head), probe, wire["t_first"])

    def batch(self, node: str, seq: int, ts: int, num: int) -> bytes:
        packed, probe, t_first = self._parts[node]
        envelope = {"v": SCHEMA_VERSION, "node": node, "boot_id": "boot-1", "seq": seq, "t_first": t_first,
                    "t_last": ts}  # fmt: skip
        out = [b"\x88"]  # a map of 8 fields: these 6, procs and events
        for key, value in envelope.items():
            out += [msgpack.packb(key), msgpack.packb(value)]
        out += [packed, msgpack.packb([probe[0], ts, *probe[2:7], num], use_bin_type=True)]
        return b"".join(out)


def node_order(events: list[list[Any]], groups: int = 40) -> list[list[Any]]:
    """The workload picks any of ~270 processes per event, as a rule benchmark should; a node's batch
    covers a few milliseconds and a handful of processes. Regroup the events (stable) so that each
    batch references about 7 processes (about 20 records with their ancestors)."""
    slot: dict[int, int] = {}
    return sorted(events, key=lambda e: slot.setdefault(id(e[R.EV_PROC]), len(slot) % groups))


def shell_event(template: list[Any], ts: int, num: int) -> list[Any]:
    """An execve of bash with a terminal, in the template process's container (Falco's
    "Terminal shell in container" fires on it); its time is the production time."""
    shim = list(template)
    shim[R.P_NAME], shim[R.P_EXE], shim[R.P_PARENT] = "containerd-shim", "containerd-shim", None
    proc = list(template)
    proc[R.P_NAME], proc[R.P_EXE], proc[R.P_EXEPATH] = "bash", "bash", "/usr/bin/bash"
    proc[R.P_ARGS], proc[R.P_TTY], proc[R.P_PARENT] = ["-il"], 34816, shim
    args = [0, "/usr/bin/bash", ["-il"], 7, 7, 1, "/", 34816, -1, 0, 0, 0, 0, 0, 0, "/usr/bin/bash"]
    return [R.event_type_id("execve"), ts, 7, proc, 0, args, None, num]


def machine_ticks() -> tuple[int, int]:
    """(busy, total) clock ticks of all CPUs since boot, from /proc/stat."""
    with open("/proc/stat") as f:
        user, nice, system, idle, iowait, irq, softirq, steal = map(int, f.readline().split()[1:9])
    busy = user + nice + system + irq + softirq + steal
    return busy, busy + idle + iowait


@dataclass
class CpuWindow:
    """Cores used by the given processes, and by the whole machine, between start() and stop()."""

    pids: list[int]
    t0: float = 0.0
    cpu0: tuple[float, ...] = ()
    ticks0: tuple[int, int] = (0, 0)
    cores: tuple[float, ...] = ()
    machine_cores: float = 0.0

    def start(self) -> None:
        self.t0, self.ticks0 = time.monotonic(), machine_ticks()
        self.cpu0 = tuple(map(cpu_seconds, self.pids))

    def stop(self) -> None:
        elapsed = time.monotonic() - self.t0
        self.cores = tuple((cpu_seconds(p) - c) / elapsed for p, c in zip(self.pids, self.cpu0, strict=True))
        busy, total = machine_ticks()
        self.machine_cores = (busy - self.ticks0[0]) / max(1, total - self.ticks0[1]) * (os.cpu_count() or 1)


@dataclass(frozen=True)
class Drain:
    rate: float  # events/s
    worker_cores: tuple[float, ...]
    broker_cores: float | None
    machine_cores: float


class Bench:
    def __init__(self, bootstrap: str, tmp: Path, commit_interval: float = 0.25,
                 broker_pid: int | None = None, evidence_depth: int | None = None) -> None:
        self.bootstrap = bootstrap
        self.evidence_depth = evidence_depth  # None: the worker's default
        self.tmp = tmp
        self.commit_interval = commit_interval
        self.broker_pid = broker_pid
        self.tag = uuid.uuid4().hex[:8]
        self.admin = AdminClient({"bootstrap.servers": bootstrap})

    def topic(self, name: str) -> str:
        return f"bench.{name}-{self.tag}"

    def create_topics(self) -> None:
        new = [NewTopic(self.topic(n), PARTITIONS, 1) for n in ("events", "stats", "alerts", "dlq")]
        new.append(NewTopic(self.topic("k8s"), PARTITIONS, 1, config={"cleanup.policy": "compact"}))
        for f in self.admin.create_topics(new).values():
            f.result(30)

    def produce(self, batches: list[bytes], rounds: int) -> int:
        p = Producer({"bootstrap.servers": self.bootstrap, "linger.ms": 20, "compression.type": "lz4",
                      "message.max.bytes": 8_000_000, "queue.buffering.max.kbytes": 1_048_576})
        n = 0
        for _ in range(rounds):
            for i, b in enumerate(batches):
                while True:
                    try:
                        p.produce(self.topic("events"), b, NODES[i % len(NODES)].encode())
                        break
                    except BufferError:
                        p.poll(0.1)
                p.poll(0)
                n += 1
        assert p.flush(120) == 0, "backlog not delivered"
        return n

    def start_workers(
        self, n: int, guarantee: str, app_id: str, evidence: bool = True
    ) -> list[subprocess.Popen[bytes]]:
        procs = []
        for i in range(n):
            flags = ["--bootstrap", self.bootstrap, "--app-id", app_id, "--guarantee", guarantee,
                     "--partitions", str(PARTITIONS), "--session-timeout", "10", "--k8s-wait", "5",
                     "--commit-interval", str(self.commit_interval),
                     "--datadir", str(self.tmp / f"{app_id}-{i}"), "--log-level", "warning"]
            for name in ("events", "stats", "alerts", "dlq", "k8s"):
                flags += [f"--{name}-topic", self.topic(name)]
            for r in RULES:
                flags += ["--rules", str(r)]
            log = (self.tmp / f"{app_id}-{i}.log").open("wb")
            # Per-rule cost sampling off: its start-up compile (2 s of CPU in a thread, every rule
            # alone) ran inside the measured window of a short drain, taking the GIL from the agent
            # and adding the same 2 s to both sides of the evidence comparison (py-spy: 10% of a
            # 1M-event drain's samples). Sampling itself, every 4096th batch, never fires in these drains.
            env = {**os.environ, "PEREGRINE_METRICS_PORT": "0", "PEREGRINE_RULE_COST_EVERY": "0"}
            if not evidence:
                env["PEREGRINE_EVIDENCE_EVENTS"] = "0"
            elif self.evidence_depth is not None:
                env["PEREGRINE_EVIDENCE_DEPTH"] = str(self.evidence_depth)
            procs.append(subprocess.Popen([sys.executable, "-m", "cli.main", "worker", *flags], cwd=REPO,
                                          env=env, stdout=log, stderr=subprocess.STDOUT))
        return procs

    def group_reader(self, group_id: str) -> Consumer:
        """A consumer that only reads the group's committed offsets (it never subscribes)."""
        conf = {"bootstrap.servers": self.bootstrap, "group.id": group_id, "enable.auto.commit": False}
        return Consumer(conf)

    def committed(self, group: Consumer, tps: list[TopicPartition]) -> int:
        return sum(max(tp.offset, 0) for tp in group.committed(tps, timeout=10))

    def drain_rate(
        self, n_workers: int, guarantee: str, total_batches: int, timeout: float = 600, evidence: bool = True
    ) -> Drain:
        """events/s of `n_workers` processes draining the whole backlog in a fresh group."""
        app_id = f"bench-worker-{uuid.uuid4().hex[:8]}"
        tps = [TopicPartition(self.topic("events"), p) for p in range(PARTITIONS)]
        probe = self.group_reader(app_id)
        workers = self.start_workers(n_workers, guarantee, app_id, evidence)
        try:
            deadline = time.monotonic() + timeout
            self._wait_stable(app_id, n_workers, workers, deadline)
            cpu = CpuWindow([w.pid for w in workers] + ([self.broker_pid] if self.broker_pid else []))
            cpu.start()
            t0, c0 = time.monotonic(), self.committed(probe, tps)
            while True:
                now, done = time.monotonic(), self.committed(probe, tps)
                if done >= total_batches:
                    cpu.stop()
                    if total_batches - c0 < total_batches // 2:
                        early = f"{c0} of {total_batches} batches drained before the group was stable"
                        raise BacklogTooSmall(early)
                    broker = cpu.cores[n_workers] if self.broker_pid else None
                    rate = (done - c0) * BATCH / (now - t0)
                    return Drain(rate, cpu.cores[:n_workers], broker, cpu.machine_cores)
                if now > deadline or any(w.poll() is not None for w in workers):
                    raise RuntimeError(f"backlog not drained: {done}/{total_batches} batches; see {self.tmp}")
                time.sleep(0.2)
        finally:
            probe.close()
            stop(workers)

    def latency(
        self, rate: float, seconds: float, base: list[list[Any]], template: list[Any], warmup: float = 0.0
    ) -> tuple[list[float], CpuWindow]:
        """Seconds from producing a batch to its alert being visible to a read_committed consumer, and
        the CPU used while producing. The first `warmup` seconds of traffic are not measured: the
        broker's JIT compiles the paths this traffic takes (small produce requests, transactions,
        read_committed fetches) for about a minute, and took a third of a core doing so."""
        app_id = f"bench-latency-{uuid.uuid4().hex[:8]}"
        alerts_topic = self.topic("alerts")
        seen: list[tuple[int, float]] = []  # (production time, seconds to visible)
        stop_reading = threading.Event()
        ready = threading.Event()

        def read() -> None:
            c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": f"{app_id}-reader",
                          "auto.offset.reset": "latest", "isolation.level": "read_committed",
                          "enable.auto.commit": False})
            c.subscribe([alerts_topic], on_assign=lambda *_: ready.set())
            try:
                while not stop_reading.is_set():
                    for m in c.consume(500, 0.2):
                        if m.error() or m.value() is None:
                            continue
                        now = time.time_ns()
                        alert = json.loads(m.value())
                        if alert["rule"] == "Terminal shell in container":
                            produced = alert["output_fields"]["evt.time"]
                            seen.append((produced, (now - produced) / 1e9))
            finally:
                c.close()

        probes = ProbeBatches(base[: BATCH - 1], template)
        reader = threading.Thread(target=read, name="latency-reader")
        reader.start()
        workers = self.start_workers(1, "exactly_once", app_id)
        try:
            ready.wait(60)
            self._wait_stable(app_id, 1, workers, time.monotonic() + 120)
            p = Producer({"bootstrap.servers": self.bootstrap, "linger.ms": 1, "compression.type": "lz4",
                          "message.max.bytes": 8_000_000})
            interval = BATCH / rate
            warm, n = int(warmup / interval), int((warmup + seconds) / interval)
            cpu = CpuWindow([workers[0].pid, os.getpid()] + ([self.broker_pid] if self.broker_pid else []))
            start = time.monotonic()
            measured_from = 0
            for i in range(n):
                if i == warm:
                    cpu.start()
                    measured_from = time.time_ns()
                target = start + i * interval
                delay = target - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                node = NODES[i % len(NODES)]
                batch = probes.batch(node, 1_000_000 + i // len(NODES), time.time_ns(), 10_000_000 + i)
                p.produce(self.topic("events"), batch, node.encode())
                p.poll(0)
            p.flush(60)
            cpu.stop()
            deadline = time.monotonic() + 30
            while len(seen) < n and time.monotonic() < deadline:
                time.sleep(0.2)
            return [delay for produced, delay in list(seen) if produced >= measured_from], cpu
        finally:
            stop_reading.set()
            reader.join(30)
            stop(workers)

    def _wait_stable(
        self, group: str, members: int, workers: list[subprocess.Popen[bytes]], deadline: float
    ) -> None:
        """Until the group is stable with every worker holding events partitions (so start-up and
        the joining rebalance stay out of the measured window)."""
        while time.monotonic() < deadline:
            try:
                desc = self.admin.describe_consumer_groups([group])[group].result(10)
            except KafkaException as exc:
                # a fresh broker answers NOT_COORDINATOR until the group's coordinator is loaded
                err = exc.args[0]
                if not (err.retriable() or err.code() in _COORDINATOR_MOVING):
                    raise
                time.sleep(0.2)
                continue
            holding = [m for m in desc.members
                       if any(tp.topic == self.topic("events") for tp in m.assignment.topic_partitions)]
            if desc.state == ConsumerGroupState.STABLE and len(holding) == members:
                return
            if any(w.poll() is not None for w in workers):
                raise RuntimeError(f"a worker exited during start-up; see {self.tmp}")
            time.sleep(0.1)
        raise RuntimeError(f"group {group} not stable with {members} members")




class BacklogTooSmall(RuntimeError):
    """The workers drained most of the backlog before the measured window began: on a faster machine
    the default size is too small, so `run` grows the backlog and drains again."""


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=2_000_000, help="backlog size per throughput run")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--latency-seconds", type=float, default=20.0)
    ap.add_argument("--latency-warmup", type=float, default=60.0,
                    help="seconds of traffic at the latency rate before measuring")
    ap.add_argument("--bootstrap", help="use this broker instead of starting one")
    ap.add_argument("--commit-interval", type=float, default=0.25,
                    help="worker --commit-interval: the transaction length, a floor under the latency")
    ap.add_argument("--evidence-depth", type=int, help="worker --evidence-depth of the evidence-on drains "
                    "(default: the worker's)")
    ap.add_argument("--evidence-only", action="store_true",
                    help="only the evidence on/off drains and their row (no scaling, no latency)")
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench-worker-") as tmp_dir:
        tmp = Path(tmp_dir)
        cluster = None
        bootstrap = args.bootstrap
        if bootstrap is None:
            cluster = localkafka.start(tmp / "kafka", n=1, heap="1g")
            bootstrap = cluster.bootstrap
        try:
            run(Bench(bootstrap, tmp, args.commit_interval, cluster.nodes[0].pid if cluster else None,
                      args.evidence_depth), args)
        finally:
            if cluster is not None:
                localkafka.stop(cluster)


def record_evidence(
    with_evidence: list[Drain], without: list[Drain], args: argparse.Namespace, n_events: int,
    avg_bytes: float,
) -> None:
    """Two rows: events/s, and events per second of worker CPU, which other jobs on the machine
    disturb less than the rate (they take cores away, not cycles from each event)."""
    depth = "the default depth" if args.evidence_depth is None else f"depth {args.evidence_depth}"
    extra = {"load_avg_1m": round(os.getloadavg()[0], 1), "events": n_events, "batch_events": BATCH,
             "batch_bytes": round(avg_bytes), "partitions": PARTITIONS, "evidence_depth": args.evidence_depth,
             "rates_with_evidence": [round(d.rate) for d in with_evidence],
             "rates_without_evidence": [round(d.rate) for d in without],
             "worker_cores_with_evidence": [round(sum(d.worker_cores), 2) for d in with_evidence],
             "worker_cores_without_evidence": [round(sum(d.worker_cores), 2) for d in without]}
    on, off = (statistics.median(d.rate for d in v) for v in (with_evidence, without))
    record("worker evidence cost, 1 process, exactly_once",
           f"{on:,.0f} events/s with evidence (16 events, {depth})",
           f"evidence off {off:,.0f} events/s", on / off, args.runs, extra)
    on, off = (statistics.median(d.rate / sum(d.worker_cores) for d in v) for v in (with_evidence, without))
    record("worker evidence cost per worker core, 1 process, exactly_once",
           f"{on:,.0f} events per worker CPU second with evidence (16 events, {depth})",
           f"evidence off {off:,.0f}", on / off, args.runs, extra)


def run(bench: Bench, args: argparse.Namespace) -> None:
    events = node_order(make_events(200 * BATCH, seed=1))
    # batch k goes to node k % 16 with that node's next seq, so the worker sees no gaps
    batches = [wire_batch(events[i : i + BATCH], NODES[k % len(NODES)], k // len(NODES))
               for k, i in enumerate(range(0, len(events), BATCH))]
    bench.create_topics()
    rounds = max(1, args.events // (len(batches) * BATCH))
    total = bench.produce(batches, rounds)
    avg_bytes = sum(map(len, batches)) / len(batches)

    drains: dict[tuple[int, str], list[Drain]] = {(1, "exactly_once"): [], (1, "at_least_once"): [],
                                                  (2, "exactly_once"): []}
    # evidence off (PEREGRINE_EVIDENCE_EVENTS=0), 1 process exactly_once: what evidence costs
    without_evidence: list[Drain] = []
    # The first drain after the backlog is written runs cold (a control run with evidence off in every
    # drain gave 0.79 for identical code, first drain against last): one unmeasured drain warms the
    # broker and the page cache, and the two evidence drains run back to back, in turn first.
    bench.drain_rate(1, "exactly_once", total)
    on_off = [(1, "exactly_once", True, drains[(1, "exactly_once")]),
              (1, "exactly_once", False, without_evidence)]
    rest = [(n, g, True, out) for (n, g), out in drains.items()
            if (n, g) != (1, "exactly_once") and not args.evidence_only]
    for round_no in range(args.runs):
        for n, guarantee, evidence, out in [*(on_off if round_no % 2 == 0 else on_off[::-1]), *rest]:
            while True:
                try:
                    out.append(bench.drain_rate(n, guarantee, total, evidence=evidence))
                    break
                except BacklogTooSmall as exc:
                    # the default size must hold on any machine of this kind: grow it fourfold and
                    # drain again (every later drain reads the whole, larger topic)
                    if total * BATCH * 4 > MAX_BACKLOG_EVENTS:
                        raise
                    print(f"backlog too small ({exc}); growing it to {4 * total * BATCH:,} events",
                          flush=True)
                    total += bench.produce(batches, 3 * total // len(batches))
    n_events = total * BATCH
    if args.evidence_only:
        record_evidence(drains[(1, "exactly_once")], without_evidence, args, n_events, avg_bytes)
        return
    med = {k: statistics.median(d.rate for d in v) for k, v in drains.items()}
    eos1, alo1, eos2 = med[(1, "exactly_once")], med[(1, "at_least_once")], med[(2, "exactly_once")]
    common = {"load_avg_1m": round(os.getloadavg()[0], 1), "events": n_events, "batch_events": BATCH,
              "batch_bytes": round(avg_bytes),
              "partitions": PARTITIONS, "rules": "falco stable + incubating",
              "rates": {f"{n}x{g}": [round(d.rate) for d in v] for (n, g), v in drains.items()},
              "worker_cores": {f"{n}x{g}": [[round(c, 2) for c in d.worker_cores] for d in v]
                               for (n, g), v in drains.items()},
              "broker_cores": {f"{n}x{g}": [round(d.broker_cores, 2) for d in v if d.broker_cores is not None]
                               for (n, g), v in drains.items()},
              "machine_cores": {f"{n}x{g}": [round(d.machine_cores, 2) for d in v]
                                for (n, g), v in drains.items()}}
    record("worker events/s, 1 process, exactly_once", f"{eos1:,.0f} events/s",
           f"at_least_once 1 process {alo1:,.0f} events/s", eos1 / alo1, args.runs, common)
    record("worker scaling, 2 processes, exactly_once", f"{eos2:,.0f} events/s ({eos2 / 2:,.0f} per process)",
           f"1 process {eos1:,.0f} events/s", eos2 / eos1, args.runs, common)
    record_evidence(drains[(1, "exactly_once")], without_evidence, args, n_events, avg_bytes)
    # Two workers and the broker cannot each have a core on this machine, so the ratio above is bounded
    # by the CPU left to the workers. What a process costs per event says whether adding processes adds
    # throughput in proportion to the cores they get: equal efficiency at 1 and 2 processes means no
    # coordination cost grows with the group.
    per_core = {k: statistics.median(d.rate / sum(d.worker_cores) for d in v) for k, v in drains.items()}
    one, two = per_core[(1, "exactly_once")], per_core[(2, "exactly_once")]
    record("worker scaling, events per worker core, 2 processes vs 1", f"{two:,.0f} events/s per core",
           f"1 process {one:,.0f} events/s per core", two / one, args.runs, common)

    template = next(e[R.EV_PROC] for e in events if e[R.EV_PROC][R.P_CONTAINER] is not None)
    # Fresh topics: no backlog to drain first, and no transaction left open by the throughput runs'
    # workers (other groups, so nothing fences them) holding back read_committed readers.
    fresh = Bench(bench.bootstrap, bench.tmp, bench.commit_interval, bench.broker_pid)
    fresh.create_topics()
    seen, cpu = fresh.latency(eos1 / 2, args.latency_seconds, events, template, args.latency_warmup)
    if not seen:
        raise RuntimeError("no probe alert seen: latency not measured")
    q = statistics.quantiles(seen, n=100)
    figure = f"p50 {q[49] * 1000:.0f} ms, p99 {q[98] * 1000:.0f} ms"
    record("worker latency at half capacity, exactly_once", figure, "goal p99 <= 1000 ms", None, 1,
           {"rate_events_s": round(eos1 / 2), "probes": len(seen), "max_ms": round(max(seen) * 1000),
            "worker_cores": round(cpu.cores[0], 2), "bench_process_cores": round(cpu.cores[1], 2),
            "broker_cores": round(cpu.cores[2], 2) if fresh.broker_pid else None,
            "warmup_s": args.latency_warmup,
            "machine_cores": round(cpu.machine_cores, 2)})


if __name__ == "__main__":
    main()
