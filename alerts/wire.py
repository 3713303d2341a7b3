"""The wire format of `peregrine.alerts`: one `Alert` per record, Falco's JSON alert plus ``uuid``.

Detection, drop alerts and sinks all go through this module, so there is one format:

* ``encode(alert)``: compact UTF-8 JSON, keys sorted as Falco writes them, at most
  `MAX_ALERT_BYTES` (`alerts.bound` cuts long text with a visible marker); a lone surrogate in a
  string (a path that was not valid UTF-8) becomes U+FFFD, and a non-finite float ``null``.
* ``decode(data)``: the record back to the `Alert`, or `AlertDecodeError` naming the reason for
  anything that is not an alert as `encode` writes it, whatever the bytes: the record is bounded
  before parsing, nesting deeper than the JSON parser's stack is caught, duplicate keys, unknown
  keys, NaN and every field's type are checked. Invalid UTF-8 is replaced with U+FFFD, once, as
  the sinks always did: a reader cannot tell a bit flip in a text from text, and every string
  stays attacker-controlled text that each destination escapes.
* ``from_json_dict(doc)``: the same checks on a document (the worker's rule engine hands dicts).

``schema.json`` beside this module is the published JSON Schema (draft 2020-12) of a record;
everything `encode` writes validates against it, and `decode` accepts exactly what it describes.

**Alerts raised while events were dropped** (`with_drops`): when the batch an alert came from
says its node lost events around it (`collectors.wire` ``drops``), the alert carries
`DROP_FIELDS` in ``output_fields``: ``peregrine.drops.incomplete`` (true), ``.lost`` (whole
events lost), one count per cause (``.ring_full``, ``.inflight_full``, ``.bug``,
``.page_fault_reads``, ``.userspace_queue_full``, ``.delivery_failed``) and the window the node
counted them in (``.first_ns``, ``.last_ns``, epoch ns). All of them or none: an alert whose node
lost nothing has none, and is byte for byte what it was before this existed (Falco's format).
They go in ``output_fields`` rather than in a new top-level key because:

* falcosidekick reads Falco's JSON into a fixed struct: an unknown top-level key is silently
  dropped, while ``output_fields`` reaches every one of its outputs (Slack fields, Elasticsearch,
  Loki...), so its users see the flag with no change on their side;
* a sink of the previous release refuses unknown top-level keys (`decode`) and would dead-letter
  every flagged alert during a rolling upgrade; it accepts any scalar output field;
* the sinks' aggregation summaries already put Peregrine's own facts there
  (``peregrine.summary.*``), with the same namespace so no rule's field can collide (Falco field
  names never start with ``peregrine.``), and Falco's ``output_fields`` are typed, so counts stay
  integers. None of them is a prefix of another name, since falcosidekick's Elasticsearch output
  expands dotted names into objects.

They are integers and fixed names, never cut by `alerts.bound`: the bound holds with 10 more
fields of at most 30 + 20 bytes each (`DROP_FIELDS_MAX_BYTES`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from importlib import resources
from typing import Final, NoReturn

from alerts.bound import MAX_ALERT_BYTES, fit
from alerts.errors import AlertDecodeError, AlertError
from rules.alert import INTERNAL_SOURCE, Alert, EncodedEvidence, Evidence, FieldValue
from rules.evidence import EVIDENCE_EVENTS_LIMIT
from rules.output import iso_time
from rules.priority import Priority

__all__ = [
    "DROP_FIELDS", "MAX_ALERT_BYTES", "MAX_RECORD_BYTES", "Alert", "decode", "drop_field", "dropped",
    "encode", "from_json_dict", "schema", "with_drops",
]

# What a reader accepts: the topic's default limit, so alerts written before the bound still decode.
MAX_RECORD_BYTES: Final = 1024 * 1024
# The uuid becomes a document id, an HTTP header and a syslog parameter: keep it a plain token.
_UUID_SHAPE: Final = re.compile(r"[0-9A-Za-z._:-]{1,128}")
_TIME_SHAPE: Final = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z")
_SURROGATE: Final = re.compile("[\ud800-\udfff]")
_TEXT_KEYS: Final = ("time", "rule", "priority", "output", "hostname", "source", "uuid")
_KEYS: Final = frozenset((*_TEXT_KEYS, "output_fields", "tags"))
_OPTIONAL: Final = frozenset(("evidence",))  # Peregrine's own, absent when empty
_PRIORITIES: Final = {p.label: p for p in Priority}
_SHOWN: Final = 40  # characters of an offending value an error message quotes

# What a node lost around an alert (the module docstring says why here): the causes in the order of
# collectors.wire.DROP_CAUSES (this package may not import collectors; a unit test holds them equal).
DROP_CAUSES: Final = (
    "ring_full", "inflight_full", "bug", "page_fault_reads", "userspace_queue_full", "delivery_failed",
)
DROP_FLAG: Final = "peregrine.drops.incomplete"
DROP_LOST: Final = "peregrine.drops.lost"
DROP_FIRST_NS: Final = "peregrine.drops.first_ns"
DROP_LAST_NS: Final = "peregrine.drops.last_ns"


def drop_field(cause: str) -> str:
    """The output field of one cause's count."""
    return f"peregrine.drops.{cause}"


