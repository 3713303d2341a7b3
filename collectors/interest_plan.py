"""What the probe's interest maps hold for a ruleset's interest (pure: no bcc, no kernel).

`plan` turns `rules.interest` (per event type, what one rule or another needs of fd.name,
proc.name, the open's access mode and the call's result) into what probe.bpf.c tests. Each of a
type's alternatives gets a bit of a u64; the type's record (`TypePlan`) holds its PG_IM_* mode,
which bits each check cannot stop (`path_free`, `comm_free`) and the bits each access mode and
each result allows; each LPM trie entry holds the bits of the alternatives it lets through. The
probe ANDs what every check lets through and keeps the event while some bit is left. An LPM
lookup returns only the longest matching entry, so each entry's mask also holds the masks of
every entry that is a prefix of it (exact values keep their NUL, so they are prefixes of nothing
but themselves).

A type without alternatives is one alternative, its common `fields`; an alternative is also given
the common fields it does not constrain itself (it can match only when those pass too). Only
what the kernel can test soundly becomes a check; anything else leaves the alternative free in
that check, which only keeps more:

* fd.name, for the open family only, whose record's fd.name is the captured path string (made
  absolute against the cwd, normalised). Every other type's fd.name is a tuple, a walked path or
  absent, so it is never path-checked. Exact values and prefixes are looked up in the path's
  trie entries, suffixes (at most PG_SUFFIX_MAX bytes) in the reversed path's, and substrings
  (4 bytes or more) screened: one 4-byte gram of each sets a bit of the type's bitmap (`grams`),
  a path with any gram whose bit is set passes the alternatives needing a substring. A path
  holding the substring holds its gram, so the screen never drops one; a collision only keeps
  more. When every substring of the type has 5 bytes or more, each sets the bits of two
  consecutive grams instead (PG_IM_GRAM_PAIRS): wherever the substring sits in a path, one of
  the two starts at an even position, so the probe tests half the positions. Values too long for
  a key are left out, because the probe keeps every path too long for a key unchecked.
* proc.name: the process table's name (a comm: at most 15 bytes), which the probe holds per
  process in pg_names. A value longer than 15 bytes checks its first 15. Suffixes and substrings
  are not tested.
* the access mode: open's and openat's flags, in the registers; every other type leaves it free
  (openat2's flags are in user memory, read later; creat's record has no flags).
* A value with U+FFFD (what the collector decodes undecodable bytes to) is not checked: the
  kernel compares the bytes.

Types the process table needs (`NEVER_FILTERED`) get no check; the probe keeps their state
records even when no rule names them.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Final, NamedTuple

from collectors.header import (
    PG_COMM_LEN,
    PG_FIELD_COMM,
    PG_FIELD_PATH,
    PG_FIELD_RPATH,
    PG_GRAM_BITS,
    PG_GRAM_MUL,
    PG_GRAM_SHIFT,
    PG_IM_COMM,
    PG_IM_FDTABLE,
    PG_IM_GRAM_PAIRS,
    PG_IM_KEEP,
    PG_IM_PATH,
    PG_LPM_DATA,
    PG_LPM_HEAD,
    PG_LPM_STR,
    PG_SCREEN_SHIFT,
    PG_SCREEN_SLOTS,
    PG_SUFFIX_MAX,
)
from rules.interest import MAX_ALTERNATIVES, Alternative, FieldInterest, TypeInterest
from rules.record import EVENT_TYPE_IDS

# the types whose record's fd.name is the path the probe captures as its first item
PATH_TYPES: Final = frozenset({"open", "openat", "openat2", "creat"})
# interest_grams' slots in a generation, in order (probe.bpf.c PG_PATH_SLOT)
PATH_SLOTS: Final = ("open", "openat", "openat2", "creat")
# the types whose flags the probe has in the registers at sys_exit (probe.bpf.c PG_ACCMODE)
ACCMODE_TYPES: Final = frozenset({"open", "openat"})
# exec, exit and the working directory feed the process table; the clone family is libs' state too
NEVER_FILTERED: Final = frozenset({"execve", "execveat", "procexit", "chdir", "fchdir", "clone", "clone3",
                                   "fork", "vfork"})  # fmt: skip
# keys at most: half the trie (probe.bpf.c PG_LPM_ENTRIES), since a switch holds two interests at once
MAX_KEYS: Final = 65536 // 2
_COMM_MAX: Final = PG_COMM_LEN - 1
_REPLACEMENT: Final = "\ufffd"
_RECORD: Final = struct.Struct("<II4Q4Q2Q")  # probe.bpf.c struct pg_itype
_GRAM: Final = 4
_LOWER: Final = frozenset(b"abcdefghijklmnopqrstuvwxyz")


class Entry(NamedTuple):
    """One key of the probe's LPM trie: `value` must be the whole string (`exact`) or a prefix (of
    the reversed path, for PG_FIELD_RPATH)."""

    type_id: int
    field: int  # PG_FIELD_*
    value: bytes
    exact: bool

    def body(self) -> bytes:
        return self.value + b"\0" if self.exact else self.value

    def key(self, gen: int) -> bytes:
        """The trie key as probe.bpf.c's struct pg_lpm_key lays it out, in generation `gen`."""
        head = bytes((self.type_id >> 8, self.type_id & 0xFF, self.field, gen)).ljust(PG_LPM_HEAD, b"\0")
        data = head + self.body()
        return (len(data) * 8).to_bytes(4, "little") + data.ljust(PG_LPM_DATA, b"\0")


