"""A model of what probe.bpf.c does with its interest maps, written from the C and sharing no code
with `collectors.interest_plan` (which fills the maps): `kernel_keeps` says whether the probe
keeps an event, given the maps' contents. The unit tests check the plan against it
(tests/unit/collectors/test_interest_plan.py), the eBPF tests check it against the kernel
(tests/ebpf/test_collector_interest.py)."""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass

from collectors.header import (
    PG_FIELD_COMM,
    PG_FIELD_PATH,
    PG_FIELD_RPATH,
    PG_GRAM_BITS,
    PG_IM_COMM,
    PG_IM_GRAM_PAIRS,
    PG_IM_KEEP,
    PG_IM_PATH,
    PG_LPM_DATA,
    PG_LPM_STR,
    PG_MAX_STR,
)
from collectors.interest_plan import KernelInterest
from rules.record import EVENT_TYPE_IDS, EVENT_TYPES

ALL = (1 << 64) - 1


@dataclass
class Maps:
    """What the probe reads: interest_gen, interest_type (raw struct pg_itype by index),
    interest_lpm (raw key -> u64), interest_grams (raw bitmap by index) and interest_screens (raw
    struct pg_screen by index)."""

    gen: int
    records: Mapping[int, bytes]
    lpm: Mapping[bytes, int]
    grams: Mapping[int, bytes]
    screens: Mapping[int, bytes]


SLOTS = ("open", "openat", "openat2", "creat")  # probe.bpf.c PG_PATH_SLOT


def maps_of(planned: KernelInterest, gen: int = 1) -> Maps:
    records = {gen * len(EVENT_TYPES) + EVENT_TYPE_IDS[n]: t.record(gen) for n, t in planned.types.items()}
    grams = {gen * 4 + slot: planned.bitmap(name) for slot, name in enumerate(SLOTS)}
    screens = {gen * 4 + slot: planned.screen(name) for slot, name in enumerate(SLOTS)}
    return Maps(gen, records, {e.key(gen): mask for e, mask in planned.entries.items()}, grams, screens)


def _lpm_mask(lpm: Mapping[bytes, int], data: bytes) -> int:
    """The value of the longest key whose first prefixlen bits equal the data's (whole bytes here)."""
    best, found = -1, 0
    for key, mask in lpm.items():
        bits = int.from_bytes(key[:4], "little")
        assert bits % 8 == 0 and len(key) == 4 + PG_LPM_DATA
        if data[: bits // 8] == key[4 : 4 + bits // 8] and bits > best:
            best, found = bits, mask
    return found


def _head(type_id: int, field_id: int, gen: int) -> bytes:
    return bytes((type_id >> 8, type_id & 0xFF, field_id, gen))


def kernel_keeps(maps: Maps, type_id: int, *, path: bytes | None = None, comm: bytes | None = None,
                 flags: int = 0, ret: int = 0) -> bool:  # fmt: skip
    """pg_exit's tests: the type's record in the live generation, its flags and result masks,
    pg_comm_mask on pg_names' entry (`comm`, None: none), pg_path_mask on the string the probe
    read (bpf_probe_read_user_str: cut, NUL-ended) for the open family."""
    raw = maps.records.get((maps.gen & 1) * len(EVENT_TYPES) + type_id, bytes(88))
    mode, gen, path_free, comm_free, suffixed, grams, *acc_res = struct.unpack_from("<II4Q4Q2Q", raw)
    if not mode & PG_IM_KEEP:
        return False
    name = EVENT_TYPES[type_id]
    accmode = flags if name in ("open", "openat") else 0  # a[1], a[2]: the flags the record shows
    m: int = acc_res[4 + (ret >= 0)] & acc_res[accmode & 3]
    if m and mode & PG_IM_COMM and comm is not None:
        m &= comm_free | _lpm_mask(maps.lpm, _head(type_id, PG_FIELD_COMM, gen) + comm[:15].ljust(16, b"\0"))
    if m and mode & PG_IM_PATH and name in ("open", "openat", "openat2", "creat") and path is not None:
        m &= _path_mask(maps, type_id, (gen, path_free, suffixed, grams), m, path, mode & PG_IM_GRAM_PAIRS)
    return m != 0


def _screen_slot(gram: bytes) -> int:
    return (int.from_bytes(gram, "little") * 0x9E3779B1 & 0xFFFFFFFF) >> (32 - 10) & 1023


def _screened(raw: bytes | None, item: bytes) -> tuple[int, int]:
    """pg_path_mask's screen: the alternatives the path's first 4 bytes (its NUL counted) and its
    last 4 (not counted) may let through in the forward and reversed lookups (an array map's
    entry never written reads as zeros)."""
    words = struct.unpack_from(f"<{2 + 2 * 1024}Q", raw or bytes(8 * (2 + 2 * 1024)))
    head, tail = words[0], words[1]
    if len(item) >= 4:
        head |= words[2 + _screen_slot(item[:4])]
    if len(item) >= 5:
        tail |= words[2 + 1024 + _screen_slot(item[-5:-1])]
    return head, tail


def _path_mask(maps: Maps, type_id: int, record: tuple[int, int, int, int], m: int, path: bytes,
               pairs: int) -> int:  # fmt: skip
    gen, free, suffixed, grams = record
    item = path.split(b"\0", 1)[0][: PG_MAX_STR - 1] + b"\0"
    if len(item) > PG_LPM_STR or item[:1] != b"/":
        return ALL
    head, tail = _screened(maps.screens.get(gen * 4 + SLOTS.index(EVENT_TYPES[type_id])), item)
    found = free
    if m & head and not m & found:
        found |= _lpm_mask(maps.lpm, (_head(type_id, PG_FIELD_PATH, gen) + item).ljust(PG_LPM_DATA, b"\xaa"))
    if m & suffixed & tail and not m & found:
        # bytes before the path (the record's header) follow the reversed path in the key
        rev = _head(type_id, PG_FIELD_RPATH, gen) + item[-2::-1] + b"\x2f\xaa" * 40
        found |= _lpm_mask(maps.lpm, rev[:PG_LPM_DATA])
    if m & grams and not m & found:
        bitmap = maps.grams.get(gen * 4 + SLOTS.index(EVENT_TYPES[type_id]), bytes(PG_GRAM_BITS // 8))
        for p in range(0, len(item) - 1 - 3, 2 if pairs else 1):  # pairs: even positions only
            h = (int.from_bytes(item[p : p + 4], "little") * 0x9E3779B1 & 0xFFFFFFFF) >> 16
            if bitmap[h // 8] >> (h % 8) & 1:
                found |= grams
                break
    if not m & found and (b"/." in item or b"//" in item):
        return ALL
    return found
