"""The wire format of `peregrine.events`: a versioned, self-contained msgpack batch.

One Kafka message = one batch from one node::

    {"v": SCHEMA_VERSION, "node": str, "boot_id": str, "seq": int, "t_first": int, "t_last": int,
     "procs": [process, ...], "events": [event, ...], "drops": [first_ns, last_ns, n, ...]}

Events and processes are the positional arrays of `rules.record`. Events reference processes by
their index in ``procs`` and processes reference their parent the same way (``-1``: not in the
batch), so any worker can evaluate any batch with no state carried between messages. ``seq``
increases by one per batch and per (node, boot_id), which lets consumers count gaps.

`decode_batch` checks everything a worker relies on before evaluating (types, lengths, references)
and raises `WireError` naming the offending field; it never raises anything else, whatever the
bytes. Decoding resolves references in place: ``EV_PROC`` and ``P_PARENT`` become the records.
`Decoder` does the same in one C pass (wiredecode.c) for the worker, falling back to it.

``drops`` is optional (absent: nothing was lost; batches written before it existed decode
unchanged): what the node lost around this batch, so an alert raised from it can say that the
picture may be incomplete. It is `DROPS_LEN` integers: the window the node counted them in
(``first_ns``, ``last_ns``, epoch ns, ``first_ns <= last_ns``), then one count per cause in
`DROP_CAUSES` order (the stats categories of `collectors.stats`). The window is the collector's
(`collectors.batch.DropWindow` says how it is chosen so that it is sound); counts of adjacent
batches may overlap, so they are "around this batch", not additive (`peregrine.stats` has the
totals). The value is the node's word: each count is at most `MAX_DROP_COUNT` and each time at
most 2**63 - 1, it is checked here and in the C pass alike, and it only ever reaches the alerts of
its own batch. A ``drops`` whose counts are all zero decodes as no drops.

An event is `EVENT_LEN` long, or `LEGACY_EVENT_LEN` when written before ``EV_FDTYPES`` existed
(it then decodes unchanged, read as "fd types not captured"). ``EV_FDTYPES`` is null (not
captured) or a bin of at most `MAX_FDTYPES_FDS` bytes, each 0 (fd not open) or 1 + an index of
`FDTYPE_NAMES`; anything else is refused, as the C pass refuses it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Final, Protocol

import msgpack

from bus.topics import MAX_DECOMPRESSED_BYTES
from collectors.errors import CollectorError
from rules import native
from rules.record import (
    EV_ARGS,
    EV_FDTYPES,
    EV_PROC,
    EV_TYPE,
    EVENT_LEN,
    EVENT_PARAMS,
    EVENT_TYPES,
    FDTYPE_NAMES,
    LEGACY_EVENT_LEN,
    MAX_FDTYPES_FDS,
    P_CONTAINER,
    P_PARENT,
    PROCESS_LEN,
    SCHEMA_VERSION,
    Event,
    Process,
)

# A batch on the wire is at most bus.topics.MAX_MESSAGE_BYTES compressed; decompressed, one larger than
# this means a bug upstream or a compression bomb, and refusing it before decoding bounds the memory a
# hostile message can make a worker allocate. Set with the other size limits, in bus.topics.
MAX_BATCH_BYTES: Final = MAX_DECOMPRESSED_BYTES
_KEYS: Final = ("v", "node", "boot_id", "seq", "t_first", "t_last", "procs", "events")
# The causes a batch's ``drops`` counts, in wire order after the window's two times; also the drop
# categories of `peregrine.stats` (collectors.stats takes them from here).
DROP_CAUSES: Final = (
    "ring_full", "inflight_full", "bug", "page_fault_reads", "userspace_queue_full", "delivery_failed",
)
# Causes that lose whole events; page_fault_reads loses a field of an event that is still there.
LOST_CAUSES: Final = ("ring_full", "inflight_full", "bug", "userspace_queue_full", "delivery_failed")
DROPS_LEN: Final = 2 + len(DROP_CAUSES)
# A trillion events: more than a node makes in days, small enough that a sum of the causes stays far
# from any 64-bit limit on the way to an alert's JSON.
MAX_DROP_COUNT: Final = 10**12
MAX_DROP_TIME: Final = 2**63 - 1
_N_TYPES: Final = len(EVENT_TYPES)
_N_PARAMS: Final = tuple(len(p) for p in EVENT_PARAMS)


# Also a ValueError, as it was before the package had a root: callers that validate input catch it.
class WireError(CollectorError, ValueError):
    """A batch that cannot be decoded; `reason` is short and stable (it becomes the DLQ reason)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


