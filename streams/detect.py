"""The detection agent: one iteration per Kafka message, i.e. per batch of events.

Per batch: decode (`collectors.wire.Decoder`, which validates and resolves references), enrich (one call
that fills the process records' container slot from the Kubernetes table), check the node's
sequence for gaps, evaluate the whole batch (`Ruleset.evaluate`), and produce one Kafka message per
alert to `peregrine.alerts` (checked and size-bounded by `alerts.wire`), keyed by container id so one
container's alerts stay in order. Nothing else happens per event: no coroutine, no log line, no message.

A batch that does not decode (or has a schema version this build does not read) goes to the
dead-letter topic with the reason (`bus.dlq`), and so does a batch the rule engine raises on:
one bad batch must not stop a partition. Both are counted. A batch too large for the dead-letter
topic, or whose letter Kafka refused, goes there as a reference (`bus.dlq.DeadLetter.reference`).
A batch whose records Kafka refused (`streams.app.Deliveries`) is read again once, then
dead-lettered: it is never committed as done without its alerts.

The alert's ``hostname`` is the batch envelope's node (checked by `node_name`), not the per-process
field the rule engine reads: one node cannot make up host names, so a Loki label stays bounded.

Alerts raised while events were dropped: a batch whose envelope says its node lost events around it
(`collectors.wire` ``drops``) flags each of its alerts with the counts (`alerts.wire.with_drops`).
The flag comes from the batch alone, so a replay after a crash flags the same alerts with the same
counts and uuids, and one node's report reaches only its own alerts. The worker's own sequence
check (`SeqTracker`) is deliberately not part of it: its state starts empty after a restart or a
rebalance, so the first batch after a gap would be flagged in one run and not in its replay. Batches
the collector knows it lost (its producer's queue full, Kafka giving up) are counted by the
collector into a later batch's ``drops`` instead; the sequence gap stays a metric and a log line.
A batch without ``drops`` costs one attribute test.

`Detector` is the synchronous, Kafka-free part (unit-tested directly); `install_detection` wires it
into a Faust agent with ``concurrency=1`` (faust#606), whose sends hold the commit gate (`streams.app`).
Between decoding and evaluating, a batch with processes of a container that has just started and is
not in the Kubernetes table yet waits, bounded, for its record (`streams.k8swait`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Final, Generic

import faust

from alerts import wire
from bus import dlq
from collectors.wire import Batch, Decoder, WireError
from rules.alert import alert_id
from rules.record import EV_NUM, EV_PROC, EV_TID, P_CONTAINER_ID, Process
from streams import fetchbound
from streams.app import Emitter, Origin, Source, WorkerTopics, commit_gate
from streams.evidence import History
from streams.identity import node_problem
from streams.k8swait import K8sWait
from streams.letters import REFUSED, DeadLetters
from streams.logsafe import shown
from streams.metrics import WorkerMetrics
from streams.reload import LiveRules, Rule
from streams.rulecost import RuleCosts

log = logging.getLogger("peregrine.worker.detect")

Enrich = Callable[[Iterable[Process]], object]

# Nodes whose sequence the worker follows: ten times the largest fleet the design plans for per
# worker, so eviction (the least recently seen node first) only ever drops forged names.
MAX_TRACKED_NODES: Final = 100_000
# A batch whose records Kafka refused is evaluated again this many times in all, then dead-lettered.
EMIT_ATTEMPTS: Final = 2
MAX_KEY_BYTES: Final = 128  # a container id is 64 hex digits


@dataclass(slots=True)
class SeqTracker:
    """Last batch ``seq`` per node and boot; `observe` returns how many batches were skipped.

    A new boot_id restarts the count (the collector restarted), and a seq at or below the last one is
    a redelivery (after a rebalance or a crash), not a gap. Keys are attacker-chosen (any collector
    can name any node): at most `max_nodes` entries, the least recently seen evicted first (a node
    evicted and seen again starts afresh, as after a restart); `len` is exported as a metric.
    """

    max_nodes: int = MAX_TRACKED_NODES
    _last: OrderedDict[str, tuple[str, int]] = field(default_factory=OrderedDict)

    def __len__(self) -> int:
        return len(self._last)

    def observe(self, node: str, boot_id: str, seq: int) -> int:
        last = self._last.pop(node, None)
        missing = 0
        if last is not None and last[0] == boot_id:
            if seq <= last[1]:
                self._last[node] = last
                return 0
            missing = seq - last[1] - 1
        self._last[node] = (boot_id, seq)
        while len(self._last) > self.max_nodes:
            self._last.popitem(last=False)
        return missing


@dataclass(frozen=True, slots=True)
class Detection:
    batch: Batch
    alerts: list[tuple[bytes, bytes]]  # (key, Falco JSON) ready to produce
    priorities: list[str]
    missing: int  # batches skipped before this one in the node's sequence
    incomplete: int  # alerts flagged because the batch reported losses around them
    decode_s: float
    eval_s: float
    gate_kept: int  # events the rule engine's batch gate passed on to the rules' code


class Detector(Generic[Rule]):
    """Decode, enrich, evaluate one batch; raises WireError for a batch that does not decode."""

    def __init__(
        self,
        rules: LiveRules[Rule],
        enrich: Enrich | None = None,
        costs: RuleCosts | None = None,
        history: History | None = None,
    ) -> None:
        self.rules = rules
        self.enrich = enrich
        self.costs = costs
        self.history = History(events_per_alert=0) if history is None else history
        self.seq = SeqTracker()
        self.decoder = Decoder()
        if not self.decoder.native:
            log.warning("the C wire decoder is not built (no C compiler?): batches decode slower")

    def decode(self, data: bytes) -> tuple[Batch, float]:
        t0 = time.perf_counter()
        batch = self.decoder.decode(data)
        problem = node_problem(batch.node, batch.boot_id)
        if problem is not None:
            raise WireError("bad envelope field", problem)
        if self.enrich is not None:
            self.enrich(batch.procs)
        return batch, time.perf_counter() - t0

    def evaluate(self, batch: Batch, decode_s: float) -> Detection:
        """Raises whatever the rule engine raises (the agent dead-letters the batch then)."""
        missing = self.seq.observe(batch.node, batch.boot_id, batch.seq)
        t0 = time.perf_counter()
        ruleset = self.rules.ruleset  # read once: a reload swaps it between batches
        build_alert = self.rules.engine.build_alert
        alerts: list[tuple[bytes, bytes]] = []
        priorities: list[str] = []
        rule_names: list[str] = []
        _, kept_before = ruleset.gate_counts()
        node, boot_id, history = batch.node, batch.boot_id, self.history
        view = history.view(batch.events) if history.enabled else None
        drops = batch.drops
        by_cause = drops.by_cause() if drops is not None else {}
        for ev, rule in ruleset.evaluate(batch.events):
            alert = build_alert(rule, ev)
            # The per-process node field is the node's to fill, so neither the hostname nor the id
            # may come from it: a node could otherwise name its alerts after another node, or mint
            # the ids of that node's alerts for receivers that deduplicate by uuid.
            uuid = alert_id(node, alert.time_ns, ev[EV_TID], ev[EV_NUM], alert.rule)
            evidence = history.evidence(node, boot_id, view, ev) if view is not None else ()
            alert = dataclasses.replace(alert, hostname=node, uuid=uuid, evidence=evidence)
            if drops is not None:
                alert = wire.with_drops(alert, drops.first_ns, drops.last_ns, by_cause, drops.lost)
            key = alert_key(ev[EV_PROC][P_CONTAINER_ID])
            alerts.append((key, wire.encode(alert)))
            priorities.append(alert.priority.label)
            rule_names.append(alert.rule)
        if view is not None:
            history.keep(node, boot_id, view)
        gate_kept = ruleset.gate_counts()[1] - kept_before
        if self.costs is not None:
            self.costs.alerted(rule_names)
            self.costs.observe(batch.events)
        incomplete = len(alerts) if drops is not None else 0
        return Detection(
            batch, alerts, priorities, missing, incomplete, decode_s, time.perf_counter() - t0, gate_kept
        )


def alert_key(container_id: object) -> bytes:
    """The alert's record key: the container id, or a digest of a value too long to be one."""
    key = str(container_id).encode("utf-8", "replace")
    return key if len(key) <= MAX_KEY_BYTES else hashlib.sha256(key).hexdigest().encode()


