"""`peregrine sink --config FILE [--destination NAME]`: deliver alerts to every configured destination.

Isolation: each destination runs its own `Runner` (own consumer group, own consumer, own HTTP
connection, own retry clock) in its own thread. Waiting on a receiver, a socket or a backoff
releases the GIL, so a destination that is down or slow holds back only its own offsets; the
others keep consuming. Threads rather than processes keep one process per pod simple; for hard
isolation (CPU, memory, crash) run one process per destination with ``--destination NAME``, which
is how the Helm chart should deploy them. If a runner thread dies of an unexpected error, the
process stops with status 1 so the orchestrator restarts it: its uncommitted alerts are consumed
again.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
from types import FrameType

from bus import connection as kafka_connection
from sinks.config import DestinationConfig, SinkConfig, load_config
from sinks.errors import SinkError
from sinks.metrics import SinkMetrics, create_metrics
from sinks.runner import Runner

log = logging.getLogger("peregrine.sink")


def _arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="peregrine sink", description="Deliver alerts to Slack and SIEMs.")
    parser.add_argument("--config", required=True, help="the sink YAML file (secrets: environment)")
    parser.add_argument("--destination", action="append", default=[],
                        help="run only this destination (repeatable); default: all")
    parser.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    kafka_connection.add_arguments(parser)  # as every Kafka role; they win over the file's bootstrap_servers
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
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
    return run(config, selected, stop, create_metrics())


def run(config: SinkConfig, destinations: list[DestinationConfig], stop: threading.Event,
        metrics: SinkMetrics) -> int:
    """Run the runners until ``stop`` is set or one of them fails; 0 on a clean stop, else 1."""
    failed = threading.Event()

    def guarded(runner: Runner, name: str) -> None:
        try:
            runner.run()
        except Exception:
            log.exception("%s: runner failed; stopping the sink", name)
            failed.set()
            stop.set()

    threads = [
        threading.Thread(target=guarded, args=(Runner(config.kafka, d, metrics, stop), d.name),
                         name=f"sink-{d.name}", daemon=True)
        for d in destinations
    ]
    for thread in threads:
        thread.start()
    while not stop.wait(1.0):
        pass
    for thread in threads:
        thread.join(timeout=60)
    return 1 if failed.is_set() else 0
