"""The `peregrine.control` record that carries a worker group's interest: the one place that writes
and reads it (issue #18).

Workers write it (`streams.control`), collectors read it (`collectors.control`). It lives beside the
interest it carries rather than in `bus/`, which imports no Peregrine package: both ends import
`rules`, and the record is plain JSON, no Kafka.

Key ``interest/<group>/<replica>`` (UTF-8): the worker group (its app id) and the worker process
that wrote it (`replica_name`: its host, which is its pod's name, and its process id). Each process
writes its own record: replicas of one group may run different rules for a while (a rolling
`helm upgrade`, a SIGHUP that reached some pods, an old pod restarting mid-rollout), and a reader
must keep what any of them needs. Compaction keeps the newest record of each key; a tombstone (no
value) removes it: the worker's own when it stops, or its group's leader's once the process has
left the group (`streams.control_sweep`). Other key prefixes are other kinds of control records,
not this module's (`is_interest_key`).

Value, JSON in UTF-8, schema version 3::

    {"v": 3, "group": "peregrine-worker", "replica": "peregrine-worker-7d9f-x2x4q-1",
     "time_ns": 1787307330123456789,
     "digest": "<sha256 hex of the interest's canonical JSON>",
     "interest": {"execve": {"fields": {"proc.name": {"exact": ["bash"], "prefixes": [], "suffixes": [],
                                                      "contains": []}},
                             "alternatives": [], "fd_table": false},
                  "openat": {"fields": {},
                             "alternatives": [{"fields": {}, "accmodes": [1, 2], "succeeded": true},
                                              {"fields": {"proc.name": {...}}, "accmodes": null,
                                               "succeeded": null}],
                             "fd_table": true}}}

An event type absent from ``interest`` has no rule (a filter keeps none of its events); otherwise an
event must pass every field listed (`FieldInterest`) and, when there are ``alternatives``, one of
them: each of its fields, its open access mode (flags & O_ACCMODE) one of ``accmodes`` unless that
is null, and its outcome (returned >= 0) as ``succeeded`` says unless null (`Alternative`). A type
mapped to no fields and no alternatives keeps all its events. ``fd_table``: some rule of the type
reads fd.types, so its events must carry the process's fd table. The writer sorts the alternatives,
so the digest does not depend on their order. The digest covers the interest only, not the time,
so replicas with the same rules write the same digest and a worker republishes only when it changes.

Versions 1 and 2, from workers before replicas, have no ``replica`` and the key ``interest/<group>``:
one record for all the group's processes, whichever wrote last (so replicas running different
rules overwrote each other's needs), and no ``fd_table``: read as true, the safe side. Version 1,
from workers before alternatives, maps each type straight to its fields (``"openat": {"fd.name":
{...}}``). This build reads both, so collectors can be upgraded first and read the old workers'
records meanwhile (the group's leader removes such a record once no member of the group is a
worker from before replicas). A collector from before a version refuses its records (its reading
is strict), counts them as rejected and keeps the group's last interest it could read, or, with
none, the interest of its own rules files: that is sound only while the group's rules are the ones
it last read, so upgrade the collectors before the workers.

Reading is strict: anything but this shape, within the bounds below, raises `InterestRecordError`
naming the field. Writing never produces what reading refuses: a constraint past a bound is
dropped, which only widens the interest (a field becomes unconstrained, an alternative loses a
constraint, a type loses all its alternatives and is left to its fields). A field name this build
does not know is carried as it is; whoever applies the interest must treat a field it cannot read
as unconstrained.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Final, cast

from rules.errors import InterestRecordError
from rules.interest import (
    MAX_ALTERNATIVES,
    MAX_VALUES,
    Alternative,
    FieldInterest,
    TypeInterest,
    requires_nothing,
)
from rules.interest_classes import ACCMODES

SCHEMA_VERSION: Final = 3
READABLE_VERSIONS: Final = (1, 2, 3)
KEY_PREFIX: Final = "interest/"
# Half the topic's max.message.bytes (the broker's 1 MiB default), so the request around the value
# always fits too. Falco's stable rules make 1,674 bytes (19 types, 3 constrained fields); with the
# incubating, sandbox and Peregrine's files 628 (38 types, every field freed by some rule).
MAX_RECORD_BYTES: Final = 512 * 1024
MAX_TYPES: Final = 1024  # the record table has a few hundred types
MAX_FIELDS: Final = 16  # constrained fields per type, and per alternative
MAX_VALUE_BYTES: Final = 4096  # PATH_MAX: a longer path is never one the kernel hands over
MAX_GROUP_BYTES: Final = 255  # Kafka group ids are free text: bounded here
KINDS: Final = ("exact", "prefixes", "suffixes", "contains")
_TOP: Final = frozenset({"v", "group", "replica", "time_ns", "digest", "interest"})
_REPLICA: Final = re.compile(r"[A-Za-z0-9._-]{1,128}")  # a host name's characters: no "/"
_REPLICA_HOST_CHARS: Final = 100
_TYPE_KEYS: Final = ("alternatives", "fd_table", "fields")
_TYPE_KEYS_V2: Final = ("alternatives", "fields")
_ALTERNATIVE_KEYS: Final = ("accmodes", "fields", "succeeded")
_NAME: Final = re.compile(r"[a-z0-9_][a-z0-9_.]{0,63}")  # event type and field names
_DIGEST: Final = re.compile(r"[0-9a-f]{64}")
_MAX_TIME_NS: Final = 2**63


@dataclass(frozen=True, slots=True)
class InterestRecord:
    group: str
    replica: str | None  # the process that wrote it; None in a version 1 or 2 record (the whole group)
    time_ns: int  # when the worker published it (epoch ns, the worker's clock)
    digest: str
    interest: dict[str, TypeInterest]


@dataclass(frozen=True, slots=True)
class Encoded:
    key: bytes
    value: bytes
    digest: str


def replica_name(host: str, pid: int) -> str:
    """The replica a worker process writes as: its host (in Kubernetes, its pod's name) and its
    process id (1 in a container, so a restarted container takes its own record over; two workers
    on one host write two). Characters a key cannot carry become ``_``."""
    shown = re.sub(r"[^A-Za-z0-9._-]", "_", host)[:_REPLICA_HOST_CHARS] or "host"
    return f"{shown}-{pid}"


def key_of(group: str, replica: str) -> bytes:
    _check_group(group, "group")
    _check_replica(replica, "replica")
    return f"{KEY_PREFIX}{group}/{replica}".encode()


def _group_key(group: str) -> bytes:
    """The key of a version 1 or 2 record: one per group."""
    return (KEY_PREFIX + group).encode()


def is_interest_key(key: bytes) -> bool:
    """Whether `key` is an interest record's (a tombstone's too); other kinds are not this module's."""
    return key.startswith(KEY_PREFIX.encode())