@dataclass(slots=True)
class Batch:
    node: str
    boot_id: str
    seq: int
    t_first: int
    t_last: int
    procs: list[Process] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    v: int = SCHEMA_VERSION
    drops: Drops | None = None


@dataclass(frozen=True, slots=True)
class Drops:
    """What a node lost around one batch: the window it counted in and one count per `DROP_CAUSES`."""

    first_ns: int
    last_ns: int
    counts: tuple[int, ...]  # in DROP_CAUSES order

    @property
    def lost(self) -> int:
        """Whole events lost (page-fault reads only emptied a field)."""
        return sum(n for cause, n in zip(DROP_CAUSES, self.counts, strict=True) if cause in LOST_CAUSES)

    def by_cause(self) -> dict[str, int]:
        return dict(zip(DROP_CAUSES, self.counts, strict=True))

    def to_wire(self) -> list[int]:
        return [self.first_ns, self.last_ns, *self.counts]


def encode_batch(batch: Batch) -> bytes:
    """Pack a batch whose events/processes hold indexes (not resolved references)."""
    envelope = {
        "v": batch.v,
        "node": batch.node,
        "boot_id": batch.boot_id,
        "seq": batch.seq,
        "t_first": batch.t_first,
        "t_last": batch.t_last,
        "procs": batch.procs,
        "events": batch.events,
    }
    if batch.drops is not None:  # absent when nothing was lost: such batches stay byte for byte as before
        envelope["drops"] = batch.drops.to_wire()
    packed: bytes = msgpack.packb(envelope, use_bin_type=True)
    return packed


def decode_batch(data: bytes) -> Batch:
    """Unpack and validate a batch, resolving process references. Raises only WireError.

    The reference decoder: `Decoder` gives the same batches faster where its C part is built."""
    _check_size(data)
    try:
        obj = msgpack.unpackb(data, raw=False, strict_map_key=True)
    except msgpack.ExtraData as exc:
        raise WireError("trailing bytes", str(exc)) from None
    except (ValueError, TypeError, msgpack.UnpackException, RecursionError) as exc:
        # msgpack signals truncation with ValueError subclasses, bad UTF-8 with UnicodeDecodeError
        raise WireError("malformed msgpack", f"{type(exc).__name__}: {shown(str(exc))}") from None
    return _validate(obj)


# Characters of an offending value an error text quotes: error texts reach logs and DLQ headers, and
# a value is the sender's (a 1 MB version field made a 1 MB log line, a newline forged one).
_SHOWN: Final = 40


def shown(value: object) -> str:
    """A short, one-line, escaped rendering of an offending wire value, for error texts."""
    if isinstance(value, (str, bytes)) and len(value) > _SHOWN:
        return f"{value[:_SHOWN]!r}...({len(value)} long)"
    scalar = isinstance(value, (str, bytes, int, float, bool, type(None)))
    text = repr(value) if scalar else type(value).__name__  # msgpack ints are 64-bit: repr is short
    return text if len(text) <= 2 * _SHOWN else f"{text[:2 * _SHOWN]}..."


def _check_size(data: object) -> None:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise WireError("not bytes", type(data).__name__)
    if len(data) > MAX_BATCH_BYTES:
        raise WireError("batch too large", f"{len(data)} bytes > {MAX_BATCH_BYTES}")


NATIVE_SOURCE: Final = Path(__file__).with_name("wiredecode.c")


class _NativeDecoder(Protocol):
    def decode(self, data: bytes) -> tuple[Any, ...] | None: ...
    def counts(self) -> tuple[int, int]: ...


@cache
def _native_module() -> Any:
    return native.load("wiredecode", NATIVE_SOURCE)


