"""Both rule sets over the planned spans, with the enrichment the worker would have had.

Per batch the steps are the worker's (`streams.detect.Detector`): decode with the C wire decoder
(`collectors.wire.Decoder`), fill the process records' container slot from the Kubernetes table
(`K8sTable.enrich`), evaluate the whole batch (`Ruleset.evaluate`, first-match or all-matches),
then, instead of producing alerts, compare the two rule sets' matches (`backtest.compare`). A batch
that does not decode, or that a rule set raises on, is counted (the worker dead-letters it) and
skipped. Unlike the worker, a batch whose node name the worker would refuse is still evaluated.

Enrichment: the whole `peregrine.k8s` table (compacted: the latest record per container) is read
before evaluating. That is today's metadata for the containers still known, tombstoned ones within
their grace period included, not a point-in-time view: a pod deleted past its grace period is not
in the table, and its events evaluate with the ``k8s.*`` fields missing, as a worker started now
would evaluate them. (Replaying the topic by time would not give the past either: compaction keeps
only the latest value of each key.)

Processes: the parent loads the table and compiles the rules once (then sets the cyclic garbage
collector aside as the worker does), then forks; each child inherits
them, reads its share of the spans (partitions split by size) and sends back its counts and diffs,
which are small (bounded samples, keyed by rule name).
"""

from __future__ import annotations

import gc
import multiprocessing
import multiprocessing.queues
import queue
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final, TypeAlias

import rules
from backtest import read
from backtest.compare import Diffs, Rendered, Where
from backtest.errors import BacktestError, ReadError
from bus.connection import KafkaConnection
from collectors.wire import Decoder, WireError
from enrichers.errors import RecordError
from enrichers.errors import TopicError as K8sTopicError
from enrichers.table import K8sTable
from enrichers.topic import read_records
from rules.record import Event

MAX_REASON_CHARS: Final = 200  # the first failure's text is kept for the report, bounded
_CHILD_WAIT_S: Final = 1.0
_CLEAN_EXIT_GRACE: Final = 10  # waits of _CHILD_WAIT_S
_GC_THRESHOLD: Final = 50_000  # allocations between young collections, as the worker sets it
Results: TypeAlias = "multiprocessing.queues.Queue[tuple[int, Share | str]]"  # a child's share, or its error


@dataclass(frozen=True, slots=True)
class Settings:
    connection: KafkaConnection
    events_topic: str
    k8s_topic: str | None  # None: evaluate without Kubernetes metadata
    rules: tuple[str, ...]
    baseline: tuple[str, ...]  # empty: compare against no rules (every alert is added)
    all_matches: bool = False
    samples: int = 3
    stall_s: float = 60.0


@dataclass(slots=True)
class Share:
    """What one process did: its counts and its diffs (picklable: it crosses a pipe)."""

    diffs: Diffs
    partitions: list[int] = field(default_factory=list)
    batches: int = 0
    events: int = 0
    undecodable: int = 0
    failed: int = 0  # batches a rule set raised on
    first_problem: str | None = None
    seconds: float = 0.0  # wall time reading and evaluating
    cpu_seconds: float = 0.0


@dataclass(slots=True)
class Outcome:
    diffs: Diffs
    shares: list[Share]
    k8s_containers: int
    k8s_services: int
    k8s_bad_records: int

    @property
    def batches(self) -> int:
        return sum(s.batches for s in self.shares)

    @property
    def events(self) -> int:
        return sum(s.events for s in self.shares)


class Evaluator:
    """The compiled rule sets and the table, ready to evaluate batches (one per process)."""

    def __init__(self, settings: Settings, table: K8sTable, bad_records: int = 0) -> None:
        self.settings = settings
        self.table = table
        self.bad_records = bad_records
        load = rules.load
        self.new = load(list(settings.rules), all_matches=settings.all_matches, ip_names=table.ip_names)
        self.base = (load(list(settings.baseline), all_matches=settings.all_matches, ip_names=table.ip_names)
                     if settings.baseline else None)  # fmt: skip

    def rule_names(self) -> tuple[frozenset[str], frozenset[str]]:
        """The enabled rules' names: of the new rules, of the baseline."""
        base = frozenset() if self.base is None else frozenset(r.name for r in self.base.rules)
        return frozenset(r.name for r in self.new.rules), base

    def run_share(self, spans: Sequence[read.Span]) -> Share:
        """Read and evaluate these spans in this process."""
        t0, cpu0 = time.perf_counter(), time.process_time()
        share = Share(Diffs(self.settings.samples), sorted(s.partition for s in spans))
        decoder = Decoder()
        enrich = self.table.enrich
        new, base = self.new, self.base
        s = self.settings
        for record in read.read(s.connection, s.events_topic, spans, s.stall_s):
            share.batches += 1
            try:
                batch = decoder.decode(record.value)
            except WireError as exc:
                share.undecodable += 1
                share.first_problem = share.first_problem or _where(record, f"undecodable: {exc}")
                continue
            events = batch.events
            share.events += len(events)
            enrich(batch.procs)
            try:
                found_new = new.evaluate(events)
                found_base = [] if base is None else base.evaluate(events)
            except Exception as exc:  # a rule-engine bug on one batch: the worker dead-letters it, so skip
                share.failed += 1
                share.first_problem = share.first_problem or _where(record, f"{type(exc).__name__}: {exc}")
                continue
            if found_new or found_base:
                where = Where(record.partition, record.offset, batch.node)
                share.diffs.add(where, events, found_new, found_base, _render)
        share.seconds = time.perf_counter() - t0
        share.cpu_seconds = time.process_time() - cpu0
        return share