DROP_FIELDS: Final = (DROP_FLAG, DROP_LOST, *map(drop_field, DROP_CAUSES), DROP_FIRST_NS, DROP_LAST_NS)
# what DROP_FIELDS add to an alert at most: names, quotes, colon, comma, a 19-digit integer each
DROP_FIELDS_MAX_BYTES: Final = sum(len(k) + 4 + 19 for k in DROP_FIELDS)
_DROP_COUNTS: Final = DROP_FIELDS[1:]
_DROP_FIELD_SET: Final = frozenset(DROP_FIELDS)


def encode(alert: Alert) -> bytes:
    """The record value of `alert`, at most `MAX_ALERT_BYTES`; `AlertTooLargeError` if it cannot fit.

    Evidence that comes with its JSON (`EncodedEvidence`, the worker's) is spliced in as the last
    key, where the document has it: the same bytes, without writing its maps a second time."""
    evidence = alert.evidence
    dumps = _dumps
    if isinstance(evidence, EncodedEvidence) and evidence:
        doc = alert.to_json_dict(with_evidence=False)
        tail = _utf8(f',"evidence":{evidence.json}}}')

        def dumps(doc: dict[str, object]) -> bytes:
            return _dumps(doc)[:-1] + tail
    else:
        doc = alert.to_json_dict()
    fields = alert.output_fields
    if any(type(v) is float and not math.isfinite(v) for v in fields.values()):
        doc["output_fields"] = {k: None if type(v) is float and not math.isfinite(v) else v
                                for k, v in fields.items()}
    return fit(doc, dumps)


def _dumps(doc: dict[str, object]) -> bytes:
    return _utf8(json.dumps(doc, ensure_ascii=False, separators=(",", ":"), allow_nan=False))


def _utf8(text: str) -> bytes:
    try:
        return text.encode()
    except UnicodeEncodeError:  # same size: a surrogate is 3 bytes in `bound`'s count, U+FFFD too
        return _SURROGATE.sub("\ufffd", text).encode()


def decode(data: bytes) -> Alert:
    """One record value to its `Alert`; raises `AlertDecodeError` (only) for anything else."""
    if len(data) > MAX_RECORD_BYTES:
        raise AlertDecodeError("too large", f"{len(data)} bytes, more than {MAX_RECORD_BYTES}")
    try:
        doc = json.loads(
            data.decode("utf-8", "replace"),
            object_pairs_hook=_unique_keys,
            parse_constant=_no_constant,
            parse_float=_finite_float,
        )
    except RecursionError:
        raise AlertDecodeError("not an alert", "nested deeper than the JSON parser allows") from None
    except ValueError as exc:  # JSONDecodeError, our hooks, the 4300-digit int limit
        raise AlertDecodeError("not JSON", _bounded(str(exc), 200)) from None
    return from_json_dict(doc)


