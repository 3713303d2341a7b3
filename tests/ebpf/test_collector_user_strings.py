"""User strings arrive whole wherever they lie (probe.bpf.c pg_read_user_short).

The probe copies a user string's first 128 bytes in one fixed-size read and finds its NUL there;
a string that is longer, or whose 128 bytes would cross into an unmapped page, is read again byte
by byte. A process opens seeded random paths (bytes 0x01-0xff but NUL, '/' and '.': high bytes
are where a word-at-a-time NUL search goes wrong) of lengths around every boundary of that read,
placed so that the NUL is the last byte before a PROT_NONE page, so that the string begins a page
followed by non-zero bytes, and so that it straddles the 128-byte mark. Every path the kernel
sees must arrive exactly as it was passed.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
from collector_actions import Collector, capture_contents, of_type

from rules.record import EV_ARGS

pytestmark = [pytest.mark.root, pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]

PREFIX = b"/pgstr/"
LENGTHS = [*range(len(PREFIX), 141), 200, 255, 256, 257, 300, 1000, 4000]  # the NUL in every word of the read
RULE = """
- rule: user strings
  desc: opens under /pgstr/
  condition: evt.type = openat and fd.name startswith /pgstr/
  output: opened %fd.name
  priority: INFO
"""
# Opens each path of the file (lengths then bytes, hex) at three places in a mapping of two pages,
# the second PROT_NONE: ending at the guard page, at the start of a page of 0xff bytes, and
# straddling its 128th byte.
OPENER = r"""
import ctypes, mmap, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.openat.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_int]
libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
page = mmap.PAGESIZE
size = 2 * page if len(sys.argv) < 3 else int(sys.argv[2]) * page
area = mmap.mmap(-1, size + page, prot=mmap.PROT_READ | mmap.PROT_WRITE)
base = ctypes.addressof(ctypes.c_char.from_buffer(area))
assert libc.mprotect(base + size, page, 0) == 0
for line in open(sys.argv[1]):
    path = bytes.fromhex(line.strip()) + b"\0"
    for at in (size - len(path), 0, 100):
        area[0:size] = b"\xff" * size
        area[at:at + len(path)] = path
        fd = libc.openat(-100, base + at, 0)
        if fd >= 0:
            import os; os.close(fd)
"""


def _paths() -> list[bytes]:
    rng = random.Random(128)
    alphabet = [b for b in range(1, 256) if b not in b"/."]
    return [PREFIX + bytes(rng.choice(alphabet) for _ in range(n - len(PREFIX))) for n in LENGTHS]


def test_user_strings_arrive_whole_at_any_length_and_next_to_an_unmapped_page(tmp_path: Path) -> None:
    paths = _paths()
    listing = tmp_path / "paths.hex"
    listing.write_text("".join(p.hex() + "\n" for p in paths))
    rules_file, out = tmp_path / "rules.yaml", tmp_path / "strings.cap"
    rules_file.write_text(RULE)
    collector = Collector(["record", "--out", str(out), "--rules", str(rules_file)]).start()
    try:
        subprocess.run([sys.executable, "-S", "-c", OPENER, str(listing)], check=True, timeout=60)
    finally:
        collector.stop()
    events, _ = capture_contents(str(out))
    seen = [str(e[EV_ARGS][2]) for e in of_type(events, "openat") if str(e[EV_ARGS][2]).startswith("/pgstr/")]
    expected = [p.decode("utf-8", "replace") for p in paths for _ in range(3)]
    assert len(seen) == len(expected), (len(seen), len(expected))
    wrong = [(len(p), p[:40]) for p, s in zip(expected, seen, strict=True) if p != s]
    assert not wrong, wrong[:5]
