"""Falco's "syscall event drop" internal alert, computed per node from `peregrine.stats`.

Falco (``userspace/falco/event_drops.cpp``) compares its capture counters once per second: when
``n_drops > 0`` and ``n_drops / n_evts > threshold`` (0.1 by default) it alerts, through a token
bucket of rate 1/30 s and burst 1. Collectors publish exactly those per-second deltas, one stats
record per node per second, so a worker applies the same rule per node. The alert is Falco's
internal-message JSON (``falco_outputs::handle_msg``): no ``tags`` key, source ``internal``,
priority ``Debug``, every output field a string; plus the ``uuid`` every record on
`peregrine.alerts` carries (`rules.alert.alert_id` of node, second and rule: no thread, no event).
It is built as the same `Alert` record as rule alerts and encoded by `alerts.wire`.

Limits: the token bucket runs on the stats' own timestamps (deterministic, replayable) rather than
the worker's clock, and lives in the worker's memory: after a rebalance the new owner of a node's
partition starts with a full bucket, so at most one extra alert per node per rebalance.

Hostile stats: any collector can name any node, so a record's time is checked against the worker's
clock (`MAX_AHEAD_NS` ahead at most, nothing before `MIN_TIME_NS`) before it may move a bucket: a
forged far-future time froze a victim's bucket, silencing its real drop alerts until a restart.
Such records, and ones whose node is not a DNS name, go to the dead-letter topic. Buckets are at
most `MAX_NODES`, the least recently seen evicted first (an evicted node starts with a full bucket).
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from alerts import wire
from rules.alert import INTERNAL_SOURCE, Alert, FieldValue, alert_id
from rules.priority import Priority

if TYPE_CHECKING:
    import faust

    from streams.app import Emitter, WorkerTopics
    from streams.letters import DeadLetters
    from streams.metrics import WorkerMetrics

from streams.errors import WorkerError
from streams.identity import node_problem
from streams.logsafe import shown

log = logging.getLogger("peregrine.worker.drops")

RULE: Final = "Falco internal: syscall event drop"
THRESHOLD: Final = 0.1
RATE_PER_S: Final = 1 / 30
MAX_BURST: Final = 1.0
MAX_NODES: Final = 100_000  # buckets kept (see streams.detect.MAX_TRACKED_NODES)
# A stats record may be this far ahead of the worker's clock (collectors' clocks drift; NTP keeps them
# within seconds), and no older than 2020: outside, its time is forged or broken.
MAX_AHEAD_NS: Final = 5 * 60 * 10**9
MIN_TIME_NS: Final = 1_577_836_800 * 10**9
BAD_TIME: Final = "stats time out of range"
BAD_NODE: Final = "bad stats node"
BAD_RECORD: Final = "bad stats record"
# Falco's output fields after n_evts/n_drops, in its order; all strings in the alert.
DROP_FIELDS: Final = (
    "n_drops_buffer_total",
    "n_drops_buffer_clone_fork_exit",
    "n_drops_buffer_execve_exit",
    "n_drops_buffer_connect_exit",
    "n_drops_buffer_open_exit",
    "n_drops_buffer_dir_file_exit",
    "n_drops_buffer_other_interest_exit",
    "n_drops_buffer_close_exit",
    "n_drops_buffer_proc_exit",
    "n_drops_scratch_map",
    "n_drops_page_faults",
    "n_drops_bug",
)


@dataclass(frozen=True, slots=True)
class DropSample:
    """One node's counters over one second: ``n_drops`` events lost out of ``n_evts`` attempted
    (drops included, as Falco counts), and the per-cause counters under Falco's field names."""

    node: str
    time_ns: int  # end of the second the deltas cover, ns since the epoch
    n_evts: int
    n_drops: int
    fields: Mapping[str, int] = field(default_factory=dict)
    ebpf_enabled: bool = True


# collector drop category (collectors.stats) -> Falco's field; queue and delivery losses happen after
# the kernel, where Falco has no counter: they count in n_drops only.
FALCO_FIELD_OF: Final = {
    "ring_full": "n_drops_buffer_total",
    "inflight_full": "n_drops_scratch_map",
    "page_fault_reads": "n_drops_page_faults",
}


@dataclass(slots=True)
class _Bucket:
    tokens: float
    last_ns: int