class Decoder:
    """`decode_batch` for a consumer of many batches: the same results and errors, decoded in one C
    pass (wiredecode.c) that keeps a bounded cache of strings across batches, where the C part is
    built; in Python otherwise (`native` says which). A batch the C pass is not sure of is decoded
    by `decode_batch`, which then gives the same result or the precise error. Keep one per
    consumer: the cache is what makes it fast."""

    def __init__(self) -> None:
        self._native: _NativeDecoder | None
        try:
            module = _native_module()
        except native.NativeError:
            self._native = None
        else:
            self._native = module.Decoder(
                SCHEMA_VERSION, EVENT_LEN, PROCESS_LEN, EV_TYPE, EV_PROC, EV_ARGS,
                P_PARENT, P_CONTAINER, _N_PARAMS, DROPS_LEN, MAX_DROP_COUNT,
                EV_FDTYPES, MAX_FDTYPES_FDS, len(FDTYPE_NAMES),
            )

    @property
    def native(self) -> bool:
        return self._native is not None

    def cache_counts(self) -> tuple[int, int]:
        """(strings found in the cache, strings made) since this decoder was made."""
        return self._native.counts() if self._native is not None else (0, 0)

    def decode(self, data: bytes) -> Batch:
        """Like `decode_batch`. Raises only WireError (and MemoryError)."""
        if self._native is None:
            return decode_batch(data)
        _check_size(data)
        fields = self._native.decode(data)
        if fields is None:
            return decode_batch(data)
        node, boot_id, seq, t_first, t_last, procs, events, v, drops = fields
        return Batch(node, boot_id, seq, t_first, t_last, procs, events, v, _drops(drops))


def _validate(obj: Any) -> Batch:
    if not isinstance(obj, dict):
        raise WireError("envelope is not a map", type(obj).__name__)
    version = obj.get("v")
    if version != SCHEMA_VERSION:
        raise WireError(
            "unsupported schema version", f"v={shown(version)}, this build reads v={SCHEMA_VERSION}"
        )
    missing = [k for k in _KEYS if k not in obj]
    if missing:
        raise WireError("missing envelope field", ", ".join(missing))
    node, boot_id = obj["node"], obj["boot_id"]
    if not isinstance(node, str) or not node:
        raise WireError("bad envelope field", "node must be a non-empty string")
    if not isinstance(boot_id, str):
        raise WireError("bad envelope field", "boot_id must be a string")
    for key in ("seq", "t_first", "t_last"):
        if type(obj[key]) is not int:
            raise WireError("bad envelope field", f"{key} must be an integer")
    drops = obj.get("drops")
    if "drops" in obj:
        _check_drops(drops)
    procs, events = obj["procs"], obj["events"]
    if not isinstance(procs, list):
        raise WireError("bad envelope field", "procs must be an array")
    if not isinstance(events, list):
        raise WireError("bad envelope field", "events must be an array")

    n_procs = len(procs)
    for i, p in enumerate(procs):
        if type(p) is not list or len(p) != PROCESS_LEN:
            raise WireError("bad process record", f"procs[{i}] must be an array of {PROCESS_LEN}")
        parent = p[P_PARENT]
        if type(parent) is not int or not -1 <= parent < n_procs or parent == i:
            raise WireError(
                "bad process reference", f"procs[{i}] parent {shown(parent)} of {n_procs} processes"
            )
        if p[P_CONTAINER] is not None:
            raise WireError("bad process record", f"procs[{i}] carries container metadata on the wire")
    _reject_parent_cycles(procs)
    for p in procs:
        parent = p[P_PARENT]
        p[P_PARENT] = None if parent == -1 else procs[parent]

    _resolve_events(events, procs)
    return Batch(
        node=node,
        boot_id=boot_id,
        seq=obj["seq"],
        t_first=obj["t_first"],
        t_last=obj["t_last"],
        procs=procs,
        events=events,
        v=version,
        drops=_drops(drops),
    )


def _check_drops(drops: object) -> None:
    """The checks wiredecode.c's `drops_ok` makes, with the error it leaves to this path."""
    if type(drops) is not list or len(drops) != DROPS_LEN or not all(type(n) is int for n in drops):
        raise WireError("bad envelope field", f"drops must be an array of {DROPS_LEN} integers")
    first_ns, last_ns, *counts = drops
    if not 0 <= first_ns <= last_ns <= MAX_DROP_TIME:
        raise WireError("bad envelope field", f"drops window {first_ns}..{last_ns} is not 0 <= first <= last")
    if not all(0 <= n <= MAX_DROP_COUNT for n in counts):
        raise WireError("bad envelope field", f"drops counts must be 0..{MAX_DROP_COUNT}")


