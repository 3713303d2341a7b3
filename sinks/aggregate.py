"""Per-destination aggregation: the first alert of a key goes out at once, its repeats become one summary.

A *key* is a tuple of alert values (default: the rule plus the pod, or else the container, or else the
host; configurable per destination and per rule or tag). The first alert of a key opens a *window*
of ``window_s`` seconds of event time starting at that alert's time, and is delivered as is. Alerts
of the same key that follow are *folded*: counted, their first and last times kept, and a few
distinct values of ``sample_fields`` sampled. The window closes, and its summary ("and 1,432 more
like this in 60 s") is delivered, when the first of these happens:

* an alert of the key arrives whose time is past the window (it then opens the next window);
* the stream's time (the latest alert time seen, of any key) is past the window;
* the stream is idle (a poll returned nothing) and ``window_s`` of wall-clock time passed since the
  window opened, or twice that in any case: a quiet stream still reports. While a backlog is read
  faster than real time, event time rules, so a backlog of one minute is one minute of windows;
* the state bound needs room (`max_open_keys`, or the per-partition bound below): the oldest
  window is flushed early.

A summary speaks for every alert it folds: when any of them was raised while its node lost events
(`alerts.wire.with_drops`), the summary carries the drop fields too (the widest span, the largest
counts) and ``peregrine.summary.incomplete``, the number of such repeats.

A window with no repeat sends no summary. The summary's uuid is a function of (destination, key,
window start), so a receiver that deduplicates by uuid sees one summary per window however often it
is sent.

Crash safety (kill -9) with no state store: the open windows are rebuilt from the alerts topic.
The runner commits, per partition, not its position but the offset of the oldest record that an
open window holds there (its first record in that partition), and puts in the commit's metadata the
*mark* (the position: every record before it was processed and what it triggered was delivered)
and the open windows that hold records there (key hash, first offset, start time). After a restart
or a rebalance the consumer reads again from the committed offset: a record before the mark is
folded into its window if it belongs to one of the listed windows, and skipped otherwise (it was
delivered, or folded into a summary already delivered); nothing it triggers is delivered again.
Records from the mark on are processed as new. So the counts add up exactly across a crash.

What is *not* exactly-once: an output delivered after the last commit and before the crash is
delivered again, the summary included (the residual window is one delivery plus one synchronous
commit, since the runner commits after every batch). The summary's deterministic uuid lets an
idempotent receiver (Elasticsearch ``_id``, Splunk, a webhook keyed by uuid) drop the copy;
Slack has no idempotency and shows it twice. A window rebuilt after a restart waits a full
``window_s`` of wall-clock time again before it reports (its event-time bound is unchanged).

The metadata must fit the broker's ``offset.metadata.max.bytes`` (4096 by default), hence at most
`PARTITION_WINDOWS` windows holding records on one partition: one more flushes the oldest early.
Keys spanning partitions (a pod whose containers hash to different partitions) are supported, but
their repeats' order across partitions is not reproducible, so the split of such a key's alerts
between two consecutive windows may differ after a restart (their total does not).
"""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Final

from alerts.wire import (
    DROP_CAUSES,
    DROP_FIRST_NS,
    DROP_LAST_NS,
    DROP_LOST,
    drop_field,
    dropped,
    with_drops,
)
from sinks.alert import Alert

log = logging.getLogger("peregrine.sink")

Partition = tuple[str, int]  # (topic, partition)

PARTITION_WINDOWS: Final = 96  # 96 entries of at most 40 characters fit in 4096 bytes of metadata
SAMPLE_VALUES: Final = 5  # distinct values kept per sample field
SAMPLE_CHARS: Final = 80  # longest sampled value shown
_VERSION: Final = "a1"
_DEFAULT_FALLBACK: Final = ("k8s.pod.name", "container.id")  # then the hostname
# uuid5 namespace of summaries; alerts' uuids use another (rules.alert), so the two never collide
SUMMARY_NAMESPACE: Final = uuid.UUID("0b6f3c1e-8d2a-4f5b-9c7e-1a2b3c4d5e6f")
FieldValue = str | int | float | bool | None  # an output field's value, as `Alert.output_fields` holds


