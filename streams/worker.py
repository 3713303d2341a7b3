"""`peregrine worker`: wires the config, the rules, the Kubernetes table and the agents, then runs Faust.

At start: rules load (a bad file is fatal here: exit 2 with the loader's message), missing topics
are created (before Faust subscribes; an uncompacted `peregrine.k8s` is refused), the Kubernetes
table is read from the start of `peregrine.k8s` (the detection agent waits up to ``--k8s-wait``
seconds for it to catch up, then evaluates anyway and the table keeps following), SIGHUP is
bound to the rules reload, and the rules' interest is published to `peregrine.control` for the
collectors (then again after each reload that changes it: `streams.control`). Faust handles
SIGTERM/SIGINT (commit, leave the group, stop).

Probes (`telemetry.health`): the worker is ready once its rules are loaded (before Faust starts)
and its consumer has been given its partitions (the first assignment of the group, even an empty
one: a worker beyond the partition count is a standby, and ready); it is live while its event
loop, which runs every agent, beats at least once a minute.

Every worker reads the whole `peregrine.k8s` topic with its own group-less consumer: the table is
small (one record per container) and every batch may reference any container.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace

import faust
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from faust.types import TP

from bus import topics as catalog
from bus.clients import aiokafka_kwargs
from enrichers.errors import RecordError
from enrichers.metrics import table_metrics
from enrichers.table import K8sTable
from streams import app as worker_app
from streams.config import ConfigError, WorkerConfig, from_args
from streams.control import InterestPublisher
from streams.control_sweep import Sweeper
from streams.detect import Detector, install_detection
from streams.drops import install_drops
from streams.evidence import History
from streams.k8swait import K8sWait
from streams.letters import DeadLetters, LetterBudget
from streams.logsafe import shown
from streams.metrics import WorkerMetrics, worker_metrics
from streams.reload import LiveRules, Rule, RulesEngine, falco_engine
from streams.rulecost import RuleCosts
from telemetry.health import Health

log = logging.getLogger("peregrine.worker")
_GC_THRESHOLD = 50_000  # allocations between young collections; a 500-event batch is ~2,000 lists


def tune_gc() -> None:
    """The worker's collector settings, once its start-up state exists (benchmarks use them too)."""
    # Batches are acyclic (reference counting frees them); what the cyclic collector keeps
    # rescanning is the long-lived start-up state (Faust, compiled rules): move it out of its way.
    gc.freeze()
    # A decoded batch is thousands of lists alive at once: at the default threshold (700) the
    # collector ran ~5 times per batch for nothing, 0.5 us/event. Above a batch's live set, it
    # runs only when something really accumulates.
    gc.set_threshold(_GC_THRESHOLD)


LOOP_BEAT_S = 5.0
LOOP_SILENCE_S = 60.0  # a loop blocked this long is wedged: the liveness probe fails


def main(argv: Sequence[str], health: Health | None = None) -> int:
    try:
        config = from_args(argv)
    except ConfigError as exc:
        print(f"peregrine worker: {exc}", file=sys.stderr)
        return 2
    return run(config, falco_engine(), health)