def encode(group: str, replica: str, interest: Mapping[str, TypeInterest], time_ns: int) -> Encoded:
    """The record of `group`'s interest as `replica` writes it, fitted to the bounds (`fit`);
    InterestRecordError when it cannot be (a bad group, replica or type name, more than MAX_TYPES
    types)."""
    key = key_of(group, replica)
    if not 0 <= time_ns < _MAX_TIME_NS:
        raise InterestRecordError("time_ns", f"{time_ns} is not an epoch time in nanoseconds")
    fitted = fit(interest)
    body = _body(fitted)
    doc = {"v": SCHEMA_VERSION, "group": group, "replica": replica, "time_ns": time_ns,
           "digest": _digest(body), "interest": body}
    value = _canonical(doc)
    while len(value) > MAX_RECORD_BYTES:  # only widening is allowed: drop the largest constraint
        fitted = _without_largest(fitted)
        body = _body(fitted)
        doc.update(digest=_digest(body), interest=body)
        value = _canonical(doc)
    return Encoded(key, value, str(doc["digest"]))


def fit(interest: Mapping[str, TypeInterest]) -> dict[str, TypeInterest]:
    """`interest` within the bounds, by dropping the constraints that exceed them (a field with too
    many or too long values, fields past MAX_FIELDS, a second constraint on one field, access modes
    no open has; every alternative past MAX_ALTERNATIVES, or when one is left requiring nothing):
    every event `interest` admits, the result admits."""
    if len(interest) > MAX_TYPES:
        raise InterestRecordError("interest", f"{len(interest)} event types, more than {MAX_TYPES}")
    out: dict[str, TypeInterest] = {}
    for name, wanted in interest.items():
        _check_name(name, "interest", "event type")
        path = f"interest/{name}"
        alternatives = tuple(_fit_alternative(alt, f"{path}/alternatives") for alt in wanted.alternatives)
        if len(alternatives) > MAX_ALTERNATIVES or any(requires_nothing(alt) for alt in alternatives):
            alternatives = ()
        fields = _fit_fields(wanted.fields, f"{path}/fields")
        out[name] = TypeInterest(name, fields, alternatives, wanted.fd_table)
    return out


