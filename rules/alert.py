"""Falco's JSON alert: the `Alert` record, its identity, and the rule-match builder.

Keys as falco ``userspace/engine/formats.cpp`` writes them with its default JSON options: ``time``
(ISO-8601 UTC, 9-digit ns), ``rule``, ``priority`` (printed name), ``output``
(``"<HH:MM:SS.nnnnnnnnn>: <Priority> <message>"``), ``output_fields`` (typed, ``evt.time`` in
integer ns, ``null`` for missing values), ``hostname``, ``source`` and sorted ``tags``; Falco's
internal messages (source ``internal``, e.g. the syscall event drop alert) have no ``tags`` key.
Peregrine adds ``uuid``, first: a name-based UUID of (hostname, event time, thread id, event number,
rule), so a replayed event yields the same id and sinks can deduplicate.

The record lives here, beside the event record, because rules build it and every stage reads it;
its wire format (bytes, size bound, validation, JSON Schema) is `alerts.wire`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from rules.output import clock_time, iso_time
from rules.priority import Priority
from rules.record import EV_NUM, EV_PROC, EV_TID, EV_TS, P_NODE, Event
from rules.ruleset import CompiledRule

# The one namespace of alert ids; changing it changes every id, so never do.
ALERT_NAMESPACE: Final = uuid.UUID("6f1c2a4e-5b7d-4c8e-9a0f-3e2d1c4b5a69")
# Falco's source of its own messages (falco_outputs::handle_msg): those alerts carry no tags.
INTERNAL_SOURCE: Final = "internal"

FieldValue = str | int | float | bool | None
# `rules.evidence`: what the process did before the trigger, oldest first, one field map per event
Evidence = tuple[dict[str, FieldValue], ...]


class EncodedEvidence(tuple[dict[str, FieldValue], ...]):
    """Evidence with its JSON as the alert writes it (compact, no ASCII escaping), made together by
    `rules.evidence.render`, which writes the JSON anyway to bound its size: `alerts.wire.encode`
    splices this text into the alert instead of writing the maps a second time. The text belongs to
    this tuple, so an alert given other evidence is encoded from its maps; the maps are not changed
    after (nothing in the pipeline changes an alert's evidence in place)."""

    json: str

    def __new__(cls, maps: Iterable[dict[str, FieldValue]], json: str) -> EncodedEvidence:
        self = super().__new__(cls, maps)
        self.json = json
        return self


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert as it travels: every key of Falco's JSON, ``time`` kept as epoch nanoseconds."""

    time_ns: int
    rule: str
    priority: Priority
    output: str
    output_fields: dict[str, FieldValue]
    hostname: str
    source: str
    tags: tuple[str, ...]  # always () for an internal alert, whose JSON has no tags key
    uuid: str
    evidence: Evidence = ()  # not Falco's: written only when there is some, after Falco's keys

    @property
    def time(self) -> str:
        """Falco's JSON ``time``: RFC 3339 UTC with nine fractional digits."""
        return iso_time(self.time_ns)

    @property
    def namespace(self) -> str | None:
        """The Kubernetes namespace, when the rule's output has ``k8s.ns.name``."""
        value = self.output_fields.get("k8s.ns.name")
        return value if isinstance(value, str) else None

    def to_json_dict(self, with_evidence: bool = True) -> dict[str, object]:
        """``uuid`` first, so a reader can take the idempotency key as a prefix without parsing (the
        webhook sink does), then Falco's keys in Falco's (sorted) order, then ``evidence`` (left out
        when `with_evidence` is false: the caller writes it after the rest)."""
        doc: dict[str, object] = {
            "uuid": self.uuid,
            "hostname": self.hostname,
            "output": self.output,
            "output_fields": self.output_fields,
            "priority": self.priority.label,
            "rule": self.rule,
            "source": self.source,
        }
        if self.source != INTERNAL_SOURCE:
            doc["tags"] = list(self.tags)
        doc["time"] = self.time
        if self.evidence and with_evidence:
            doc["evidence"] = [dict(entry) for entry in self.evidence]
        return doc


def alert_id(hostname: str, ts: int, tid: int, num: int, rule: str) -> str:
    """The stable id of one rule match on one event (``tid`` and ``num`` 0 when no event: internal alerts)."""
    return str(uuid.uuid5(ALERT_NAMESPACE, f"{hostname}\x1f{ts}\x1f{tid}\x1f{num}\x1f{rule}"))


def rule_alert(rule: CompiledRule, ev: Event) -> Alert:
    """The alert of `rule` matching `ev`."""
    ts: int = ev[EV_TS]
    hostname = ev[EV_PROC][P_NODE] or ""
    message, fields = rule.output.render(ev)
    output_fields: dict[str, FieldValue] = {"evt.time": ts, **fields}  # type: ignore[dict-item]
    return Alert(
        time_ns=ts,
        rule=rule.name,
        priority=rule.priority,
        output=f"{clock_time(ts)}: {rule.priority.label} {message}",
        output_fields=output_fields,
        hostname=hostname,
        source=rule.source,
        tags=tuple(sorted(rule.tags)),
        uuid=alert_id(hostname, ts, ev[EV_TID], ev[EV_NUM], rule.name),
    )


def build_alert(rule: CompiledRule, ev: Event) -> dict[str, object]:
    """The Falco JSON alert (plus ``uuid``) for `rule` matching `ev`, as a plain dict."""
    return rule_alert(rule, ev).to_json_dict()
