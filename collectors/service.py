"""`peregrine collect | record | replay`: wiring of the collector and its shutdown.

* `collect`: probe -> reader -> decoder (process table, cgroups) -> batcher -> Kafka, plus
  per-second stats on `peregrine.stats`; a thread follows what the workers' rules need on
  `peregrine.control` (`collectors.control`; ``--no-follow-control``).
* `record --out FILE`: the same capture, written to a capture file instead of Kafka.
* `replay FILE`: publish a capture to Kafka at the recorded rate or as fast as possible.

One thread: every `poll_interval_ms` the ring buffer is drained, decoded and batched; batches
close by size or age; stats go out every `stats_interval_ms`. With `--rules`, the kernel drops
the events no rule can match (the rules' interest, collectors.interest_maps); SIGHUP reads the
rules files again and applies their interest live (`--no-interest`: keep every event of the
types the rules name). On SIGTERM/SIGINT (or after
`--duration`) the programs are detached first, so the final drain and the final stats account
for every record the probe emitted; the last stderr line is a JSON summary with the kernel's
own counters.

Probes (`telemetry.health`, `collect` only): ready once the probe is loaded and attached; live while
the capture loop beats, every poll interval (a minute without one is a wedged loop: the kernel's
ring would be dropping everything meanwhile).
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from bus import connection as kafka_connection
from bus import topics
from bus.connection import KafkaConnection
from bus.errors import ConnectionConfigError
from collectors import control, interest_maps, loader
from collectors.batch import Batcher, DropWindow
from collectors.btf import Btf
from collectors.capture import CaptureWriter, read_capture
from collectors.cgroups import CgroupResolver
from collectors.config import CollectorConfig
from collectors.decode import Decoder
from collectors.errors import CollectorError
from collectors.header import PG_CNT_BAD_REGS, PG_CNT_EVTS, PG_CNT_PAGE_FAULT, PG_CNT_RING_FULL
from collectors.metrics import CollectorMetrics
from collectors.proctable import ProcTable
from collectors.reader import Reader
from collectors.stats import Stats, StatsCounter, encode_stats
from collectors.wire import DROP_CAUSES, Batch, encode_batch
from rules.interest import TypeInterest
from rules.record import EVENT_TYPE_IDS, EVENT_TYPES
from telemetry.health import Health

log = logging.getLogger("peregrine.collector")

# the kernel counters a batch's drops need (not PG_CNT_EVTS: one lookup fewer per drain)
_DROP_COUNTERS = (PG_CNT_RING_FULL, PG_CNT_BAD_REGS, PG_CNT_PAGE_FAULT)


class Sink(Protocol):
    queue_full_events: int
    failed_events: int
    delivered_events: int
    delivered_batches: int
    bytes_sent: int
    errors: int

    def send(self, kind: str, key: bytes, value: bytes, n_events: int) -> bool: ...
    def poll(self) -> None: ...
    def queue_depth(self) -> int: ...
    def close(self, timeout_s: float) -> int: ...


def boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return ""


def boot_to_epoch_ns() -> int:
    """Offset from CLOCK_BOOTTIME (the probe's clock) to the Unix epoch."""
    return time.time_ns() - time.clock_gettime_ns(time.CLOCK_BOOTTIME)


class _Stop:
    def __init__(self) -> None:
        self.requested = False

    def __call__(self, _sig: int, _frame: Any) -> None:
        self.requested = True


LOOP_SILENCE_S = 60.0


@dataclass
class _Flow:
    """The data path of one capture: ring -> decoder -> batcher -> sink, and the stats beside it."""

    config: CollectorConfig
    sink: Sink
    probe: loader.Probe
    reader: Reader
    decoder: Decoder
    key: bytes
    counter: StatsCounter
    instruments: CollectorMetrics
    batcher: Batcher = field(init=False)
    drops: DropWindow = field(init=False)
    last_sent: dict[str, int] = field(default_factory=lambda: {"batches": 0, "bytes": 0, "errors": 0})
    last_filtered: dict[tuple[str, str], int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.drops = DropWindow(time.time_ns(), self.drop_totals())
        self.batcher = Batcher(self.config.node, self.counter.boot_id, self.config.batch_max_events,
                               self.config.batch_max_age_ms * 1_000_000, drops=self.drops)  # fmt: skip

    def drop_totals(self) -> tuple[int, ...]:
        """Cumulative losses in DROP_CAUSES order; the kernel's total is not needed, so not read."""
        ring_full, bug, page_faults = self.reader.kernel_counters(_DROP_COUNTERS)
        by_cause = {
            "ring_full": ring_full, "inflight_full": 0, "bug": bug, "page_fault_reads": page_faults,
            "userspace_queue_full": self.sink.queue_full_events, "delivery_failed": self.sink.failed_events,
        }  # fmt: skip
        return tuple(by_cause[c] for c in DROP_CAUSES)

    def emit(self, b: Batch | None) -> None:
        if b is not None:
            self.sink.send("events", self.key, encode_batch(b), len(b.events))

    def totals(self) -> dict[str, int]:
        k = self.reader.kernel_counters()
        return {
            "n_evts": k[PG_CNT_EVTS],
            "n_read": self.decoder.n_read,
            "ring_full": k[PG_CNT_RING_FULL],
            "inflight_full": 0,  # this probe keeps no enter/exit map (arguments come from pt_regs)
            "bug": k[PG_CNT_BAD_REGS],
            "page_fault_reads": k[PG_CNT_PAGE_FAULT],
            "userspace_queue_full": self.sink.queue_full_events,
            "delivery_failed": self.sink.failed_events,
        }

    def publish_stats(self) -> Stats:
        sink, last_sent = self.sink, self.last_sent
        s = self.counter.delta(time.time_ns(), self.totals())
        sink.send("stats", self.key, encode_stats(s), 0)
        self.instruments.record(
            s,
            sink.delivered_batches - last_sent["batches"],
            sink.bytes_sent - last_sent["bytes"],
            sink.errors - last_sent["errors"],
        )
        last_sent.update(batches=sink.delivered_batches, bytes=sink.bytes_sent, errors=sink.errors)
        now = interest_maps.filtered(self.probe)
        self.instruments.record_filtered({k: n - self.last_filtered.get(k, 0) for k, n in now.items()})
        self.last_filtered.update(now)
        return s

    def pump(self) -> None:
        records = self.reader.drain()
        # right after the drain, before its events are batched: `DropWindow` says why this order
        self.drops.read(time.time_ns(), self.drop_totals())
        now = time.monotonic_ns()
        if records:
            for b in self.batcher.extend(self.decoder.decode_records(records), now):
                self.emit(b)
        if self.batcher.due(now):
            self.emit(self.batcher.close())


def _build(config: CollectorConfig) -> tuple[list[str], frozenset[str], frozenset[str]]:
    """The probe's compile flags for this kernel (BTF offsets), the types it traces and lacks."""
    loader.preflight()
    btf = Btf.load()
    wanted = loader.wanted_types(config.event_types)
    cflags, traced, missing = loader.build_cflags(btf, wanted, os.getpid(), config.ring_bytes)
    if missing:
        log.info("not on this kernel, not traced: %s", " ".join(sorted(missing)))
    return cflags, traced, missing


def run(config: CollectorConfig, sink: Sink, health: Health | None = None) -> dict[str, int]:
    """Capture until signalled or `duration_s`; returns the final cumulative totals."""
    health = health or Health()
    health.waiting("probe", "not loaded and attached yet")
    health.started()
    cflags, traced, missing = _build(config)
    offset = boot_to_epoch_ns()
    cgroups = CgroupResolver()
    procs = ProcTable(config.node, offset, cgroups)
    n_seeded = procs.seed()
    probe = loader.load_probe(cflags, traced, missing)
    n_named = interest_maps.seed_names(probe, procs)
    interest_maps.apply_interest(probe, config.interest, config.fdtypes)
    health.holds("probe")
    from collectors import native

    # the probe decides what is published: it flags the records kept for the process table only
    openat = native.load("openevent", native.OPENEVENT).openat
    decoder = Decoder(procs, offset, EVENT_TYPE_IDS.values(), openat)
    counter = StatsCounter(config.node, boot_id(), time.time_ns())
    flow = _Flow(config, sink, probe, Reader(probe.bpf), decoder, config.node.encode(), counter,
                 CollectorMetrics(sink.queue_depth))  # fmt: skip
    stop = _Stop()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    reload = InterestReload(config.rules_files) if config.interest is not None else None
    # SIGHUP reloads the rules' interest; without one (--no-interest, --event-types) it is only
    # logged, never the default action, which would end the capture
    signal.signal(signal.SIGHUP, reload.request if reload is not None else _hup_ignored)
    # The hot path allocates several lists per event and creates no reference cycles, yet the
    # cyclic GC's automatic passes (triggered by allocation counts) cost about as much as the
    # decoding itself. Startup objects are frozen out of its reach, and it runs only on the
    # sweep timer, which still frees any cycle a rare path (an exception, a callback) leaves.
    gc.collect()
    gc.freeze()
    gc.disable()
    live = probe.live
    log.warning(
        "peregrine collector ready: node %s, %d processes seeded (%d named in the probe), tracing %d event "
        "types, interest %s",
        config.node, n_seeded, n_named, len(live.attached),
        "off" if config.interest is None else f"on ({len(live.types)} types, {len(live.keys)} keys)",
    )
    sys.stderr.flush()
    _loop(config, flow, procs, stop, reload, health)

    loader.detach(probe)
    flow.pump()
    flow.emit(flow.batcher.close())
    flow.publish_stats()
    left = sink.close(30.0)
    final = flow.totals()
    final["undelivered_at_exit"] = left
    final["events_published"] = flow.decoder.num
    final["events_delivered"] = sink.delivered_events
    summary: dict[str, Any] = {"collector_final": final, "interest": _by_type(interest_maps.filtered(probe))}
    print(json.dumps(summary), file=sys.stderr, flush=True)
    flow.reader.close()
    probe.bpf.cleanup()
    cgroups.close()
    gc.enable()
    return final


def _loop(config: CollectorConfig, flow: _Flow, procs: ProcTable, stop: _Stop, reload: InterestReload | None,
          health: Health) -> None:  # fmt: skip
    """Drain, batch and publish every poll interval until `stop` or `duration_s`; stats, reloads,
    the workers' interest and the process table's sweep on their own timers."""
    poll_s = config.poll_interval_ms / 1000
    stats_ns = config.stats_interval_ms * 1_000_000
    started = time.monotonic()
    next_stats = time.monotonic_ns() + stats_ns
    next_sweep = time.monotonic() + config.sweep_interval_s
    next_tick = time.monotonic()
    # the workers' interest (peregrine.control) is followed in a thread of its own, and applied here:
    # bcc's objects are not thread-safe
    handed = control.Handover()
    follower = control.follow(config, handed.put)
    while not stop.requested:
        health.beat("capture loop", LOOP_SILENCE_S)
        if config.duration_s is not None and time.monotonic() - started >= config.duration_s:
            break
        # a fixed period, not a fixed sleep: with a backlog the next drain starts at once
        next_tick += poll_s
        delay = next_tick - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        else:
            next_tick = time.monotonic()
        flow.pump()
        flow.sink.poll()
        if time.monotonic_ns() >= next_stats:
            flow.publish_stats()
            next_stats += stats_ns
        if reload is not None and reload.ready():
            reload.apply(flow.probe, follower)
        if handed.ready():
            interest_maps.apply_interest(flow.probe, handed.take(), config.fdtypes)
        if time.monotonic() >= next_sweep:
            procs.sweep()
            gc.collect()
            next_sweep += config.sweep_interval_s
    if follower is not None:
        follower.stop()


def _hup_ignored(_sig: int, _frame: Any) -> None:
    log.warning("SIGHUP ignored: no interest to reload (--no-interest, --event-types or no --rules)")


def _by_type(counts: dict[tuple[str, str], int]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for (name, reason), n in counts.items():
        out.setdefault(name, {})[reason] = n
    return out


class InterestReload:
    """SIGHUP: the rules files are read again in a thread (a large ruleset takes seconds to
    compile, and the capture loop must keep draining meanwhile), then their interest is applied
    from the loop. A file that does not load leaves the interest as it was (logged)."""

    def __init__(self, files: tuple[str, ...]) -> None:
        self.files = files
        self._thread: threading.Thread | None = None
        self._loaded: Mapping[str, TypeInterest] | None = None

    def request(self, _sig: int, _frame: Any) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._load, name="interest-reload", daemon=True)
            self._thread.start()

    def _load(self) -> None:
        import rules

        try:
            self._loaded = rules.load(list(self.files)).interest
        except (rules.RulesError, OSError) as exc:
            log.error("rules files not reloaded, the interest stays as it was: %s", exc)

    def ready(self) -> bool:
        return self._loaded is not None

    def apply(self, probe: loader.Probe, follower: control.ControlFollower | None) -> None:
        """Apply the files' interest; while the collector follows the workers' interest, the files'
        is only the fallback, in effect when no worker has a record."""
        interest, self._loaded = self._loaded, None
        if follower is not None:
            follower.replace_fallback(interest)
            log.warning("rules files read again: their interest is the fallback of %s", follower.topic)
            return
        interest_maps.apply_interest(probe, interest)
        log.warning("interest applied: %d event types, %d keys", len(probe.live.types), len(probe.live.keys))


def _selection(
    args: argparse.Namespace,
) -> tuple[frozenset[str] | None, Mapping[str, TypeInterest] | None, bool]:
    """The event types to capture; with rules and the filter on, their interest; and whether the
    rules read fd.types (`rules.interest`'s verdict per type: what the fd table follows when there
    is no interest)."""
    ruleset = None
    if args.rules:
        import rules

        ruleset = rules.load(args.rules)
    fd_tables = ruleset is not None and any(t.fd_table for t in ruleset.interest.values())
    if args.event_types:
        names = frozenset(n.strip() for n in args.event_types.split(",") if n.strip())
        unknown = names - set(EVENT_TYPES)
        if unknown:
            raise CollectorError(f"unknown event types: {', '.join(sorted(unknown))}")
        return names, None, fd_tables
    if ruleset is not None:
        names = frozenset(EVENT_TYPES[i] for i in ruleset.event_type_ids)
        return names, None if args.no_interest else ruleset.interest, fd_tables
    return None, None, False


def _fixed_selection(args: argparse.Namespace) -> bool:
    """Whether what is captured is fixed at start, so the workers' interest is not followed:
    `--event-types` (the explicit choice wins over any rules), `--no-interest` (every event of the
    types), `--no-follow-control`."""
    return bool(args.event_types or args.no_interest or args.no_follow_control)


def _capture_parser(role: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"peregrine {role}", description=__doc__.split("\n")[0])
    p.add_argument("--node", default=None, help="node name (default: the host name)")
    p.add_argument("--rules", action="append", default=[], help="rules file; capture only what they need")
    p.add_argument("--event-types", default="", help="comma-separated event types (overrides --rules)")
    p.add_argument("--no-interest", action="store_true",
                   default=os.environ.get("PEREGRINE_NO_INTEREST", "") not in ("", "0"),
                   help="keep every event of the types the rules name, not only those a rule can match "
                        "(env PEREGRINE_NO_INTEREST=1)")
    p.add_argument("--ring-mb", type=int, default=16, help="ring buffer size in MiB (power of two)")
    p.add_argument("--ring-kb", type=int, default=0, help="ring buffer size in KiB (overrides --ring-mb)")
    p.add_argument("--batch-events", type=int, default=500)
    p.add_argument("--batch-ms", type=int, default=20)
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    p.add_argument("--print-source", action="store_true", help="print the probe source and cflags, exit")
    if role == "collect":
        p.add_argument("--events-topic", default=topics.EVENTS.name)
        p.add_argument("--stats-topic", default=topics.STATS.name)
        p.add_argument("--queue-max", type=int, default=20000, help="producer queue bound (messages)")
        p.add_argument("--control-topic", default=topics.CONTROL.name,
                       help="where the workers publish what their rules need (collectors.control)")
        p.add_argument("--no-follow-control", action="store_true",
                       help="do not follow --control-topic: keep what --rules select (--event-types and "
                            "--no-interest do not follow it either)")
        kafka_connection.add_arguments(p)
    else:
        p.add_argument("--out", required=True, help="capture file to write")
    return p


def _config(args: argparse.Namespace, kafka: KafkaConnection) -> CollectorConfig:
    event_types, interest, fd_tables = _selection(args)
    c = CollectorConfig(
        kafka=kafka,
        event_types=event_types,
        interest=interest,
        rules_files=tuple(args.rules),
        fdtypes=fd_tables,
        ring_bytes=(args.ring_kb << 10) if args.ring_kb else (args.ring_mb << 20),
        batch_max_events=args.batch_events,
        batch_max_age_ms=args.batch_ms,
        duration_s=args.duration,
    )
    if args.node:
        c = replace(c, node=args.node)
    if hasattr(args, "events_topic"):
        c = replace(c, events_topic=args.events_topic, stats_topic=args.stats_topic,
                    queue_max_messages=args.queue_max,
                    control_topic=None if _fixed_selection(args) else args.control_topic)  # fmt: skip
    return c


def _capture(role: str, argv: list[str], health: Health | None) -> int:
    args = _capture_parser(role).parse_args(argv)
    if args.print_source:
        return loader.main(["--print-source", *sorted(_selection(args)[0] or ())])
    kafka = _connection(args) if role == "collect" else KafkaConnection()
    if kafka is None:
        return 2
    config = _config(args, kafka)
    sink: Sink
    if role == "collect":
        from collectors.publish import Publisher

        sink = Publisher(
            config.kafka,
            {"events": config.events_topic, "stats": config.stats_topic},
            f"peregrine-collector-{config.node}",
            config.queue_max_messages,
            config.message_timeout_ms,
        )
    else:
        sink = CaptureWriter(args.out)
    run(config, sink, health)
    return 0


def _replay(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="peregrine replay", description="publish a capture file to Kafka")
    p.add_argument("file")
    p.add_argument("--events-topic", default=topics.EVENTS.name)
    p.add_argument("--stats-topic", default=topics.STATS.name)
    p.add_argument("--max-rate", action="store_true", help="publish as fast as possible")
    kafka_connection.add_arguments(p)
    args = p.parse_args(argv)
    from collectors.publish import Publisher

    kafka = _connection(args)
    if kafka is None:
        return 2
    pub = Publisher(
        kafka, {"events": args.events_topic, "stats": args.stats_topic}, "peregrine-replay", 100_000, 120_000
    )
    sent = {"events": 0, "stats": 0}
    first_t: int | None = None
    start = time.monotonic_ns()
    for frame in read_capture(args.file):
        if not args.max_rate:
            first_t = frame.t_ns if first_t is None else first_t
            wait = (frame.t_ns - first_t) - (time.monotonic_ns() - start)
            if wait > 0:
                time.sleep(wait / 1e9)
        while not pub.send(frame.kind, frame.key, frame.value, 0):
            pub.wait(0.1)  # queue full: wait for deliveries (replay may block, capture never does)
            if pub.refused:
                break
        if pub.refused:
            break
        sent[frame.kind] += 1
        pub.poll()
    deadline = time.monotonic() + 60.0
    while pub.queue_depth() and not pub.refused and time.monotonic() < deadline:
        pub.wait(0.2)
    if pub.refused:
        pub.close(0)
        print(f"peregrine replay: Kafka at {kafka.servers} {pub.refused}", file=sys.stderr)
        return 2
    left = pub.close(1.0)
    print(json.dumps({"replayed": sent, "undelivered": left}))
    return 0 if left == 0 else 1


def _connection(args: argparse.Namespace) -> KafkaConnection | None:
    """Where Kafka is and how to reach it, or None after printing why the settings are unusable."""
    try:
        return kafka_connection.from_args(args)
    except ConnectionConfigError as exc:
        print(f"peregrine: {exc}", file=sys.stderr)
        return None


def main(argv: list[str], health: Health | None = None) -> int:
    """Entry point for `peregrine collect|record|replay` (cli.main passes the role first, and for
    `collect` the Health its probes answer from)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if not argv or argv[0] not in ("collect", "record", "replay"):
        print("usage: collectors.service {collect|record|replay} ...", file=sys.stderr)
        return 2
    role, rest = argv[0], argv[1:]
    try:
        return _replay(rest) if role == "replay" else _capture(role, rest, health)
    except CollectorError as exc:
        print(f"peregrine {role}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
