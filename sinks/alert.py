"""The sink's view of a record on `peregrine.alerts`: Falco's JSON alert plus a stable ``uuid``.

Decoding is tolerant where Falco is (missing ``output_fields`` or ``tags``) and strict where a
destination needs a value (``rule``, ``priority``, ``time``): those records are poison and go to
the dead-letter topic. Invalid UTF-8 is replaced with U+FFFD here, once; every string kept is still
attacker-controlled text that each format escapes in `escape.py`.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid as uuidlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from rules.priority import Priority
from sinks.errors import AlertDecodeError

# A fixed namespace so an alert that lacks a uuid gets the same one on every redelivery.
_UUID_NAMESPACE = uuidlib.UUID("8c5f3f7e-4d0b-4c4e-9a57-1f0e6c2b9d11")
# The uuid becomes a document id, an HTTP header and a syslog parameter: keep it a plain token.
_UUID_SHAPE = re.compile(r"[0-9A-Za-z._:-]{1,128}")


@dataclass(frozen=True, slots=True)
class Alert:
    time: str  # as Falco wrote it: RFC 3339 with up to 9 fractional digits
    time_ns: int  # the same instant, epoch nanoseconds
    rule: str
    priority: Priority
    output: str
    output_fields: dict[str, Any]
    hostname: str
    source: str
    tags: tuple[str, ...]
    uuid: str

    @property
    def namespace(self) -> str | None:
        value = self.output_fields.get("k8s.ns.name")
        return value if isinstance(value, str) else None

    def to_json_dict(self) -> dict[str, Any]:
        """Falco's JSON alert with the uuid, as consumers of `peregrine.alerts` expect it."""
        return {
            "uuid": self.uuid,
            "time": self.time,
            "rule": self.rule,
            "priority": self.priority.label,
            "output": self.output,
            "output_fields": self.output_fields,
            "hostname": self.hostname,
            "source": self.source,
            "tags": list(self.tags),
        }


def parse_time_ns(text: str) -> int:
    """RFC 3339 (``2026-08-21T10:15:30.123456789Z``) to epoch ns; Python keeps only microseconds."""
    head, dot, rest = text.partition(".")
    fraction, zone = rest, ""
    if dot:
        digits = len(rest) - len(rest.lstrip("0123456789"))
        fraction, zone = rest[:digits], rest[digits:]
    else:
        head, zone = _split_zone(text)
    stamp = datetime.fromisoformat(head + (zone or "Z").replace("z", "Z"))
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    seconds = int(stamp.timestamp())
    nanos = int((fraction + "000000000")[:9]) if fraction else 0
    return seconds * 1_000_000_000 + nanos


def _split_zone(text: str) -> tuple[str, str]:
    if text.endswith(("Z", "z")):
        return text[:-1], "Z"
    if len(text) > 6 and text[-6] in "+-" and text[-3] == ":":
        return text[:-6], text[-6:]
    return text, ""


def decode_alert(value: bytes) -> Alert:
    """One Kafka record value to an `Alert`; raises `AlertDecodeError` saying what is wrong."""
    try:
        doc = json.loads(value.decode("utf-8", errors="replace"))
    except ValueError as exc:
        raise AlertDecodeError(f"not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise AlertDecodeError(f"expected a JSON object, got {type(doc).__name__}")
    missing = [k for k in ("time", "rule", "priority") if not isinstance(doc.get(k), str)]
    if missing:
        raise AlertDecodeError(f"missing or non-string field(s): {', '.join(missing)}")
    try:
        priority = Priority.parse(doc["priority"])
        time_ns = parse_time_ns(doc["time"])
    except ValueError as exc:
        raise AlertDecodeError(str(exc)) from None
    fields = doc.get("output_fields")
    tags = doc.get("tags")
    raw_uuid = doc.get("uuid")
    if raw_uuid is None:
        raw_uuid = str(uuidlib.uuid5(_UUID_NAMESPACE, hashlib.sha256(value).hexdigest()))
    if not (isinstance(raw_uuid, str) and _UUID_SHAPE.fullmatch(raw_uuid)):
        raise AlertDecodeError("uuid must be 1-128 characters of [0-9A-Za-z._:-]")
    return Alert(
        time=doc["time"],
        time_ns=time_ns,
        rule=doc["rule"],
        priority=priority,
        output=str(doc.get("output") or ""),
        output_fields=fields if isinstance(fields, dict) else {},
        hostname=str(doc.get("hostname") or ""),
        source=str(doc.get("source") or "syscall"),
        tags=tuple(str(t) for t in tags) if isinstance(tags, list) else (),
        uuid=raw_uuid,
    )