def from_json_dict(doc: object) -> Alert:
    """Falco's JSON alert (plus uuid) as parsed JSON to the `Alert`; `AlertDecodeError` if it is not one."""
    if not isinstance(doc, Mapping):
        _reject(f"expected a JSON object, got {type(doc).__name__}")
    unknown = doc.keys() - _KEYS - _OPTIONAL
    if unknown:
        _reject(f"unknown key(s): {_names(unknown)}")
    missing = _KEYS - doc.keys()
    if doc.get("source") == INTERNAL_SOURCE:
        if "tags" in doc:
            _reject("an internal alert has no tags")
        missing -= {"tags"}
    if missing:
        _reject(f"missing key(s): {_names(missing)}")
    wrong = [k for k in _TEXT_KEYS if not isinstance(doc[k], str)]
    if wrong:
        _reject(f"not a string: {', '.join(wrong)}")
    text = {k: _text(doc[k]) for k in _TEXT_KEYS}
    priority = _PRIORITIES.get(text["priority"])
    if priority is None:
        _reject(f"unknown priority {_bounded(text['priority'], _SHOWN)!r}; expected one of "
                f"{', '.join(_PRIORITIES)}")
    if not _UUID_SHAPE.fullmatch(text["uuid"]):
        _reject("uuid must be 1-128 characters of [0-9A-Za-z._:-]")
    return Alert(
        time_ns=_time_ns(text["time"]),
        rule=text["rule"],
        priority=priority,
        output=text["output"],
        output_fields=_check_drop_fields(_fields(doc["output_fields"])),
        hostname=text["hostname"],
        source=text["source"],
        tags=_tags(doc.get("tags", [])),
        uuid=text["uuid"],
        evidence=_evidence(doc.get("evidence", [])),
    )


def with_drops(alert: Alert, first_ns: int, last_ns: int, counts: Mapping[str, int], lost: int) -> Alert:
    """`alert` flagged as raised while its node lost events: `DROP_FIELDS` appended to its output fields.

    `counts` by cause (`DROP_CAUSES`; absent causes count 0), `lost` the whole events among them,
    the window in epoch ns; the caller has checked them (collectors.wire bounds a node's values)."""
    fields: dict[str, FieldValue] = {**alert.output_fields, DROP_FLAG: True, DROP_LOST: lost}
    for cause in DROP_CAUSES:
        fields[drop_field(cause)] = counts.get(cause, 0)
    fields[DROP_FIRST_NS] = first_ns
    fields[DROP_LAST_NS] = last_ns
    return dataclasses.replace(alert, output_fields=fields)  # with its evidence: most needed here


def dropped(alert: Alert) -> int | None:
    """Events the alert's node lost around it (`with_drops`), or None when it reported no loss."""
    if alert.output_fields.get(DROP_FLAG) is not True:
        return None
    lost = alert.output_fields.get(DROP_LOST)
    return lost if type(lost) is int else 0


def schema() -> dict[str, object]:
    """The published JSON Schema of a record (``alerts/schema.json``, shipped as package data)."""
    loaded: dict[str, object] = json.loads(resources.files("alerts").joinpath("schema.json").read_text())
    return loaded


def parse_time_ns(text: str) -> int:
    """RFC 3339 (``2026-08-21T10:15:30.123456789Z``, any offset) to epoch ns; ValueError if not one.

    Python's datetime keeps only microseconds, so the fraction is read here."""
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