def _drops(checked: list[int] | None) -> Drops | None:
    """A checked ``drops`` value as `Drops`; None when absent or all its counts are zero."""
    if checked is None or not any(checked[2:]):
        return None
    return Drops(checked[0], checked[1], tuple(checked[2:]))


def _resolve_events(events: list[Any], procs: list[Process]) -> None:
    """Check every event and point its EV_PROC at the process record. The hot loop of decoding: one
    combined test per event on locally bound names; the precise error only once it fails."""
    n_procs, n_types, n_params = len(procs), _N_TYPES, _N_PARAMS
    ev_len, ev_type, ev_proc, ev_args, ev_fdtypes = EVENT_LEN, EV_TYPE, EV_PROC, EV_ARGS, EV_FDTYPES
    lengths = (EVENT_LEN, LEGACY_EVENT_LEN)
    for i, ev in enumerate(events):
        if type(ev) is list and len(ev) in lengths:
            etype, proc, args = ev[ev_type], ev[ev_proc], ev[ev_args]
            if (
                type(etype) is int
                and type(proc) is int
                and type(args) is list
                and 0 <= etype < n_types
                and 0 <= proc < n_procs
                and len(args) == n_params[etype]
                and (len(ev) < ev_len or ev[ev_fdtypes] is None or fdtypes_ok(ev[ev_fdtypes]))
            ):
                ev[ev_proc] = procs[proc]
                continue
        raise _event_error(i, ev, n_procs)


def fdtypes_ok(table: object) -> bool:
    """A present ``EV_FDTYPES``: bytes, one per fd, each 0 or 1 + an index of FDTYPE_NAMES."""
    if type(table) is not bytes or len(table) > MAX_FDTYPES_FDS:
        return False
    return not table or max(table) <= len(FDTYPE_NAMES)


def _event_error(i: int, ev: Any, n_procs: int) -> WireError:
    """What is wrong with events[i], checked in the order a reader would: shape, type, process, args,
    fd types."""
    if type(ev) is not list or len(ev) not in (EVENT_LEN, LEGACY_EVENT_LEN):
        shape = f"events[{i}] must be an array of {EVENT_LEN} (or {LEGACY_EVENT_LEN})"
        return WireError("bad event record", shape)
    etype, proc = ev[EV_TYPE], ev[EV_PROC]
    if type(etype) is not int or not 0 <= etype < _N_TYPES:
        return WireError("unknown event type", f"events[{i}] type {shown(etype)}")
    if type(proc) is not int or not 0 <= proc < n_procs:
        return WireError("bad process reference", f"events[{i}] process {shown(proc)} of {n_procs}")
    if type(ev[EV_ARGS]) is not list or len(ev[EV_ARGS]) != _N_PARAMS[etype]:
        # compiled rules index parameters positionally: a short list would fail mid-evaluation
        return WireError(
            "bad event record", f"events[{i}] ({EVENT_TYPES[etype]}) needs {_N_PARAMS[etype]} parameters"
        )
    return WireError(
        "bad event record",
        f"events[{i}] fd types must be null or at most {MAX_FDTYPES_FDS} bytes, each 0..{len(FDTYPE_NAMES)}, "
        f"not {shown(ev[EV_FDTYPES])}",
    )


def _reject_parent_cycles(procs: list[Process]) -> None:
    """Parent indexes must form a forest: a cycle would make ancestor walks loop. Linear time, so a
    hostile batch of long chains cannot make a worker hang."""
    state = [0] * len(procs)  # 0 unseen, 1 on the current path, 2 known to reach a root
    for start in range(len(procs)):
        path = []
        cur = start
        while cur != -1 and state[cur] == 0:
            state[cur] = 1
            path.append(cur)
            cur = procs[cur][P_PARENT]
        if cur != -1 and state[cur] == 1:
            raise WireError("bad process reference", f"procs[{start}] has a cycle in its parent chain")
        for i in path:
            state[i] = 2
