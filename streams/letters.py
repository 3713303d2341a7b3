"""How many dead letters one node may cost the brokers' disks: a token bucket per node, then a count.

The events DLQ keeps a letter for days (for a human), the events themselves an hour, so a node sending
garbage as fast as it can would fill the disks through the DLQ. Each node (the message key, which
its collector sets) may have `rate_per_s` letters a second after a burst of `burst`; the worker as a
whole `total_rate_per_s` after `total_burst`, so rotating keys does not lift the cap. What is over the
budget is not written but counted (metric ``peregrine.worker.dlq`` with reason ``over budget``), and
the node's next letter carries that count in ``peregrine.dlq.suppressed``. Buckets run on the worker's
monotonic clock; at most `max_nodes` are kept, the least recently seen dropped first.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from bus import dlq
from streams.app import Record, Source

if TYPE_CHECKING:
    from streams.app import Emitter
    from streams.metrics import WorkerMetrics

# The dead-letter reason of a message whose records Kafka refused (too large for the topic, mostly).
REFUSED: Final = "records refused by Kafka"

RATE_PER_S: Final = 1.0
BURST: Final = 20.0
TOTAL_RATE_PER_S: Final = 50.0
TOTAL_BURST: Final = 500.0
MAX_NODES: Final = 10_000
MAX_KEY_BYTES: Final = 256


@dataclass(slots=True)
class _Bucket:
    tokens: float
    last: float
    suppressed: int = 0


@dataclass(slots=True)
class LetterBudget:
    rate_per_s: float = RATE_PER_S
    burst: float = BURST
    total_rate_per_s: float = TOTAL_RATE_PER_S
    total_burst: float = TOTAL_BURST
    max_nodes: int = MAX_NODES
    clock: Callable[[], float] = time.monotonic
    _nodes: OrderedDict[bytes, _Bucket] = field(default_factory=OrderedDict)
    _total: _Bucket | None = None

    def __len__(self) -> int:
        return len(self._nodes)

    def take(self, key: bytes | None) -> int | None:
        """None when the node (or the worker) is over budget: count the letter, do not write it.
        Otherwise how many of the node's letters were refused since its last one was written."""
        now = self.clock()
        node = self._node(bytes(key or b"")[:MAX_KEY_BYTES], now)
        total = self._total = self._total or _Bucket(self.total_burst, now)
        _refill(node, now, self.rate_per_s, self.burst)
        _refill(total, now, self.total_rate_per_s, self.total_burst)
        if node.tokens < 1.0 or total.tokens < 1.0:
            node.suppressed += 1
            return None
        node.tokens -= 1.0
        total.tokens -= 1.0
        suppressed, node.suppressed = node.suppressed, 0
        return suppressed

    def _node(self, key: bytes, now: float) -> _Bucket:
        bucket = self._nodes.pop(key, None) or _Bucket(self.burst, now)
        self._nodes[key] = bucket
        while len(self._nodes) > self.max_nodes:
            self._nodes.popitem(last=False)
        return bucket


def _refill(bucket: _Bucket, now: float, rate: float, burst: float) -> None:
    bucket.tokens = min(burst, bucket.tokens + max(0.0, now - bucket.last) * rate)
    bucket.last = max(bucket.last, now)


class DeadLetters:
    """The worker's one way to dead-letter a message (detection and drop agents, and the commit for a
    message whose records Kafka refused): whole when it fits (`bus.dlq.MAX_WHOLE_BYTES`) and ``whole``
    is asked, else as a reference; within the node's budget, else counted."""

    def __init__(self, topic: str, metrics: WorkerMetrics, budget: LetterBudget) -> None:
        self._topic = topic
        self._metrics = metrics
        self._budget = budget

    async def send(
        self, emitter: Emitter, source: Source, reason: str, detail: str, whole: bool = True
    ) -> None:
        record = self.letter(source, reason, detail, whole)
        if record is not None:
            await emitter.send(source, record.topic, record.key, record.value, record.headers)

    async def letter_for(self, source: Source, detail: str, whole: bool) -> Record | None:
        """The letter of a message whose records Kafka refused (`streams.app.LetterFor`)."""
        return self.letter(source, REFUSED, detail, whole)

    def letter(self, source: Source, reason: str, detail: str, whole: bool) -> Record | None:
        suppressed = self._budget.take(source.key)
        if suppressed is None:
            self._metrics.dlq_suppressed.add(1, {"reason": reason})
            return None
        self._metrics.dlq.add(1, {"reason": reason})
        origin = source.origin
        letter = dlq.DeadLetter(reason, detail, origin.topic, origin.partition, origin.offset)
        key, value = source.key, source.value
        if whole and len(value) <= dlq.MAX_WHOLE_BYTES:
            headers = letter.headers()
        else:
            value, headers = letter.reference(value)
            key = dlq.bounded_key(key)
        if suppressed:
            headers.append((dlq.SUPPRESSED, str(suppressed).encode()))
        return Record(self._topic, key, value, headers)