def _time_ns(text: str) -> int:
    """Only the one form `encode` writes (`rules.output.iso_time`), so a record re-encodes byte for byte."""
    if _TIME_SHAPE.fullmatch(text):
        try:
            ns = parse_time_ns(text)
            if iso_time(ns) == text:
                return ns
        except (ValueError, OverflowError, OSError):
            pass
    _reject(f"time {_bounded(text, _SHOWN)!r} is not YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ")


def _fields(value: object, where: str = "output_fields") -> dict[str, FieldValue]:
    if not isinstance(value, Mapping):
        _reject(f"{where} must be an object, got {type(value).__name__}")
    fields: dict[str, FieldValue] = {}
    for key, v in value.items():
        if not isinstance(key, str):
            _reject(f"{where} has a key of type {type(key).__name__}")
        if isinstance(v, str):
            v = _text(v)
        elif not (v is None or isinstance(v, bool | int | float)):
            _reject(f"{where}[{_bounded(key, _SHOWN)!r}] is a {type(v).__name__}, not a scalar")
        fields[_text(key)] = v
    return fields


def _evidence(value: object) -> Evidence:
    if not isinstance(value, list):
        _reject(f"evidence must be an array, got {type(value).__name__}")
    if len(value) > EVIDENCE_EVENTS_LIMIT:
        _reject(f"evidence has {len(value)} entries, more than {EVIDENCE_EVENTS_LIMIT}")
    return tuple(_fields(entry, f"evidence[{i}]") for i, entry in enumerate(value))


def _check_drop_fields(fields: dict[str, FieldValue]) -> dict[str, FieldValue]:
    """`fields`, once its `DROP_FIELDS` are all or none, the flag true, the rest non-negative integers
    (as the schema says)."""
    if fields.keys().isdisjoint(_DROP_FIELD_SET):  # every alert passes here: one C-level test
        return fields
    present = [k for k in DROP_FIELDS if k in fields]
    if len(present) != len(DROP_FIELDS):
        _reject(f"output_fields has {len(present)} of the {len(DROP_FIELDS)} peregrine.drops fields")
    if fields[DROP_FLAG] is not True:
        _reject(f"output_fields[{DROP_FLAG!r}] must be true")
    for key in _DROP_COUNTS:
        v = fields[key]
        if type(v) is float and v.is_integer():  # JSON Schema's integer includes 3.0
            v = fields[key] = int(v)
        if type(v) is not int or v < 0:
            _reject(f"output_fields[{key!r}] must be a non-negative integer")
    return fields


def _tags(value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
        _reject("tags must be an array of strings")
    return tuple(_text(t) for t in value)


def _text(value: str) -> str:
    """A JSON ``\\udXXX`` escape can still carry a lone surrogate: make it U+FFFD like invalid UTF-8."""
    if value.isascii():
        return value
    try:
        value.encode()
    except UnicodeEncodeError:
        return _SURROGATE.sub("\ufffd", value)
    return value


class _Invalid(AlertError, ValueError):
    """A hook's refusal, turned into AlertDecodeError("not JSON") by `decode`; a ValueError so the
    one `except ValueError` around `json.loads` catches it with the parser's own errors."""


def _unique_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    doc = dict(pairs)
    if len(doc) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _Invalid(f"duplicate key {_bounded(key, _SHOWN)!r}")
            seen.add(key)
    return doc


def _no_constant(name: str) -> NoReturn:
    raise _Invalid(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Invalid(f"number {_bounded(text, _SHOWN)} is out of range")
    return value


def _names(keys: set[str] | frozenset[str]) -> str:
    shown = sorted(keys)[:5]
    more = f" and {len(keys) - 5} more" if len(keys) > 5 else ""
    return ", ".join(repr(_bounded(k, _SHOWN)) for k in shown) + more


def _bounded(text: str, limit: int) -> str:
    return text if len(text) <= limit else f"{text[:limit]}…"


def _reject(detail: str) -> NoReturn:
    raise AlertDecodeError("not an alert", detail)