def load_table(settings: Settings, timeout_s: float = 60.0) -> tuple[K8sTable, int]:
    """The Kubernetes table as a worker starting now would build it; (table, undecodable records)."""
    table = K8sTable()
    if settings.k8s_topic is None:
        return table, 0
    c = settings.connection
    try:
        records = read_records(c.servers, settings.k8s_topic, timeout_s, c.security)
    except K8sTopicError as exc:
        raise ReadError(f"{exc} (--no-k8s evaluates without Kubernetes metadata)") from None
    bad = 0
    for key, value in records:
        try:
            table.apply(key, value)
        except RecordError:
            bad += 1
    return table, bad


def split(spans: Sequence[read.Span], processes: int) -> list[list[read.Span]]:
    """Spans with records, dealt to at most `processes` shares, largest first to the lightest share."""
    shares: list[list[read.Span]] = [[] for _ in range(max(1, processes))]
    loads = [0] * len(shares)
    for span in sorted((s for s in spans if s.size), key=lambda s: (-s.size, s.partition)):
        lightest = loads.index(min(loads))
        shares[lightest].append(span)
        loads[lightest] += span.size
    return [sorted(s) for s in shares if s]


def run(evaluator: Evaluator, spans: Sequence[read.Span], processes: int) -> Outcome:
    """Evaluate every span, in this process or in `processes` forked ones."""
    shares = split(spans, processes)
    # As the worker does (streams.worker): batches are acyclic and freed by reference counting, so
    # move the long-lived state (compiled rules, table) out of the cyclic collector's way, and let
    # it run only when more than a batch's live lists accumulate (at the default threshold it ran
    # several times per batch for nothing). This process's collector stays so: it is a command.
    gc.freeze()
    gc.set_threshold(_GC_THRESHOLD)
    if len(shares) <= 1:
        done = [evaluator.run_share(shares[0] if shares else [])]
    else:
        done = _forked(evaluator, shares)
    diffs = Diffs(evaluator.settings.samples)
    for share in done:
        diffs.merge(share.diffs)
    table = evaluator.table
    return Outcome(diffs, done, len(table), len(table.ip_names), evaluator.bad_records)


def _forked(evaluator: Evaluator, shares: list[list[read.Span]]) -> list[Share]:
    # fork: the children inherit the compiled rules and the table instead of building them again
    ctx = multiprocessing.get_context("fork")
    results: Results = ctx.Queue()
    children = [ctx.Process(target=_child, args=(evaluator, i, share, results), daemon=True)
                for i, share in enumerate(shares)]  # fmt: skip
    for child in children:
        child.start()
    done: dict[int, Share] = {}
    silent = 0  # waits since a child exited cleanly without its result having arrived
    try:
        while len(done) < len(children):
            try:
                i, result = results.get(timeout=_CHILD_WAIT_S)
            except queue.Empty:
                waiting = [c for j, c in enumerate(children) if j not in done]
                exited = [c.exitcode for c in waiting if c.exitcode is not None]
                failed = [code for code in exited if code != 0]
                if failed:
                    raise BacktestError(f"a backtest process exited with status {failed[0]}") from None
                # a clean exit puts its result first; it may still be in the pipe for a moment
                silent = silent + 1 if exited else 0
                if silent > _CLEAN_EXIT_GRACE:
                    raise BacktestError("a backtest process exited without its result") from None
                continue
            if isinstance(result, str):
                raise BacktestError(result)
            done[i] = result
    finally:
        for child in children:
            if child.is_alive():
                child.terminate()
            child.join(10)
    return [done[i] for i in sorted(done)]


def _child(evaluator: Evaluator, index: int, spans: list[read.Span], results: Results) -> None:
    try:
        results.put((index, evaluator.run_share(spans)))
    except BacktestError as exc:
        results.put((index, str(exc)))
    except Exception as exc:  # reported by the parent, which owns the exit status
        results.put((index, f"backtest process failed: {type(exc).__name__}: {exc}"))


def _render(ev: Event, rule: rules.CompiledRule) -> Rendered:
    alert = rules.build_alert(rule, ev)
    return Rendered(str(alert["priority"]), str(alert["time"]), str(alert["output"]))


def _where(record: read.Record, problem: str) -> str:
    text = f"partition {record.partition} offset {record.offset}: {problem}"
    return text if len(text) <= MAX_REASON_CHARS else text[:MAX_REASON_CHARS] + "..."