def run(config: WorkerConfig, engine: RulesEngine[Rule], health: Health | None = None) -> int:
    """Run until stopped; returns the process exit code. `health` is what the probes answer from
    (`telemetry.setup_telemetry` serves it); without one the state is kept but not served."""
    health = health or Health()
    health.waiting("consumer group", "no partitions assigned yet")
    health.started()
    metrics = worker_metrics()
    table = K8sTable()
    table_metrics(table)  # the worker's copy of peregrine.k8s: size, hits, misses for Grafana
    try:
        rules = LiveRules(engine, config.rules_files, metrics, ip_names=table.ip_names,
                          all_matches=config.all_matches)
    except Exception as exc:
        print(f"peregrine worker: cannot load the rules: {exc}", file=sys.stderr)
        return 2
    app, topics = worker_app.build_app(config)
    publisher = InterestPublisher(config.connection, config.topics.control, config.app_id, config.replica,
                                  metrics.control_published)
    rules.swapped.append(lambda: publisher.offer(rules.ruleset.interest))

    def assigned(sender: object, /, *args: object, signal: object, **kwargs: object) -> None:
        health.holds("consumer group")
        publisher.joined(worker_app.member_id(app))

    app.on_partitions_assigned.connect(assigned)

    @app.timer(LOOP_BEAT_S)  # type: ignore[untyped-decorator]
    async def beat() -> None:
        health.beat("event loop", LOOP_SILENCE_S)
    emitter = worker_app.Emitter(app)
    ready = asyncio.Event()
    costs = _rule_costs(config, engine, rules, metrics)
    history = History(config.evidence_events, config.evidence_depth, config.evidence_max_events)
    detector = Detector(rules, table.enrich, costs, history)
    k8s_wait = K8sWait(config.k8s_wait_new, table.lookup, table.enrich)
    metrics.sizes.attach("k8s_waited", k8s_wait.new)
    metrics.sizes.attach("seq", detector.seq)
    metrics.sizes.attach("refused", emitter)
    budget = LetterBudget()
    metrics.sizes.attach("letters", budget)
    letters = DeadLetters(topics.dlq.get_topic_name(), metrics, budget)
    emitter.letters_by(letters.letter_for)
    install_detection(app, topics, detector, emitter, letters, metrics, ready, config.k8s_wait, k8s_wait)
    install_drops(app, topics, emitter, letters, metrics)

    async def withdraw(sender: object, /, *args: object, signal: object, **kwargs: object) -> None:
        # after the consumer stopped: no event is evaluated by these rules any more
        await publisher.withdraw()

    app.on_before_shutdown.connect(withdraw)
    events_head = TP(config.topics.events, 0)
    sweeper = Sweeper(config.connection, config.topics.control, config.app_id, config.control_grace,
                      # one member holds it when the group is stable: Faust's leader topic is off
                      is_leader=lambda: events_head in app.consumer.assignment(),
                      on_swept=lambda n: metrics.control_published.add(n, {"outcome": "swept"}))

    @app.task  # type: ignore[untyped-decorator]
    async def sweep_interest() -> None:
        await sweeper.run()

    @app.task  # type: ignore[untyped-decorator]
    async def publish_interest() -> None:
        publisher.offer(rules.ruleset.interest)
        await publisher.run()

    # Before Faust subscribes: it drops topics missing at subscription time and never looks again.
    try:
        declare_topics(config)
    except Exception as exc:
        print(f"peregrine worker: cannot create the topics: {exc}", file=sys.stderr)
        return 1
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)

    @app.task  # type: ignore[untyped-decorator]
    async def start() -> None:
        running = asyncio.get_running_loop()
        rules.install_sighup(running)
        # the per-rule profile compiles every rule again: seconds of a thread, not of the start
        # (rebuild logs its own failures)
        running.run_in_executor(None, costs.rebuild)
        tune_gc()
        while True:  # the table must keep following; a broker hiccup restarts it from the beginning
            try:
                await follow_k8s(config, topics.k8s.get_topic_name(), table, ready, k8s_wait.applied)
            except Exception:
                log.exception("following %s failed; retrying in 5 s", topics.k8s.get_topic_name())
                await asyncio.sleep(5)

    worker = faust.Worker(app, loop=loop, loglevel=config.log_level, quiet=True)
    # At --log-level warning or above Faust adds a terminal spinner and sets the root logger to DEBUG
    # so that every aiokafka debug call builds a record for it (3-6% of a worker's CPU).
    worker.spinner = None
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    return 0


def _rule_costs(
    config: WorkerConfig, engine: RulesEngine[Rule], rules: LiveRules[Rule], metrics: WorkerMetrics
) -> RuleCosts:
    profile = engine.profile
    paths = [str(p) for p in config.rules_files]
    build = None if profile is None else lambda: profile(paths, ip_names=rules.ip_names)
    costs = RuleCosts(build, metrics.rules, every=config.rule_cost_every)
    rules.after_reload.append(costs.rebuild)
    return costs


async def follow_k8s(
    config: WorkerConfig, topic: str, table: K8sTable, ready: asyncio.Event, applied: Callable[[], None]
) -> None:
    """Fold `peregrine.k8s` into the table from the beginning, forever; set `ready` once at the end,
    and call `applied` after each fetch folded in (a batch may be waiting for a container)."""
    consumer = AIOKafkaConsumer(
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        **aiokafka_kwargs(config.connection),
    )
    await consumer.start()
    try:
        partitions = await _partitions(config, topic)
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        bad = 0
        while True:
            if not ready.is_set() and all([await consumer.position(tp) >= end[tp] for tp in tps]):
                log.info("Kubernetes table caught up: %d containers", len(table))
                ready.set()
            records = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            for messages in records.values():
                for m in messages:
                    try:
                        table.apply(m.key or b"", m.value)
                    except RecordError as exc:
                        bad += 1
                        if bad == 1 or bad % 1000 == 0:
                            log.warning("undecodable %s records: %d (latest: %s)", topic, bad, shown(exc))
            if records:
                applied()
    finally:
        await consumer.stop()


def declare_topics(config: WorkerConfig) -> None:
    """Create the worker's topics that do not exist (partitions, replication; peregrine.k8s compacted,
    peregrine.control compacted with its one partition)."""
    t = config.topics
    sized = [catalog.EVENTS.named(t.events), catalog.STATS.named(t.stats), catalog.ALERTS.named(t.alerts),
             catalog.EVENTS_DLQ.named(t.dlq), catalog.K8S.named(t.k8s)]  # fmt: skip
    specs = [replace(s, partitions=config.partitions) for s in sized] + [catalog.CONTROL.named(t.control)]
    catalog.declare(config.connection, specs, config.replication)


async def _partitions(config: WorkerConfig, topic: str) -> set[int]:
    admin = AIOKafkaAdminClient(**aiokafka_kwargs(config.connection))
    await admin.start()
    try:
        for _ in range(60):
            described = await admin.describe_topics([topic])
            parts = {p["partition"] for d in described if d["error_code"] == 0 for p in d["partitions"]}
            if parts:
                return parts
            await asyncio.sleep(0.5)
    finally:
        await admin.close()
    raise RuntimeError(f"topic {topic!r} has no partitions after 30 s")