def _fit_fields(fields: Iterable[FieldInterest], path: str) -> tuple[FieldInterest, ...]:
    kept: dict[str, FieldInterest] = {}
    for field in fields:
        _check_name(field.field, path, "field")
        if field.field not in kept and len(kept) < MAX_FIELDS and _fits(field):
            kept[field.field] = field
    return tuple(kept.values())


def _fit_alternative(alt: Alternative, path: str) -> Alternative:
    modes = alt.accmodes if alt.accmodes is None or alt.accmodes <= ACCMODES else None
    return Alternative(_fit_fields(alt.fields, path), modes, alt.succeeded)


def _fits(field: FieldInterest) -> bool:
    values = [v for kind in KINDS for v in getattr(field, kind)]
    return len(values) <= MAX_VALUES and all(_short(v) for v in values)


def _short(value: str) -> bool:
    size = _utf8_len(value)
    return size is not None and size <= MAX_VALUE_BYTES


def _utf8_len(value: str) -> int | None:
    try:
        return len(value.encode("utf-8"))
    except UnicodeEncodeError:  # a lone surrogate: no kernel string is one
        return None


def _without_largest(interest: dict[str, TypeInterest]) -> dict[str, TypeInterest]:
    """`interest` without its largest constraint: a type's field, or all of a type's alternatives
    (the type is then left to its fields)."""
    sizes: list[tuple[int, str, str]] = [(len(_canonical(_field_body(f))), name, f.field)
                                         for name, t in interest.items() for f in t.fields]  # fmt: skip
    sizes += [(len(_canonical(_alternatives_body(t))), name, "")
              for name, t in interest.items() if t.alternatives]  # fmt: skip
    if not sizes:
        raise InterestRecordError("interest", f"larger than {MAX_RECORD_BYTES} bytes with no constraint left")
    _, name, field = max(sizes)
    wanted = interest[name]
    if not field:  # the alternatives
        return {**interest, name: replace(wanted, alternatives=())}
    fields = tuple(f for f in wanted.fields if f.field != field)
    return {**interest, name: replace(wanted, fields=fields)}


def _field_body(field: FieldInterest) -> dict[str, list[str]]:
    return {kind: sorted(getattr(field, kind)) for kind in KINDS}


def _fields_body(fields: Iterable[FieldInterest]) -> dict[str, dict[str, list[str]]]:
    return {f.field: _field_body(f) for f in fields}


def _alternatives_body(wanted: TypeInterest) -> list[dict[str, object]]:
    """The alternatives in the order of their canonical JSON: a set, whatever order they came in."""
    bodies: list[dict[str, object]] = [
        {"fields": _fields_body(alt.fields), "succeeded": alt.succeeded,
         "accmodes": None if alt.accmodes is None else sorted(alt.accmodes)}
        for alt in wanted.alternatives
    ]  # fmt: skip
    return sorted(bodies, key=_canonical)


def _body(interest: Mapping[str, TypeInterest], version: int = SCHEMA_VERSION) -> dict[str, object]:
    if version == 1:
        return {name: _fields_body(t.fields) for name, t in interest.items()}
    bodies: dict[str, dict[str, object]] = {
        name: {"fields": _fields_body(t.fields), "alternatives": _alternatives_body(t)}
        for name, t in interest.items()
    }
    if version >= 3:
        for name, t in interest.items():
            bodies[name]["fd_table"] = t.fd_table
    return dict(bodies)


def _canonical(doc: object) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _digest(body: object) -> str:
    return hashlib.sha256(_canonical(body)).hexdigest()