async def handle_message(
    detector: Detector[Rule],
    emitter: Emitter,
    letters: DeadLetters,
    topics: WorkerTopics,
    metrics: WorkerMetrics,
    message: Any,  # faust.types.Message
    gate: asyncio.Lock,
    k8s_wait: K8sWait | None = None,
) -> None:
    """Everything the agent does for one Kafka message. What produces holds the commit gate; the
    wait for a new container's metadata does not (`streams.k8swait`), so other batches' commits go
    on meanwhile: this message is not acked, so its offset is not committed, before it is done."""
    origin = Origin(message.topic, message.partition, message.offset)
    where = f"{shown(origin.topic)}:{origin.partition}@{origin.offset}"
    value: bytes = message.value or b""
    source = Source(origin, message.key, value)

    async def dead_letter(reason: str, detail: str, whole: bool = True) -> None:  # under the gate
        await letters.send(emitter, source, reason, detail, whole)

    failure = emitter.failure(origin)
    if failure is not None and failure.attempts >= EMIT_ATTEMPTS:
        # Read again after the commit could not write its alerts nor its whole letter: a reference.
        log.warning("batch to the dead-letter topic: %s, %d times (%s)", REFUSED, failure.attempts, where)
        async with gate:
            await dead_letter(REFUSED, failure.reason, whole=False)
        return
    refused = fetchbound.refused(message.headers)
    if refused is not None:  # a record batch that decompresses past the bound: nothing to decode
        log.warning("batch to the dead-letter topic: %s (%s)", fetchbound.REFUSED_REASON, where)
        async with gate:
            await dead_letter(fetchbound.REFUSED_REASON, refused, whole=False)
        return
    try:
        batch, decode_s = detector.decode(value)
    except WireError as exc:
        log.warning("batch to the dead-letter topic: %s (%s)", shown(exc), where)
        async with gate:
            await dead_letter(exc.reason, exc.detail)
        return
    if k8s_wait is not None:
        waited = await k8s_wait.settle(batch.procs, time.time_ns())
        if waited is not None:
            metrics.k8s_waits.add(1, {"outcome": waited.outcome})
            metrics.k8s_wait_duration.record(waited.seconds)
    async with gate:
        await _evaluate(detector, emitter, topics, metrics, source, batch, decode_s, dead_letter, where)


