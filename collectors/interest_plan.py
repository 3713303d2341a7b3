"""What the probe's interest maps hold for a ruleset's interest (pure: no bcc, no kernel).

`plan` turns `rules.interest` (per event type, the values of fd.name and proc.name some rule
needs) into what probe.bpf.c tests: a mode per event type (probe.h PG_IM_*) and the keys of its
LPM trie, exact values (their NUL included) and prefixes. Only what the kernel can test soundly
becomes a check; everything else leaves the field unconstrained, which only keeps more:

* fd.name, for the open family only, whose record's fd.name is the captured path string (made
  absolute against the cwd, normalised). Every other type's fd.name is a tuple, a walked path or
  absent, so it is never path-checked. A field needing a suffix or a substring is not checked
  (an LPM trie tests prefixes); values too long for a key are left out, because the probe keeps
  every path too long for a key unchecked.
* proc.name: the process table's name (a comm: at most 15 bytes), which the probe holds per
  process in pg_names. A value longer than 15 bytes checks its first 15.
* A value with U+FFFD (what the collector decodes undecodable bytes to) is not checked: the
  kernel compares the bytes.

Types the process table needs (`NEVER_FILTERED`) get no check; the probe keeps their state
records even when no rule names them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Final, NamedTuple

from collectors.header import (
    PG_COMM_LEN,
    PG_FIELD_COMM,
    PG_FIELD_PATH,
    PG_IM_COMM,
    PG_IM_KEEP,
    PG_IM_PATH,
    PG_LPM_DATA,
    PG_LPM_HEAD,
    PG_LPM_STR,
)
from rules.interest import FieldInterest, TypeInterest
from rules.record import EVENT_TYPE_IDS

# the types whose record's fd.name is the path the probe captures as its first item
PATH_TYPES: Final = frozenset({"open", "openat", "openat2", "creat"})
# exec, exit and the working directory feed the process table; the clone family is libs' state too
NEVER_FILTERED: Final = frozenset({"execve", "execveat", "procexit", "chdir", "fchdir", "clone", "clone3",
                                   "fork", "vfork"})  # fmt: skip
# keys at most: half the trie (probe.bpf.c PG_LPM_ENTRIES), since a switch holds two interests at once
MAX_KEYS: Final = 65536 // 2
_COMM_MAX: Final = PG_COMM_LEN - 1
_REPLACEMENT: Final = "\ufffd"


class Entry(NamedTuple):
    """One key of the probe's LPM trie: `value` must be the whole string (`exact`) or a prefix."""

    type_id: int
    field: int  # PG_FIELD_*
    value: bytes
    exact: bool

    def key(self) -> bytes:
        """The trie key as probe.bpf.c's struct pg_lpm_key lays it out."""
        body = self.value + b"\0" if self.exact else self.value
        data = bytes((self.type_id >> 8, self.type_id & 0xFF, self.field)).ljust(PG_LPM_HEAD, b"\0") + body
        prefixlen = len(data) * 8
        return prefixlen.to_bytes(4, "little") + data.ljust(PG_LPM_DATA, b"\0")


@dataclass(frozen=True, slots=True)
class KernelInterest:
    """Per event type to keep, its PG_IM_* mode, and the trie entries its checks need."""

    modes: Mapping[str, int]
    entries: frozenset[Entry]


def plan(interest: Mapping[str, TypeInterest] | None, whole: Iterable[str] = ()) -> KernelInterest:
    """The maps for `interest`; None keeps every event of the types in `whole` unchecked."""
    if interest is None:
        return KernelInterest({name: PG_IM_KEEP for name in whole}, frozenset())
    modes: dict[str, int] = {}
    checks: dict[tuple[str, int], list[Entry]] = {}
    for name, wanted in interest.items():
        modes[name] = PG_IM_KEEP
        if name in NEVER_FILTERED:
            continue
        for field in wanted.fields:
            found = _entries(EVENT_TYPE_IDS[name], name, field)
            if found is not None:
                checks[name, PG_IM_PATH if field.field == "fd.name" else PG_IM_COMM] = found
    # past the bound, the largest checks go first: each left out only keeps more events
    while sum(map(len, checks.values())) > MAX_KEYS:
        del checks[max(checks, key=lambda c: len(checks[c]))]
    for name, bit in checks:
        modes[name] |= bit
    return KernelInterest(modes, frozenset(e for found in checks.values() for e in found))


def _entries(type_id: int, type_name: str, field: FieldInterest) -> list[Entry] | None:
    """The trie entries of one field's check, or None when the kernel cannot check it."""
    if field.suffixes or field.contains:
        return None
    if field.field == "fd.name" and type_name in PATH_TYPES:
        return _values(type_id, PG_FIELD_PATH, field, _fit_path)
    if field.field == "proc.name":
        return _values(type_id, PG_FIELD_COMM, field, _fit_comm)
    return None


def _values(
    type_id: int, field_id: int, field: FieldInterest, fit: Callable[[bytes, bool], list[tuple[bytes, bool]]]
) -> list[Entry] | None:
    out = []
    for values, exact in ((field.exact, True), (field.prefixes, False)):
        for value in values:
            raw = value.encode()
            if _REPLACEMENT in value or (not exact and not raw):
                return None
            if b"\0" not in raw:  # a value with a NUL never equals a C string
                out += [Entry(type_id, field_id, v, e) for v, e in fit(raw, exact)]
    return out


def _fit_path(raw: bytes, exact: bool) -> list[tuple[bytes, bool]]:
    """A path as long as a value a key cannot hold (with the path's NUL) is kept unchecked by the
    probe, so such a value needs no entry."""
    return [(raw, exact)] if len(raw) + 1 <= PG_LPM_STR else []


def _fit_comm(raw: bytes, exact: bool) -> list[tuple[bytes, bool]]:
    """A comm holds the first 15 bytes of a longer name."""
    return [(raw[:_COMM_MAX], True)] if len(raw) > _COMM_MAX else [(raw, exact)]


def union_mode(a: int, b: int) -> int:
    """The mode that keeps what either `a` or `b` keeps (their entries both in the trie)."""
    if not a & PG_IM_KEEP:
        return b
    if not b & PG_IM_KEEP:
        return a
    return PG_IM_KEEP | (a & b)
