"""Falco's JSON alert for a rule match, as a plain dict (serialising it belongs to the caller).

Keys as falco ``userspace/engine/formats.cpp`` writes them with its default JSON options: ``time``
(ISO-8601 UTC, 9-digit ns), ``rule``, ``priority`` (printed name), ``output``
(``"<HH:MM:SS.nnnnnnnnn>: <Priority> <message>"``), ``output_fields`` (typed, ``evt.time`` in
integer ns, ``null`` for missing values), ``hostname``, ``source`` and sorted ``tags``. Peregrine
adds ``uuid``: a name-based UUID of (hostname, event time, thread id, event number, rule), so a
replayed event yields the same id and sinks can deduplicate.
"""

from __future__ import annotations

import uuid

from rules.output import clock_time, iso_time
from rules.record import EV_NUM, EV_PROC, EV_TID, EV_TS, P_NODE, Event
from rules.ruleset import CompiledRule

# Fixed namespace for alert ids; changing it changes every id, so never do.
ALERT_NAMESPACE = uuid.UUID("6f1c2a4e-5b7d-4c8e-9a0f-3e2d1c4b5a69")


def alert_id(hostname: str, ts: int, tid: int, num: int, rule: str) -> str:
    """The stable id of one rule match on one event."""
    return str(uuid.uuid5(ALERT_NAMESPACE, f"{hostname}\x1f{ts}\x1f{tid}\x1f{num}\x1f{rule}"))


def build_alert(rule: CompiledRule, ev: Event) -> dict[str, object]:
    """The Falco JSON alert (plus ``uuid``) for `rule` matching `ev`."""
    ts: int = ev[EV_TS]
    hostname = ev[EV_PROC][P_NODE] or ""
    message, fields = rule.output.render(ev)
    output_fields: dict[str, object] = {"evt.time": ts, **fields}
    return {
        "hostname": hostname,
        "output": f"{clock_time(ts)}: {rule.priority.label} {message}",
        "output_fields": output_fields,
        "priority": rule.priority.label,
        "rule": rule.name,
        "source": rule.source,
        "tags": sorted(rule.tags),
        "time": iso_time(ts),
        "uuid": alert_id(hostname, ts, ev[EV_TID], ev[EV_NUM], rule.name),
    }
