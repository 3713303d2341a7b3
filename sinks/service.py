"""`peregrine sink --config FILE [--destination NAME]`: deliver alerts to every configured destination.

Isolation: each destination runs its own `Runner` (own consumer group, own consumer, own HTTP
connection, own retry clock) in its own thread. Waiting on a receiver, a socket or a backoff
releases the GIL, so a destination that is down or slow holds back only its own offsets; the
others keep consuming. Threads rather than processes keep one process per pod simple; for hard
isolation (CPU, memory, crash) run one process per destination with ``--destination NAME``, which
is how the Helm chart should deploy them. If a runner thread dies of an unexpected error, the
process stops with status 1 so the orchestrator restarts it: its uncommitted alerts are consumed
again.

Suppressions (`sinks.suppress`): before the runners start, a thread reads the control topic to its
end (at most `READY_TIMEOUT_S`), then follows it for the process's life.
`peregrine sink suppress --config FILE --match rule=GLOB [--match NAME=GLOB...] --for 2h
[--destination NAME] [--reason TEXT]` adds one; the same match and destinations with ``--for 0``
lifts it.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import signal
import threading
import time
from types import FrameType

from confluent_kafka import Producer

from bus import connection as kafka_connection
from bus import topics
from bus.clients import IDEMPOTENT_PRODUCER, librdkafka_config
from bus.errors import TopicError
from sinks.config import DestinationConfig, SinkConfig, load_config
from sinks.errors import ConfigError, SinkError
from sinks.metrics import SinkMetrics, create_metrics
from sinks.runner import Runner
from sinks.suppress import READY_TIMEOUT_S, Suppression, Suppressions, encode_record, follow
from telemetry.health import Health

log = logging.getLogger("peregrine.sink")


def _arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="peregrine sink", description="Deliver alerts to Slack and SIEMs.")
    parser.add_argument("--config", required=True, help="the sink YAML file (secrets: environment)")
    parser.add_argument("--destination", action="append", default=[],
                        help="run only this destination (repeatable); default: all")
    parser.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    kafka_connection.add_arguments(parser)  # as every Kafka role; they win over the file's bootstrap_servers
    return parser.parse_args(argv)


def main(argv: list[str], health: Health | None = None) -> int:
    if argv[:1] == ["suppress"]:
        return suppress_main(argv[1:])
    args = _arguments(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = load_config(args.config, os.environ, args)
        selected = [config.destination(n) for n in args.destination] or list(config.destinations)
    except SinkError as exc:
        log.error("%s", exc)
        return 2
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %d: finishing the current batches", signum)
        stop.set()

    def on_hangup(_signum: int, _frame: FrameType | None) -> None:
        # logrotate's postrotate convention; without a handler SIGHUP would end the sink
        log.info("SIGHUP: a rotated file destination reopens at its next batch")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, on_hangup)
    return run(config, selected, stop, create_metrics(), health)


def run(config: SinkConfig, destinations: list[DestinationConfig], stop: threading.Event,
        metrics: SinkMetrics, health: Health | None = None) -> int:
    """Run the runners until ``stop`` is set or one of them fails; 0 on a clean stop, else 1.

    Probes: ready once every destination's consumer has its partitions; live while every runner
    polls its consumer within its poll interval (`sinks.runner`)."""
    health = health or Health()
    failed = threading.Event()
    suppressions = _follow_suppressions(config, stop)

    def guarded(runner: Runner, name: str) -> None:
        try:
            runner.run()
        except Exception:
            log.exception("%s: runner failed; stopping the sink", name)
            failed.set()
            stop.set()

    runners = [Runner(config.kafka, d, metrics, stop, suppressions=suppressions, health=health)
               for d in destinations]  # fmt: skip
    health.started()  # each runner declared its consumer group
    threads = [
        threading.Thread(target=guarded, args=(runner, d.name), name=f"sink-{d.name}", daemon=True)
        for runner, d in zip(runners, destinations, strict=True)
    ]
    for thread in threads:
        thread.start()
    while not stop.wait(1.0):
        pass
    for thread in threads:
        thread.join(timeout=60)
    return 1 if failed.is_set() else 0


def _follow_suppressions(config: SinkConfig, stop: threading.Event) -> Suppressions:
    """The file's suppressions plus the control topic's, read to its end before anything is sent."""
    suppressions = Suppressions(config.suppress)
    topic = config.kafka.suppressions_topic
    try:
        topics.declare(config.kafka.connection, [topics.SINK_SUPPRESSIONS.named(topic)])
    except TopicError as exc:  # a sink without the right to create topics still runs
        log.warning("suppressions: %s", exc)
    threading.Thread(target=follow, args=(config.kafka.connection, topic, suppressions, stop),
                     name="sink-suppressions", daemon=True).start()
    if not suppressions.ready.wait(READY_TIMEOUT_S):
        log.warning("suppressions: %s not read to its end in %.0fs; starting anyway", topic, READY_TIMEOUT_S)
    return suppressions


_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd]?)")
_UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``15m``, ``2h``, ``1d`` to seconds; ValueError otherwise."""
    found = _DURATION.fullmatch(text.strip())
    if found is None:
        raise ValueError(f"{text!r} is not a duration such as 90s, 15m, 2h or 1d")
    return float(found.group(1)) * _UNIT_S[found.group(2)]


def suppress_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="peregrine sink suppress",
                                     description="Silence alerts matching a key for a time, in every sink.")
    parser.add_argument("--config", required=True, help="the sink YAML file (for Kafka and the topic)")
    parser.add_argument("--match", action="append", required=True, metavar="NAME=GLOB",
                        help="rule, hostname, priority, source or an output field (repeatable: all match)")
    parser.add_argument("--for", dest="duration", required=True, help="90s, 15m, 2h, 1d; 0 lifts it")
    parser.add_argument("--destination", action="append", default=[], help="only this one (repeatable)")
    parser.add_argument("--reason", default="")
    kafka_connection.add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = load_config(args.config, os.environ, args)
        for name in args.destination:
            config.destination(name)
        pairs = [m.partition("=") for m in args.match]
        if any(not name or not sep or not glob for name, sep, glob in pairs):
            raise ConfigError("--match takes NAME=GLOB, such as rule=Terminal* or k8s.pod.name=web-*")
        try:
            seconds = parse_duration(args.duration)
        except ValueError as exc:
            raise ConfigError(f"--for: {exc}") from None
    except SinkError as exc:
        log.error("%s", exc)
        return 2
    suppression = Suppression(tuple(sorted((n, g) for n, _, g in pairs)),
                              time.time_ns() + int(seconds * 1e9), tuple(args.destination), args.reason)
    topic = config.kafka.suppressions_topic
    try:
        topics.declare(config.kafka.connection, [topics.SINK_SUPPRESSIONS.named(topic)])
    except TopicError as exc:
        log.error("%s", exc)
        return 1
    producer = Producer({**librdkafka_config(config.kafka.connection), **IDEMPOTENT_PRODUCER})
    key, value = encode_record(suppression)
    producer.produce(topic, key=key, value=value)
    if producer.flush(30) > 0:
        log.error("suppression %s not acknowledged by Kafka in 30s", suppression.id)
        return 1
    log.info("suppression %s on %s until %s", suppression.id, topic,
             time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(suppression.until_ns / 1e9)))
    return 0
