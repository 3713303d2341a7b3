"""`peregrine rules backtest`: what a rules change would have alerted on, over the retained events.

    peregrine rules backtest --rules new.yaml [--baseline current.yaml] --since 24h [--json]

Reads `peregrine.events` from ``--since`` (to ``--until``, or to the end offsets at start) in
every partition, split across ``--processes``, evaluates the ``--rules`` files and the
``--baseline`` files on every batch with the Kubernetes metadata of `peregrine.k8s`, and reports per
rule the alerts added, removed and unchanged, with samples. Without ``--baseline`` the baseline is
no rules at all: every alert is "added", which is the whole alert stream of the new rules.

Read-only: nothing is produced and no offset is committed, for any group (`backtest.read`).
Exit status: 0 done, 1 a topic or the rules could not be read, 2 bad usage.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from backtest import job, read, report
from backtest.errors import BacktestError, UsageError
from backtest.when import parse_time
from bus import connection as kafka_connection
from bus import topics
from bus.errors import BusError
from rules import RulesError

MAX_SAMPLES = 100


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="peregrine rules backtest",
        description="Evaluate a rules change against the retained peregrine.events; never writes to Kafka.",
    )
    p.add_argument("--rules", action="append", required=True, metavar="FILE",
                   help="the new rules files, loaded in this order (repeat the option)")
    p.add_argument("--baseline", action="append", default=[], metavar="FILE",
                   help="the rules to compare with, in this order (default: none, every alert is added)")
    p.add_argument("--since", required=True, metavar="WHEN",
                   help="a duration back from now (90m, 24h, 7d, 1h30m) or an ISO time (UTC if no zone)")
    p.add_argument("--until", metavar="WHEN", help="end, same forms (default: the end offsets at start)")
    p.add_argument("--processes", type=int, default=os.cpu_count() or 1, metavar="N",
                   help="processes reading partitions in parallel (default: the CPU count)")
    p.add_argument("--rule-matching", choices=("first", "all"), default="first",
                   help="first: an event alerts on its first matching rule (Falco's default); all: every one")
    p.add_argument("--json", action="store_true", help="print the report as one JSON document")
    p.add_argument("--samples", type=int, default=3, metavar="K",
                   help=f"added and removed alerts shown per rule (default 3, at most {MAX_SAMPLES})")
    p.add_argument("--events-topic", default=topics.EVENTS.name, help="default %(default)s")
    p.add_argument("--k8s-topic", default=topics.K8S.name, help="Kubernetes metadata, default %(default)s")
    p.add_argument("--no-k8s", action="store_true", help="evaluate without Kubernetes metadata")
    p.add_argument("--stall-timeout", type=float, default=60.0, metavar="SECONDS",
                   help="give up when a partition yields nothing this long (default %(default)s)")
    kafka_connection.add_arguments(p)
    return p  # fmt: skip


def main(argv: list[str]) -> int:
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # argparse exits on --help (0) and on bad usage (2)
        return int(exc.code or 0)
    try:
        settings, since_ms, until_ms, processes = _settings(args)
    except (UsageError, BusError) as exc:
        print(f"peregrine rules backtest: {exc}", file=sys.stderr)
        return 2
    try:
        t0 = time.perf_counter()
        table, bad = job.load_table(settings)
        evaluator = job.Evaluator(settings, table, bad)
        spans = read.plan(settings.connection, settings.events_topic, since_ms, until_ms)
        outcome = job.run(evaluator, spans, processes)
        doc = report.document(evaluator, outcome, spans, since_ms, until_ms, time.perf_counter() - t0)
    except RulesError as exc:
        print(f"peregrine rules backtest: cannot load the rules: {exc.render()}", file=sys.stderr)
        return 1
    except BacktestError as exc:
        print(f"peregrine rules backtest: {exc}", file=sys.stderr)
        return 1
    (report.write_json if args.json else report.write_text)(doc, sys.stdout)
    return 0


def _settings(args: argparse.Namespace) -> tuple[job.Settings, int, int | None, int]:
    now_ms = time.time_ns() // 1_000_000
    since_ms = parse_time(args.since, now_ms, "--since")
    until_ms = None if args.until is None else parse_time(args.until, now_ms, "--until")
    if until_ms is not None and until_ms <= since_ms:
        raise UsageError(f"--until {args.until!r} is not after --since {args.since!r}")
    if args.processes < 1:
        raise UsageError(f"--processes {args.processes}: at least 1")
    if not 0 <= args.samples <= MAX_SAMPLES:
        raise UsageError(f"--samples {args.samples}: from 0 to {MAX_SAMPLES}")
    settings = job.Settings(
        connection=kafka_connection.from_args(args),
        events_topic=args.events_topic,
        k8s_topic=None if args.no_k8s else args.k8s_topic,
        rules=tuple(args.rules),
        baseline=tuple(args.baseline),
        all_matches=args.rule_matching == "all",
        samples=args.samples,
        stall_s=args.stall_timeout,
    )
    return settings, since_ms, until_ms, args.processes