class DropMonitor:
    """Per-node rule and token bucket; `observe` returns the alert to emit, or None."""

    def __init__(
        self,
        threshold: float = THRESHOLD,
        rate_per_s: float = RATE_PER_S,
        max_burst: float = MAX_BURST,
        max_nodes: int = MAX_NODES,
    ) -> None:
        self.threshold = threshold
        self.rate_per_s = rate_per_s
        self.max_burst = max_burst
        self.max_nodes = max_nodes
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def observe(self, sample: DropSample) -> Alert | None:
        n_drops = sample.n_drops
        if n_drops <= 0:
            return None
        # Falco divides by n_evts too; a second with drops and no delivered events is all drops.
        if sample.n_evts > 0 and n_drops / sample.n_evts <= self.threshold:
            return None
        if not self._claim(sample.node, sample.time_ns):
            return None
        return build_drop_alert(sample)

    def _claim(self, node: str, now_ns: int) -> bool:
        bucket = self._buckets.pop(node, None)
        if bucket is None:
            bucket = _Bucket(self.max_burst, now_ns)
        self._buckets[node] = bucket  # most recently seen last
        while len(self._buckets) > self.max_nodes:
            self._buckets.popitem(last=False)
        elapsed = max(0, now_ns - bucket.last_ns) / 1e9
        bucket.tokens = min(self.max_burst, bucket.tokens + elapsed * self.rate_per_s)
        bucket.last_ns = max(bucket.last_ns, now_ns)
        if bucket.tokens >= 1.0 - 1e-9:  # 30 s x (1/30 per s) is 0.999... in floating point
            bucket.tokens -= 1.0
            return True
        return False


class StatsRefused(WorkerError):
    """A stats record the monitor must not see; `reason` is the dead-letter reason."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def check_sample(sample: DropSample, now_ns: int) -> None:
    """Raise StatsRefused for a sample whose node or time may not touch the monitor's state."""
    problem = node_problem(sample.node)
    if problem is not None:
        raise StatsRefused(BAD_NODE, problem)
    if not MIN_TIME_NS <= sample.time_ns <= now_ns + MAX_AHEAD_NS:
        raise StatsRefused(BAD_TIME, f"t={sample.time_ns} against the worker's clock {now_ns}")


def build_drop_alert(sample: DropSample) -> Alert:
    n_drops = sample.n_drops
    fields: dict[str, FieldValue] = {"n_evts": str(sample.n_evts), "n_drops": str(n_drops)}
    for name in DROP_FIELDS:
        fields[name] = str(sample.fields.get(name, 0))
    fields["ebpf_enabled"] = "1" if sample.ebpf_enabled else "0"
    return Alert(
        time_ns=sample.time_ns,
        rule=RULE,
        priority=Priority.DEBUG,
        output=f"{RULE}. {n_drops} system calls dropped in last second.",
        output_fields=fields,
        hostname=sample.node,
        source=INTERNAL_SOURCE,
        tags=(),
        uuid=alert_id(sample.node, sample.time_ns, 0, 0, RULE),
    )


def install_drops(
    app: faust.App, topics: WorkerTopics, emitter: Emitter, letters: DeadLetters, metrics: WorkerMetrics
) -> None:
    """The stats agent: one DropMonitor per worker; its partitions' nodes are its own (stats are keyed
    by node). Stats records that do not decode, or whose node or time is refused (`check_sample`), are
    dead-lettered as a reference (a stats record is small; the reference bounds a hostile one)."""
    decode = _stats_decoder()
    if decode is None:
        log.warning("drop alerts disabled: collectors.stats (the stats wire format) is not installed")
        return
    from streams.app import Origin, Source, commit_gate
    from streams.letters import REFUSED

    monitor = DropMonitor()
    metrics.sizes.attach("drops", monitor)
    alerts_topic = topics.alerts.get_topic_name()

    async def refuse(source: Source, reason: str, detail: str) -> None:
        origin = source.origin
        log.warning("stats record to the dead-letter topic: %s (%s:%d@%d)", shown(detail),
                    shown(origin.topic), origin.partition, origin.offset)
        # a stats record is small: the reference bounds a hostile one
        await letters.send(emitter, source, reason, detail, whole=False)

    @app.agent(topics.stats, name="peregrine-drops", concurrency=1)
    async def drops(stream: Any) -> None:
        gate = commit_gate(app)
        async for event in stream.events():
            message = event.message
            origin = Origin(message.topic, message.partition, message.offset)
            source = Source(origin, message.key, message.value or b"")
            async with gate:
                failure = emitter.failure(origin)
                if failure is not None:  # its alert was refused: the bucket already spent its token
                    await refuse(source, REFUSED, failure.reason)
                    continue
                try:
                    sample = decode(message.value)
                    check_sample(sample, time.time_ns())
                except StatsRefused as exc:
                    await refuse(source, exc.reason, exc.detail)
                    continue
                except ValueError as exc:
                    await refuse(source, BAD_RECORD, str(exc))
                    continue
                alert = monitor.observe(sample)
                if alert is not None:
                    metrics.drop_alerts.add(1)
                    value = wire.encode(alert)
                    await emitter.send(source, alerts_topic, sample.node.encode(), value)


def _stats_decoder() -> Callable[[bytes], DropSample] | None:
    try:
        from collectors import stats
    except ImportError:
        return None

    def decode(data: bytes) -> DropSample:
        s = stats.decode_stats(data)
        fields = {falco: s.drops.get(ours, 0) for ours, falco in FALCO_FIELD_OF.items()}
        return DropSample(node=s.node, time_ns=s.t, n_evts=s.n_evts, n_drops=s.n_drops, fields=fields)

    return decode