async def _evaluate(
    detector: Detector[Rule],
    emitter: Emitter,
    topics: WorkerTopics,
    metrics: WorkerMetrics,
    source: Source,
    batch: Batch,
    decode_s: float,
    dead_letter: Callable[[str, str], Awaitable[None]],
    where: str,
) -> None:
    """Evaluate a decoded batch and send its alerts, under the commit gate."""
    try:
        found = detector.evaluate(batch, decode_s)
    except Exception as exc:  # a rule-engine bug on one batch must not stop the partition
        reason = f"{type(exc).__name__}: {exc}"
        log.warning("evaluation failed, batch dead-lettered (%s): %s", where, shown(reason))
        await dead_letter(dlq.EVALUATION_FAILED, reason)
        return
    if found.missing:
        metrics.gaps.add(1)
        metrics.missing_batches.add(found.missing)
        log.warning(
            "sequence gap node=%s boot_id=%s seq=%d missing=%d",
            batch.node,  # checked by node_problem: a DNS name, no control characters
            shown(batch.boot_id),
            batch.seq,
            found.missing,
            extra={"node": batch.node, "seq": batch.seq, "missing": found.missing},
        )
    for key, alert in found.alerts:
        await emitter.send(source, alerts_topic(topics), key, alert)
    metrics.batches.add(1)
    metrics.events.add(len(batch.events))
    metrics.gate_kept.add(found.gate_kept)
    if found.incomplete:
        metrics.incomplete_alerts.add(found.incomplete)
    metrics.decode_duration.record(found.decode_s)
    metrics.eval_duration.record(found.eval_s)
    for priority in found.priorities:
        metrics.alerts.add(1, {"priority": priority})


def alerts_topic(topics: WorkerTopics) -> str:
    name: str = topics.alerts.get_topic_name()
    return name


def install_detection(
    app: faust.App,
    topics: WorkerTopics,
    detector: Detector[Rule],
    emitter: Emitter,
    letters: DeadLetters,
    metrics: WorkerMetrics,
    ready: asyncio.Event,
    ready_timeout: float,
    k8s_wait: K8sWait | None = None,
) -> None:
    @app.agent(topics.events, name="peregrine-detect", concurrency=1)
    async def detect(stream: Any) -> None:
        await _wait_ready(ready, ready_timeout)
        gate = commit_gate(app)
        async for event in stream.events():
            await handle_message(detector, emitter, letters, topics, metrics, event.message, gate, k8s_wait)


async def _wait_ready(ready: asyncio.Event, timeout: float) -> None:
    try:
        await asyncio.wait_for(ready.wait(), timeout)
    except TimeoutError:
        log.warning("Kubernetes table not caught up after %.0f s; evaluating without it meanwhile", timeout)