@dataclass(frozen=True, slots=True)
class TypePlan:
    """One type's record: its PG_IM_* mode and, per check, the alternatives' bits it lets through
    whatever the event's value (`acc` by flags & O_ACCMODE, `res` failed then succeeded)."""

    mode: int
    path_free: int
    comm_free: int
    suffixed: int  # the alternatives with suffixes: the reversed path's lookup lets only these through
    grams: int  # the alternatives a path whose gram hits the screen lets through
    acc: tuple[int, int, int, int]
    res: tuple[int, int]

    def record(self, gen: int) -> bytes:
        """The record as probe.bpf.c's struct pg_itype lays it out, in generation `gen`."""
        masks = (self.path_free, self.comm_free, self.suffixed, self.grams, *self.acc, *self.res)
        return _RECORD.pack(self.mode, gen, *masks)


KEEP: Final = TypePlan(PG_IM_KEEP, 1, 1, 0, 0, (1, 1, 1, 1), (1, 1))
DROP: Final = TypePlan(0, 0, 0, 0, 0, (0, 0, 0, 0), (0, 0))


@dataclass(frozen=True, slots=True)
class KernelInterest:
    """Per event type to keep, its record; the trie entries with their masks; per open-family
    type, the bits of its gram screen."""

    types: Mapping[str, TypePlan]
    entries: Mapping[Entry, int]
    grams: Mapping[str, frozenset[int]]

    def bitmap(self, type_name: str) -> bytes:
        """The type's interest_grams bitmap (PG_GRAM_BITS bits, little-endian words)."""
        out = bytearray(PG_GRAM_BITS // 8)
        for h in self.grams.get(type_name, ()):
            out[h // 8] |= 1 << (h % 8)
        return bytes(out)

    def screen(self, type_name: str) -> bytes:
        """The type's interest_screens record (probe.bpf.c struct pg_screen): per first and last
        4 bytes of a path, the alternatives some trie entry of the type could let through for it.
        A trie entry matching a path shares its first 4 bytes (its last 4, for a suffix), so the
        probe skips a lookup whose screen slot holds none of the alternatives still possible; an
        entry shorter than 4 bytes goes into the short mask, which every path must look up for."""
        short = {PG_FIELD_PATH: 0, PG_FIELD_RPATH: 0}
        slots = {PG_FIELD_PATH: [0] * PG_SCREEN_SLOTS, PG_FIELD_RPATH: [0] * PG_SCREEN_SLOTS}
        type_id = EVENT_TYPE_IDS[type_name]
        for entry, mask in self.entries.items():
            if entry.type_id != type_id or entry.field not in short:
                continue
            body = entry.body()
            if len(body) < _GRAM:
                short[entry.field] |= mask
            else:  # a reversed suffix's first 4 bytes are the path's last 4, reversed
                gram = body[:_GRAM] if entry.field == PG_FIELD_PATH else body[_GRAM - 1 :: -1]
                slots[entry.field][_gram_hash(gram, PG_SCREEN_SHIFT)] |= mask
        words = (short[PG_FIELD_PATH], short[PG_FIELD_RPATH], *slots[PG_FIELD_PATH], *slots[PG_FIELD_RPATH])
        return struct.pack(f"<{len(words)}Q", *words)


def plan(
    interest: Mapping[str, TypeInterest] | None, whole: Iterable[str] = (), fd_tables: bool = False
) -> KernelInterest:
    """The maps for `interest`; None keeps every event of the types in `whole` unchecked, with the
    fd table when `fd_tables`. A type some rule reads fd.types on carries the fd table."""
    if interest is None:
        keep = _with_fd_table(KEEP) if fd_tables else KEEP
        return KernelInterest(dict.fromkeys(whole, keep), {}, {})
    types: dict[str, TypePlan] = {}
    checks: dict[tuple[str, int], dict[Entry, int]] = {}  # (type, the check's mode bit) -> own masks
    grams: dict[str, frozenset[int]] = {}
    for name, wanted in interest.items():
        if name in NEVER_FILTERED:
            record = KEEP
        else:
            record, path, comm, grams[name] = _type_plan(name, _alternatives(wanted))
            checks[name, PG_IM_PATH], checks[name, PG_IM_COMM] = path, comm
        types[name] = _with_fd_table(record) if wanted.fd_table else record
    # past the bound, the largest checks go first: each left out only keeps more events
    while sum(map(len, checks.values())) > MAX_KEYS:
        name, bit = max(checks, key=lambda c: len(checks[c]))
        del checks[name, bit]
        types[name] = _unchecked(types[name], bit)
    entries: dict[Entry, int] = {}
    for own in checks.values():
        entries.update(_closed(own))
    return KernelInterest(types, entries, {n: g for n, g in grams.items() if types[n].grams})


def _with_fd_table(record: TypePlan) -> TypePlan:
    return replace(record, mode=record.mode | PG_IM_FDTABLE)


def _alternatives(wanted: TypeInterest) -> Sequence[Alternative]:
    """The alternatives the probe numbers: the common fields alone when there are none (or more
    than a u64 has bits), else each with the common fields it leaves unconstrained."""
    if not wanted.alternatives or len(wanted.alternatives) > MAX_ALTERNATIVES:
        return (Alternative(wanted.fields),)
    out = []
    for alt in wanted.alternatives:
        own = {f.field for f in alt.fields}
        out.append(replace(alt, fields=alt.fields + tuple(f for f in wanted.fields if f.field not in own)))
    return out


def _type_plan(
    name: str, alternatives: Sequence[Alternative]
) -> tuple[TypePlan, dict[Entry, int], dict[Entry, int], frozenset[int]]:
    """The type's record, its path and comm entries (each with the bits of its own alternatives)
    and its gram screen's bits."""
    type_id = EVENT_TYPE_IDS[name]
    free = {"fd.name": 0, "proc.name": 0}
    own: dict[str, dict[Entry, int]] = {"fd.name": {}, "proc.name": {}}
    suffixed, screened, needles = 0, 0, set[bytes]()
    acc, res = [0, 0, 0, 0], [0, 0]
    for i, alt in enumerate(alternatives):
        bit = 1 << i
        for field_name, found in own.items():
            # a field given twice must pass both: checking the first alone only keeps more
            field = next((f for f in alt.fields if f.field == field_name), None)
            check = None if field is None else _check(type_id, name, field)
            if check is None:
                free[field_name] |= bit
                continue
            for entry in check[0]:
                found[entry] = found.get(entry, 0) | bit
                if entry.field == PG_FIELD_RPATH:
                    suffixed |= bit
            if check[1]:
                screened |= bit
                needles |= check[1]
        for mode in range(4):
            if alt.accmodes is None or name not in ACCMODE_TYPES or mode in alt.accmodes:
                acc[mode] |= bit
        for ok in (False, True):
            if alt.succeeded is None or alt.succeeded == ok:
                res[ok] |= bit
    every = (1 << len(alternatives)) - 1
    mode = PG_IM_KEEP
    if free["fd.name"] != every:
        mode |= PG_IM_PATH
    if free["proc.name"] != every:
        mode |= PG_IM_COMM
    pairs = bool(needles) and min(map(len, needles)) > _GRAM
    if pairs:
        mode |= PG_IM_GRAM_PAIRS
    record = TypePlan(
        mode,
        free["fd.name"],
        free["proc.name"],
        suffixed,
        screened,
        (acc[0], acc[1], acc[2], acc[3]),
        (res[0], res[1]),
    )
    return record, own["fd.name"], own["proc.name"], _gram_bits(needles, pairs)


def _unchecked(record: TypePlan, bit: int) -> TypePlan:
    """`record` without the check `bit` (PG_IM_PATH or PG_IM_COMM): every alternative passes it."""
    every = (1 << 64) - 1
    if bit == PG_IM_PATH:
        mode = record.mode & ~(PG_IM_PATH | PG_IM_GRAM_PAIRS)
        return replace(record, mode=mode, path_free=every, suffixed=0, grams=0)
    return replace(record, mode=record.mode & ~PG_IM_COMM, comm_free=every)


def _closed(own: Mapping[Entry, int]) -> dict[Entry, int]:
    """Each entry's mask with the masks of the entries (same type and field) that are a prefix of it."""
    by_body = {(e.type_id, e.field, e.body()): mask for e, mask in own.items()}
    out = {}
    for entry, mask in own.items():
        body = entry.body()
        for n in range(len(body)):
            mask |= by_body.get((entry.type_id, entry.field, body[:n]), 0)
        out[entry] = mask
    return out


def _check(type_id: int, type_name: str, field: FieldInterest) -> tuple[list[Entry], frozenset[bytes]] | None:
    """One field's check: its trie entries and the substrings its gram screen needs, or None when
    the kernel cannot check it."""
    if field.field == "fd.name" and type_name in PATH_TYPES:
        found = _values(type_id, PG_FIELD_PATH, field, _fit_path)
        suffixes = _suffixes(type_id, field.suffixes)
        needles = _needles(field.contains)
        if found is None or suffixes is None or needles is None:
            return None
        return found + suffixes, needles
    if field.field == "proc.name" and not field.suffixes and not field.contains:
        found = _values(type_id, PG_FIELD_COMM, field, _fit_comm)
        return None if found is None else (found, frozenset())
    return None


def _needles(substrings: Iterable[str]) -> frozenset[bytes] | None:
    """The substrings' bytes the gram screen needs; None when one is shorter than a gram or has
    U+FFFD (a substring with a NUL is in no C string: it needs none)."""
    out = set()
    for value in substrings:
        raw = value.encode()
        if len(raw) < _GRAM or _REPLACEMENT in value:
            return None
        if b"\0" not in raw:
            out.add(raw)
    return frozenset(out)


def _gram_bits(needles: Iterable[bytes], pairs: bool) -> frozenset[int]:
    """The screen's bits: per substring its rarest gram, or its rarest two consecutive (`pairs`)."""
    out = set()
    for raw in needles:
        grams = [raw[i : i + _GRAM] for i in range(len(raw) - _GRAM + 1)]
        if pairs:
            k = max(range(len(grams) - 1), key=lambda i: _rarity(grams[i]) + _rarity(grams[i + 1]))
            out |= {_gram_hash(grams[k], PG_GRAM_SHIFT), _gram_hash(grams[k + 1], PG_GRAM_SHIFT)}
        else:
            out.add(_gram_hash(max(grams, key=_rarity), PG_GRAM_SHIFT))
    return frozenset(out)


def _rarity(gram: bytes) -> int:
    """Its bytes that are not lowercase letters: paths are mostly lowercase, so a gram with more
    of them hits fewer paths that lack the substring."""
    return sum(b not in _LOWER for b in gram)


def _gram_hash(gram: bytes, shift: int) -> int:
    """The top `shift` bits of a 4-byte gram's multiplicative hash, as the probe computes them: the
    gram screen's bit (PG_GRAM_SHIFT, pg_grams_hit), the screens' slot (PG_SCREEN_SHIFT,
    pg_screen_slot)."""
    return ((int.from_bytes(gram, "little") * PG_GRAM_MUL) & 0xFFFFFFFF) >> (32 - shift)


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


def _suffixes(type_id: int, suffixes: Iterable[str]) -> list[Entry] | None:
    """Reversed-path entries; None when one is empty, too long for the probe's reversed key or
    has U+FFFD."""
    out = []
    for suffix in suffixes:
        raw = suffix.encode()
        if not raw or len(raw) > PG_SUFFIX_MAX or _REPLACEMENT in suffix:
            return None
        if b"\0" not in raw:
            out.append(Entry(type_id, PG_FIELD_RPATH, raw[::-1], False))
    return out


def _fit_path(raw: bytes, exact: bool) -> list[tuple[bytes, bool]]:
    """A path as long as a value a key cannot hold (with the path's NUL) is kept unchecked by the
    probe, so such a value needs no entry."""
    return [(raw, exact)] if len(raw) + 1 <= PG_LPM_STR else []


def _fit_comm(raw: bytes, exact: bool) -> list[tuple[bytes, bool]]:
    """A comm holds the first 15 bytes of a longer name."""
    return [(raw[:_COMM_MAX], True)] if len(raw) > _COMM_MAX else [(raw, exact)]