def decode(key: bytes, value: bytes) -> InterestRecord:
    """The record `key` and `value` hold, of either readable version; InterestRecordError naming
    the field otherwise."""
    if not is_interest_key(key):
        raise InterestRecordError("key", f"not {KEY_PREFIX}<group>/<replica>")
    if len(value) > MAX_RECORD_BYTES:
        raise InterestRecordError("value", f"{len(value)} bytes, more than {MAX_RECORD_BYTES}")
    try:
        doc = json.loads(value.decode("utf-8"))
    except UnicodeDecodeError:
        raise InterestRecordError("value", "not UTF-8") from None
    except (ValueError, RecursionError) as exc:  # RecursionError: nesting deeper than the parser's stack
        raise InterestRecordError("value", f"not JSON ({type(exc).__name__})") from None
    if not isinstance(doc, dict):
        raise InterestRecordError("value", f"a JSON {_kind(doc)}, not an object")
    unknown = sorted(set(doc) - _TOP)
    if unknown:
        raise InterestRecordError(_shown(unknown[0]), "not a key of this schema")
    version = _int(doc, "v")
    if version not in READABLE_VERSIONS:
        raise InterestRecordError("v", f"schema version {version}; this build reads {READABLE_VERSIONS}")
    group = _str(doc, "group")
    _check_group(group, "group")
    replica: str | None = None
    if version >= 3:
        replica = _str(doc, "replica")
        _check_replica(replica, "replica")
    elif "replica" in doc:
        raise InterestRecordError("replica", f"not a key of schema version {version}")
    if key != (_group_key(group) if replica is None else key_of(group, replica)):
        # name the part of the value the key disagrees with
        part = "replica" if replica is not None and key.startswith(key_of(group, "x")[:-1]) else "group"
        raise InterestRecordError(part, "not the one the record's key names")
    time_ns = _int(doc, "time_ns")
    if not 0 <= time_ns < _MAX_TIME_NS:
        raise InterestRecordError("time_ns", "not an epoch time in nanoseconds")
    declared = _str(doc, "digest")
    if not _DIGEST.fullmatch(declared):
        raise InterestRecordError("digest", "not 64 lowercase hexadecimal digits")
    interest = _interest(_get(doc, "interest"), version)
    if _digest(_body(interest, version)) != declared:
        raise InterestRecordError("digest", "does not match the interest")
    return InterestRecord(group, replica, time_ns, declared, interest)


def _interest(raw: object, version: int) -> dict[str, TypeInterest]:
    types = _object(raw, "interest")
    if len(types) > MAX_TYPES:
        raise InterestRecordError("interest", f"{len(types)} event types, more than {MAX_TYPES}")
    out: dict[str, TypeInterest] = {}
    for name, spec in types.items():
        _check_name(name, "interest", "event type")
        path = f"interest/{name}"
        # before version 3 a record did not say whether the rules read fd.types: as if they did
        if version == 1:
            out[name] = TypeInterest(name, _fields(spec, path), fd_table=True)
            continue
        parts = _keys(spec, path, _TYPE_KEYS if version >= 3 else _TYPE_KEYS_V2)
        alternatives = parts["alternatives"]
        where = f"{path}/alternatives"
        if not isinstance(alternatives, list):
            raise InterestRecordError(where, f"a JSON {_kind(alternatives)}, not an array")
        if len(alternatives) > MAX_ALTERNATIVES:
            problem = f"{len(alternatives)} alternatives, more than {MAX_ALTERNATIVES}"
            raise InterestRecordError(where, problem)
        parsed = tuple(_alternative(alt, f"{where}/{i}") for i, alt in enumerate(alternatives))
        fd_table = parts.get("fd_table", True)
        if not isinstance(fd_table, bool):
            raise InterestRecordError(f"{path}/fd_table", f"a JSON {_kind(fd_table)}, not a boolean")
        out[name] = TypeInterest(name, _fields(parts["fields"], f"{path}/fields"), parsed, fd_table)
    return out