@dataclass(frozen=True, slots=True)
class KeyOverride:
    """A rule- or tag-specific key or window; the first override whose globs match wins."""

    rules: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    key: tuple[str, ...] = ()  # empty: the destination's key
    window_s: float | None = None

    def matches(self, alert: Alert) -> bool:
        if self.rules and not any(fnmatchcase(alert.rule, p) for p in self.rules):
            return False
        return not self.tags or any(fnmatchcase(t, p) for t in alert.tags for p in self.tags)


@dataclass(frozen=True, slots=True)
class AggregateConfig:
    window_s: float = 60.0
    key: tuple[str, ...] = ()  # empty: rule + (k8s.pod.name | container.id | hostname)
    sample_fields: tuple[str, ...] = ()
    max_open_keys: int = 1000
    overrides: tuple[KeyOverride, ...] = ()


def key_values(alert: Alert, names: tuple[str, ...]) -> tuple[str, ...]:
    """The key of ``alert``: ``rule``, ``hostname``, ``priority``, ``source`` or an output field."""
    if not names:
        for name in _DEFAULT_FALLBACK:
            value = alert.output_fields.get(name)
            if value is not None and value != "":
                return (alert.rule, f"{name}={value}")
        return (alert.rule, f"hostname={alert.hostname}")
    return tuple(f"{name}={field_value(alert, name)}" for name in names)


def field_value(alert: Alert, name: str) -> FieldValue:
    if name == "rule":
        return alert.rule
    if name in ("hostname", "host"):
        return alert.hostname
    if name == "priority":
        return alert.priority.label
    if name == "source":
        return alert.source
    return alert.output_fields.get(name)


def key_hash(key: tuple[str, ...]) -> str:
    return hashlib.blake2b("\x1f".join(key).encode(), digest_size=5).hexdigest()  # 10 hex characters


def summary_uuid(destination: str, digest: str, start_ns: int) -> str:
    return str(uuid.uuid5(SUMMARY_NAMESPACE, f"{destination}\x1f{digest}\x1f{start_ns}"))


@dataclass(slots=True)
class Window:
    digest: str
    start_ns: int
    window_ns: int
    deadline: float  # wall clock (monotonic) at which it reports anyway
    origin: Partition  # where its first record is
    offsets: dict[Partition, int]  # first record it holds per partition: the commit stops there
    first: Alert | None = None  # None while a rebuilt window has not re-read its first record
    count: int = 0  # repeats folded (the first alert excluded)
    suppressed: int = 0  # alerts of the key silenced by a suppression meanwhile
    first_ns: int = 0
    last_ns: int = 0
    samples: dict[str, list[str]] = field(default_factory=dict)
    incomplete: int = 0  # repeats raised while their node lost events (`alerts.wire.with_drops`)
    drops: Drops | None = None  # the loss around every flagged alert of the window, merged

    def fold(self, alert: Alert, sample_fields: tuple[str, ...]) -> None:
        self.count += 1
        if dropped(alert) is not None:
            self.incomplete += 1
            self.drops = merge_drops(self.drops, alert)
        self.first_ns = alert.time_ns if self.count == 1 else min(self.first_ns, alert.time_ns)
        self.last_ns = max(self.last_ns, alert.time_ns)
        for name in sample_fields:
            value = alert.output_fields.get(name)
            if value is None:
                continue
            seen = self.samples.setdefault(name, [])
            text = str(value)[:SAMPLE_CHARS]
            if len(seen) < SAMPLE_VALUES and text not in seen:
                seen.append(text)


@dataclass(frozen=True, slots=True)
class Drops:
    """Events lost around the flagged alerts of one window: the widest time span, the largest counts.

    Counts take the maximum, not the sum: consecutive alerts of one node report overlapping loss
    windows of the same ring, so a sum would count one loss many times; the maximum never overstates."""

    first_ns: int
    last_ns: int
    lost: int
    counts: dict[str, int]


