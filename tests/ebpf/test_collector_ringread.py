"""The C ring reader parses a record exactly as `collectors.decode.parse` does in Python (same tuple,
same items, same errors), so the collector's events do not depend on which of the two read it.
Needs a C compiler, not root: the extension is built as the collector builds it at start."""

from __future__ import annotations

import random
import struct
from types import ModuleType

import pytest

from collectors import native
from collectors.decode import DecodeError, parse
from collectors.header import HDR, HDR_SIZE, PG_EVT_FORK


@pytest.fixture(scope="module")
def ringread() -> ModuleType:
    return native.load()


def record(payload_items: list[bytes], *, declared: int | None = None, rng: random.Random) -> bytes:
    payload = b"".join(struct.pack("<H", len(i)) + i for i in payload_items)
    a = [rng.getrandbits(64) for _ in range(6)]
    u32 = [rng.getrandbits(32) for _ in range(10)]
    hdr = HDR.pack(rng.getrandbits(64), rng.getrandbits(64), rng.randint(-(2**63), 2**63 - 1), *a,
                   rng.getrandbits(64), *u32, rng.choice([0, 5, 120, PG_EVT_FORK, 0xFFFF]),
                   len(payload) if declared is None else declared, rng.getrandbits(16), 0,
                   bytes(rng.getrandbits(8) for _ in range(16)))
    return hdr + payload


def test_random_records_parse_the_same_in_c_and_python(ringread: ModuleType) -> None:
    rng = random.Random(4)
    for _ in range(2000):
        items = [bytes(rng.getrandbits(8) for _ in range(rng.choice([0, 1, 7, 44, 300])))
                 for _ in range(rng.randint(0, 5))]
        raw = record(items, rng=rng)
        assert ringread.parse(raw, DecodeError) == parse(raw)
        assert parse(raw)[-1] == items


def test_an_item_longer_than_the_payload_is_cut_at_its_end(ringread: ModuleType) -> None:
    rng = random.Random(5)
    raw = record([b"abc"], rng=rng)
    cut = bytearray(raw)
    cut[HDR_SIZE : HDR_SIZE + 2] = struct.pack("<H", 100)  # says 100 bytes, 3 follow
    assert ringread.parse(bytes(cut), DecodeError) == parse(bytes(cut))
    assert parse(bytes(cut))[-1] == [b"abc"]


@pytest.mark.parametrize("raw", [b"\0" * 10, b""])
def test_short_records_raise_the_same_error(ringread: ModuleType, raw: bytes) -> None:
    with pytest.raises(DecodeError) as py:
        parse(raw)
    with pytest.raises(DecodeError) as c:
        ringread.parse(raw, DecodeError)
    assert str(c.value) == str(py.value)


def test_a_payload_shorter_than_declared_raises_the_same_error(ringread: ModuleType) -> None:
    raw = record([b"x" * 10], declared=40, rng=random.Random(6))
    with pytest.raises(DecodeError) as py:
        parse(raw)
    with pytest.raises(DecodeError) as c:
        ringread.parse(raw, DecodeError)
    assert str(c.value) == str(py.value)