def _alternative(raw: object, path: str) -> Alternative:
    parts = _keys(raw, path, _ALTERNATIVE_KEYS)
    modes, succeeded = parts["accmodes"], parts["succeeded"]
    if modes is not None:
        where = f"{path}/accmodes"
        if not isinstance(modes, list):
            raise InterestRecordError(where, f"a JSON {_kind(modes)}, not an array or null")
        for i, mode in enumerate(modes):
            if isinstance(mode, bool) or not isinstance(mode, int) or mode not in ACCMODES:
                raise InterestRecordError(f"{where}/{i}", "not an access mode, 0 to 3")
        for i in range(1, len(modes)):
            if modes[i] <= modes[i - 1]:
                raise InterestRecordError(f"{where}/{i}", "not above the access mode before it")
    if succeeded is not None and not isinstance(succeeded, bool):
        raise InterestRecordError(f"{path}/succeeded", f"a JSON {_kind(succeeded)}, not a boolean or null")
    accmodes = None if modes is None else frozenset(cast(list[int], modes))
    return Alternative(_fields(parts["fields"], f"{path}/fields"), accmodes, succeeded)


def _fields(raw: object, path: str) -> tuple[FieldInterest, ...]:
    fields = _object(raw, path)
    if len(fields) > MAX_FIELDS:
        raise InterestRecordError(path, f"{len(fields)} fields, more than {MAX_FIELDS}")
    parsed = []
    for field, spec in fields.items():
        _check_name(field, path, "field")
        parsed.append(_field(field, spec, f"{path}/{field}"))
    return tuple(parsed)


def _keys(raw: object, path: str, keys: tuple[str, ...]) -> dict[str, Any]:
    """`raw` as an object with exactly these keys."""
    spec = _object(raw, path)
    if set(spec) != set(keys):
        odd = sorted(set(spec) ^ set(keys))[0]
        problem = "missing" if odd in keys else "not a key of this schema"
        raise InterestRecordError(f"{path}/{_shown(odd)}", problem)
    return spec


def _field(field: str, raw: object, path: str) -> FieldInterest:
    spec = _keys(raw, path, KINDS)
    kinds: dict[str, frozenset[str]] = {}
    total = 0
    for kind in KINDS:
        values = spec[kind]
        where = f"{path}/{kind}"
        if not isinstance(values, list):
            raise InterestRecordError(where, f"a JSON {_kind(values)}, not an array")
        total += len(values)
        if total > MAX_VALUES:
            raise InterestRecordError(where, f"more than {MAX_VALUES} values in the field")
        for i, v in enumerate(values):
            if not isinstance(v, str):
                raise InterestRecordError(f"{where}/{i}", f"a JSON {_kind(v)}, not a string")
            if not _short(v):
                problem = f"not text of {MAX_VALUE_BYTES} UTF-8 bytes or fewer"
                raise InterestRecordError(f"{where}/{i}", problem)
        kinds[kind] = frozenset(values)
    return FieldInterest(field, kinds["exact"], kinds["prefixes"], kinds["suffixes"], kinds["contains"])


def _check_group(group: str, where: str) -> None:
    size = _utf8_len(group)
    if not group or size is None or size > MAX_GROUP_BYTES or not group.isprintable():
        raise InterestRecordError(where, f"the group must be 1 to {MAX_GROUP_BYTES} bytes of printable text")


def _check_replica(replica: str, where: str) -> None:
    if not _REPLICA.fullmatch(replica):
        raise InterestRecordError(where, "the replica must be 1 to 128 of A-Z a-z 0-9 . _ -")


def _check_name(name: str, where: str, what: str) -> None:
    if not _NAME.fullmatch(name):
        raise InterestRecordError(f"{where}/{_shown(name)}", f"not a valid {what} name")


def _get(doc: dict[str, Any], key: str) -> object:
    if key not in doc:
        raise InterestRecordError(key, "missing")
    return doc[key]


def _int(doc: dict[str, Any], key: str) -> int:
    value = _get(doc, key)
    if isinstance(value, bool) or not isinstance(value, int):  # JSON true is a Python int
        raise InterestRecordError(key, f"a JSON {_kind(value)}, not an integer")
    return value


def _str(doc: dict[str, Any], key: str) -> str:
    value = _get(doc, key)
    if not isinstance(value, str):
        raise InterestRecordError(key, f"a JSON {_kind(value)}, not a string")
    return value


def _object(raw: object, path: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise InterestRecordError(path, f"a JSON {_kind(raw)}, not an object")
    return raw


def _kind(value: object) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def _shown(name: str) -> str:
    """A name from the record, for an error message: bounded, one line."""
    return repr(name[:40]) if len(name) > 40 or not name.isprintable() else name