def merge_drops(merged: Drops | None, alert: Alert) -> Drops:
    """`merged` widened by the loss `alert` reports (the caller checked `dropped(alert)`)."""
    fields = alert.output_fields

    def number(name: str) -> int:
        value = fields.get(name)
        return value if type(value) is int else 0

    found = Drops(number(DROP_FIRST_NS), number(DROP_LAST_NS), number(DROP_LOST),
                  {cause: number(drop_field(cause)) for cause in DROP_CAUSES})  # fmt: skip
    if merged is None:
        return found
    return Drops(
        min(merged.first_ns, found.first_ns),
        max(merged.last_ns, found.last_ns),
        max(merged.lost, found.lost),
        {cause: max(merged.counts[cause], found.counts[cause]) for cause in DROP_CAUSES},
    )


@dataclass(frozen=True, slots=True)
class Replay:
    """What a partition's committed metadata says: the mark, and its open windows by key hash."""

    mark: int
    windows: dict[str, tuple[int, int, bool]]  # digest -> (first offset here, start_ns, origin here)


class Aggregator:
    """The open windows of one destination. Not thread-safe: the runner's thread only."""

    def __init__(
        self, destination: str, config: AggregateConfig, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._destination = destination
        self._config = config
        self._clock = clock
        self._open: dict[str, Window] = {}  # insertion order = opening order: the oldest first
        self._replay: dict[Partition, Replay] = {}
        self._stream_ns = 0  # the latest alert time seen past the marks
        # alerts suppressed while their key had no open window, for its next summary (bounded)
        self._suppressed: dict[str, int] = {}
        self.folded = 0  # repeats folded since the last `take_counts` (for the metrics)
        self.summaries = 0

    @property
    def open_keys(self) -> int:
        return len(self._open)

    def take_counts(self) -> tuple[int, int]:
        """(alerts folded, summaries emitted) since the last call."""
        counts = (self.folded, self.summaries)
        self.folded = self.summaries = 0
        return counts

    # -- assignment ------------------------------------------------------------------------------

    def restore(self, partition: Partition, metadata: str | None) -> None:
        """A partition assigned with its committed metadata: rebuild its open windows on the way."""
        replay = parse_metadata(metadata)
        if replay is None:
            if metadata:
                log.warning("%s: %s[%d]: commit metadata %r is not ours; no window to rebuild",
                            self._destination, partition[0], partition[1], metadata[:40])
            return
        self._replay[partition] = replay
        for digest, (offset, start_ns, origin) in replay.windows.items():
            window = self._open.get(digest)
            if window is None:
                window = Window(digest, start_ns, 0, self._clock() + self._config.window_s,
                                partition if origin else ("", -1), {})
                self._open[digest] = window
            if origin:
                window.origin = partition
            window.offsets[partition] = offset

    def revoke(self) -> None:
        """Partitions taken away: drop every window; whoever gets them rebuilds from the commits."""
        self._open.clear()
        self._replay.clear()

    # -- the stream ------------------------------------------------------------------------------

    def offer(self, partition: Partition, offset: int, alert: Alert) -> list[Alert]:
        """The alerts to deliver because ``alert`` arrived: none, itself, or a summary and itself."""
        names, window_s = self._rule(alert)
        digest = key_hash(key_values(alert, names))
        replay = self._replay.get(partition)
        if replay is not None and offset < replay.mark:
            self._rebuild(replay, partition, offset, digest, alert)
            return []
        if replay is not None:  # past the mark: this partition is live again
            del self._replay[partition]
        out: list[Alert] = []
        self._stream_ns = max(self._stream_ns, alert.time_ns)
        window = self._open.get(digest)
        if window is not None:
            # a rebuilt window whose first record is still being re-read takes the repeat too
            if window.first is None or alert.time_ns < window.start_ns + window.window_ns:
                window.offsets.setdefault(partition, offset)
                window.fold(alert, self._config.sample_fields)
                self.folded += 1
                out += self._room(partition, keep=digest)
                return out
            out += self._close(window)
        out += self._room(partition, keep=None)
        if len(self._open) >= self._config.max_open_keys:
            oldest = next((w for w in self._open.values() if w.first is not None), None)
            if oldest is not None:
                out += self._close(oldest)
        self._open[digest] = Window(digest, alert.time_ns, int(window_s * 1e9), self._clock() + window_s,
                                    partition, {partition: offset}, first=alert,
                                    suppressed=self._suppressed.pop(digest, 0))
        out.append(alert)
        return out

    def suppress(self, partition: Partition, offset: int, alert: Alert) -> None:
        """Count a suppressed alert for its key's next summary (once: not again when re-read)."""
        replay = self._replay.get(partition)
        if replay is not None and offset < replay.mark:
            return
        digest = key_hash(key_values(alert, self._rule(alert)[0]))
        window = self._open.get(digest)
        if window is not None:
            window.suppressed += 1
            return
        self._suppressed[digest] = self._suppressed.pop(digest, 0) + 1
        if len(self._suppressed) > self._config.max_open_keys:
            del self._suppressed[next(iter(self._suppressed))]

    def _rebuild(self, replay: Replay, partition: Partition, offset: int, digest: str, alert: Alert) -> None:
        entry = replay.windows.get(digest)
        window = self._open.get(digest)
        if entry is None or window is None or offset < entry[0]:
            return  # settled before the crash: delivered, or counted in a delivered summary
        if entry[2] and offset == entry[0]:  # the window's first alert: it was delivered
            window.first = alert
            window.window_ns = int(self._rule(alert)[1] * 1e9)
            return
        window.fold(alert, self._config.sample_fields)

    def due(self, idle: bool) -> list[Alert]:
        """Summaries of the windows whose time is up: by the stream's time, or by the wall clock
        (``idle``: the last poll returned nothing)."""
        now = self._clock()
        out: list[Alert] = []
        for window in [w for w in self._open.values() if w.first is not None and self._over(w, now, idle)]:
            out += self._close(window)
        # a rebuilt window whose first record never came back (retention deleted it) must not hold
        # the commit for ever: after a window of waiting it is dropped, its count unknown
        for window in [w for w in self._open.values()
                       if w.first is None and now - w.deadline >= self._config.window_s]:
            log.warning("%s: window %s not rebuilt (its records are gone); dropped",
                        self._destination, window.digest)
            del self._open[window.digest]
        return out

    def _over(self, window: Window, now: float, idle: bool) -> bool:
        if window.start_ns + window.window_ns <= self._stream_ns:
            return True
        late = now - window.deadline
        return late >= 0 and (idle or late >= window.window_ns / 1e9)

    def _room(self, partition: Partition, keep: str | None) -> list[Alert]:
        """Flush the oldest windows holding records on ``partition`` beyond `PARTITION_WINDOWS`."""
        holding = [w for w in self._open.values() if partition in w.offsets and w.digest != keep]
        out: list[Alert] = []
        while len(holding) >= PARTITION_WINDOWS and holding[0].first is not None:
            out += self._close(holding.pop(0))
        return out

    def _close(self, window: Window) -> list[Alert]:
        del self._open[window.digest]
        if (window.count == 0 and window.suppressed == 0) or window.first is None:
            return []
        self.summaries += 1
        return [summarize(self._destination, window, self._config.sample_fields)]

    def _rule(self, alert: Alert) -> tuple[tuple[str, ...], float]:
        for override in self._config.overrides:
            if override.matches(alert):
                window_s = override.window_s if override.window_s is not None else self._config.window_s
                return override.key or self._config.key, window_s
        return self._config.key, self._config.window_s

    # -- commits ---------------------------------------------------------------------------------

    def commits(self, positions: Iterable[tuple[Partition, int]]) -> dict[Partition, tuple[int, str]]:
        """What to commit per partition, given each position: (offset, metadata)."""
        out: dict[Partition, tuple[int, str]] = {}
        for partition, position in positions:
            replay = self._replay.get(partition)
            # while re-reading, the mark stays: what lies before it was delivered already
            mark = max(position, replay.mark) if replay is not None else position
            holding = [w for w in self._open.values() if partition in w.offsets]
            offset = min([position, *(w.offsets[partition] for w in holding)])
            entries = {w.digest: (w.offsets[partition], w.start_ns, w.origin == partition) for w in holding}
            out[partition] = (offset, format_metadata(Replay(mark, entries)))
        return out


def summarize(destination: str, window: Window, sample_fields: tuple[str, ...]) -> Alert:
    """The summary alert of a closed window: the first alert's identity, the count, times, samples."""
    first = window.first
    assert first is not None  # `_close` checks it
    seconds = f"{window.window_ns / 1e9:g}"
    first_ns, last_ns = (window.first_ns, window.last_ns) if window.count else (first.time_ns, first.time_ns)
    start, end = iso_time(first_ns), iso_time(last_ns)
    samples = "; ".join(f"{name}: {', '.join(values)}" for name, values in window.samples.items())
    text = f"and {window.count:,} more like this in {seconds} s ({start} to {end})"
    if window.suppressed:
        text += f", and {window.suppressed:,} suppressed"
    if window.incomplete:
        text += f", {window.incomplete:,} of them while the node lost events"
    if samples:
        text += f"; e.g. {samples}"
    fields: dict[str, FieldValue] = {
        **first.output_fields,
        "peregrine.summary.count": window.count,
        "peregrine.summary.window_s": window.window_ns / 1e9,
        "peregrine.summary.first_time": start,
        "peregrine.summary.last_time": end,
        "peregrine.summary.of": first.uuid,
        "peregrine.summary.suppressed": window.suppressed,
    }
    for name in (n for n in sample_fields if n in window.samples):
        fields[f"peregrine.summary.sample.{name}"] = ", ".join(window.samples[name])
    if window.incomplete:
        fields["peregrine.summary.incomplete"] = window.incomplete
    summary = Alert(
        time_ns=last_ns,
        rule=first.rule,
        priority=first.priority,
        output=f"{first.output} [{text}]",
        output_fields=fields,
        hostname=first.hostname,
        source=first.source,
        tags=first.tags,
        uuid=summary_uuid(destination, window.digest, window.start_ns),
    )
    # the summary speaks for its repeats too: flagged when any alert of the window was
    drops = window.drops if dropped(first) is None else merge_drops(window.drops, first)
    if drops is None:
        return summary
    return with_drops(summary, drops.first_ns, drops.last_ns, drops.counts, drops.lost)


def iso_time(time_ns: int) -> str:
    """RFC 3339 UTC to the nanosecond, as alert times are written."""
    seconds, nanos = divmod(time_ns, 1_000_000_000)
    return f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(seconds))}.{nanos:09d}Z"


def format_metadata(replay: Replay) -> str:
    """``a1;<mark>;<digest>.<offset>.<start>[.o],...`` with numbers in base 36: fits 4096 bytes."""
    entries = ",".join(f"{d}.{_b36(o)}.{_b36(s)}{'.o' if origin else ''}"
                       for d, (o, s, origin) in replay.windows.items())
    return f"{_VERSION};{_b36(replay.mark)};{entries}"


def parse_metadata(text: str | None) -> Replay | None:
    if not text or not text.startswith(f"{_VERSION};"):
        return None
    try:
        _, mark, entries = text.split(";", 2)
        windows: dict[str, tuple[int, int, bool]] = {}
        for entry in filter(None, entries.split(",")):
            parts = entry.split(".")
            windows[parts[0]] = (int(parts[1], 36), int(parts[2], 36), parts[3:] == ["o"])
        return Replay(int(mark, 36), windows)
    except (ValueError, IndexError):
        return None


def _b36(number: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    if number <= 0:  # offsets and times are never negative
        return "0"
    out = ""
    while number:
        number, rest = divmod(number, 36)
        out = digits[rest] + out
    return out
