"""Evidence: what the alerting process and its ancestors did just before the event that matched.

Falco evaluates one event and forgets it (falco #81, #3595 ask for the context). An alert here may
carry ``evidence``: the last `MAX_EVIDENCE_EVENTS` events of the triggering process or one of its
ancestors that came before the trigger, oldest first, each as a Falco-style field map (the same
field names and value types as ``output_fields``). Which events are candidates is the caller's
business (the worker hands the current batch and the node's recent ones); this module only
selects and renders, so it stays a pure function of records.

A process is matched by its pid and an ancestor by the pids of its parent chain as the trigger's
records give it. Across batches that is a pid match, so a pid reused within the retained history
could lend a stranger's events: the chain's start times are compared when both records carry one.

Evidence is attacker-controlled text and is bounded on its own, before the alert's size bound
sees it: every string at most `MAX_VALUE_CHARS` characters, and the oldest entries dropped until
the list takes at most `MAX_EVIDENCE_BYTES` of JSON.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from functools import cache
from typing import Any, Final

from rules.alert import EncodedEvidence, FieldValue
from rules.output import OutputTemplate, compile_output, json_of
from rules.record import EV_NUM, EV_PROC, P_PARENT, P_PID, P_PPID, P_START, Event, Process

MAX_EVIDENCE_EVENTS: Final = 16  # the default; a worker may be configured up to EVIDENCE_EVENTS_LIMIT
EVIDENCE_EVENTS_LIMIT: Final = 64
MAX_VALUE_CHARS: Final = 512
MAX_EVIDENCE_BYTES: Final = 16 * 1024
MAX_ANCESTORS: Final = 16  # parent links followed from the trigger's process
# What a responder reads first: when, what, who, on what. Falco's field names, so a SIEM query
# written for output_fields works on evidence too.
FIELDS: Final = (
    "evt.time", "evt.num", "evt.type", "evt.res", "proc.pid", "proc.ppid", "proc.name",
    "proc.cmdline", "proc.exepath", "fd.name", "user.name",
)  # fmt: skip
_CUT: Final = "…"


@cache
def _template() -> OutputTemplate:
    return compile_output(" ".join(f"%{name}" for name in FIELDS), suggested=False)


@cache
def _keys() -> tuple[str, ...]:
    return tuple(token.key for token in _template().tokens)


def lineage(trigger: Event) -> dict[int, int | None]:
    """The pids of the trigger's process and its ancestors, each with its start time when known."""
    chain: dict[int, int | None] = {}
    proc: Process | None = trigger[EV_PROC]
    last: Process | None = None
    for _ in range(MAX_ANCESTORS + 1):
        if proc is None:
            break
        chain.setdefault(proc[P_PID], proc[P_START] or None)
        last, proc = proc, proc[P_PARENT]
    if last is not None and last[P_PPID] not in chain and len(chain) <= MAX_ANCESTORS:
        chain[last[P_PPID]] = None  # the parent the batch did not carry: its pid only
    chain.pop(0, None)  # pid 0 is no process: never match the idle task's records
    return chain


def related(ev: Event, chain: dict[int, int | None]) -> bool:
    """Whether `ev` is an event of a process in `chain` (`lineage`)."""
    proc: Process = ev[EV_PROC]
    if proc[P_PID] not in chain:
        return False
    start = chain[proc[P_PID]]
    return start is None or not proc[P_START] or proc[P_START] == start


def select(
    trigger: Event,
    history: Iterable[Sequence[Event]],
    limit: int = MAX_EVIDENCE_EVENTS,
    chain: dict[int, int | None] | None = None,
) -> list[Event]:
    """The last `limit` events of `history` before the trigger (by ``evt.num``) that belong to its
    lineage, oldest first. `history` yields runs of one node's events, newest run first, each run
    in the node's order (a batch, or a per-process slice of one)."""
    if limit <= 0:
        return []
    if chain is None:  # a caller that already walked the lineage passes it
        chain = lineage(trigger)
    before = trigger[EV_NUM]
    found: list[Event] = []
    for run in history:
        for ev in reversed(run):
            if ev[EV_NUM] < before and ev is not trigger and related(ev, chain):
                found.append(ev)
                if len(found) == limit:
                    found.reverse()
                    return found
    found.reverse()
    return found


def render(events: Sequence[Event]) -> EncodedEvidence:
    """The events as bounded field maps (absent values left out), oldest first, at most
    `MAX_EVIDENCE_BYTES` of JSON: the oldest entries go first when the list is too large. The
    JSON written to measure it comes along (`EncodedEvidence`), for the alert to reuse."""
    keys, read = _keys(), _template().read
    maps: list[dict[str, FieldValue]] = []
    for ev in events:
        entry: dict[str, Any] = {}
        values: tuple[Any, ...] = read(ev)
        for key, value in zip(keys, values, strict=True):  # one pass: most values go in untouched
            if value is None:
                continue
            kind = type(value)
            if kind is str:
                if len(value) > MAX_VALUE_CHARS:
                    value = value[: MAX_VALUE_CHARS - 1] + _CUT
            elif kind is not int and kind is not bool and kind is not float:
                value = json_of(value)
                if isinstance(value, str) and len(value) > MAX_VALUE_CHARS:
                    value = value[: MAX_VALUE_CHARS - 1] + _CUT
            entry[key] = value
        maps.append(entry)
    text = _json(maps)
    if _utf8_size(text) <= MAX_EVIDENCE_BYTES:  # the usual case: one C-speed dump of the list
        return EncodedEvidence(maps, text)
    sizes = [_utf8_size(_json(m)) + 1 for m in maps]
    total = sum(sizes) + 1
    start = 0
    while total > MAX_EVIDENCE_BYTES and start < len(maps):
        total -= sizes[start]
        start += 1
    return EncodedEvidence(maps[start:], _json(maps[start:]))


def _json(value: object) -> str:
    """`value` as the alert's compact JSON text (`alerts.wire` writes the same form)."""
    return _ENCODER.encode(value)


# json.dumps builds an encoder per call when given options: a few microseconds per alert
_ENCODER: Final = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _utf8_size(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))
