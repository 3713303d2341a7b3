"""collectors/header.py mirrors struct pg_hdr of probe.h: size, every offset, and the constants."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from collectors import header

PROBE_H = Path(header.__file__).with_name("probe.h")


@pytest.fixture(scope="module")
def c_layout(tmp_path_factory: pytest.TempPathFactory) -> dict[str, int]:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.fail("no C compiler: run ./scripts/setup (gcc is in scripts/apt-packages.txt)")
    d = tmp_path_factory.mktemp("layout")
    prints = "".join(
        f'printf("{name} %zu\\n", offsetof(struct pg_hdr, {name}));' for name, _ in header.C_OFFSETS
    )
    src = d / "layout.c"
    src.write_text(
        "#include <stdio.h>\n#include <stddef.h>\n#include <linux/types.h>\n"
        f'#include "{PROBE_H}"\n'
        f'int main(void) {{ printf("sizeof %zu\\n", sizeof(struct pg_hdr)); {prints} return 0; }}\n'
    )
    subprocess.run([cc, "-o", str(d / "layout"), str(src)], check=True)
    out = subprocess.run([str(d / "layout")], check=True, capture_output=True, text=True).stdout
    return {k: int(v) for k, v in (line.split() for line in out.splitlines())}


def test_header_size_matches_probe_h(c_layout: dict[str, int]) -> None:
    assert header.HDR_SIZE == c_layout["sizeof"]


def test_every_member_offset_matches_probe_h(c_layout: dict[str, int]) -> None:
    assert {name: off for name, off in header.C_OFFSETS} == {n: c_layout[n] for n, _ in header.C_OFFSETS}
    # and the Python struct places its fields there: pack a header with distinct values per field
    values = [0] * 24 + [b"comm"]
    values[header.H_TGID], values[header.H_EVT], values[header.H_LEN] = 0x11223344, 0x5566, 0x7788
    raw = header.HDR.pack(*values)
    assert raw[c_layout["tgid"] : c_layout["tgid"] + 4] == (0x11223344).to_bytes(4, "little")
    assert raw[c_layout["evt"] : c_layout["evt"] + 2] == (0x5566).to_bytes(2, "little")
    assert raw[c_layout["len"] : c_layout["len"] + 2] == (0x7788).to_bytes(2, "little")
    assert raw[c_layout["comm"] : c_layout["comm"] + 4] == b"comm"


def test_constants_match_probe_h() -> None:
    defines = dict(re.findall(r"#define (PG_\w+) (\w+)", PROBE_H.read_text()))
    for name in ("PG_EVT_FORK", "PG_FLAG_TRUNCATED", "PG_FLAG_UNWANTED", "PG_CNT_EVTS", "PG_CNT_RING_FULL",
                 "PG_CNT_BAD_REGS", "PG_CNT_PAGE_FAULT", "PG_CNT_N", "PG_MAX_STR", "PG_IM_KEEP", "PG_IM_PATH",
                 "PG_IM_COMM", "PG_IM_FDTABLE", "PG_IM_GRAM_PAIRS", "PG_LPM_HEAD", "PG_LPM_STR",
                 "PG_LPM_DATA", "PG_FIELD_PATH", "PG_FIELD_COMM",
                 "PG_COMM_LEN", "PG_IR_KEPT", "PG_IR_NO_RULE", "PG_IR_PATH", "PG_IR_COMM",
                 "PG_IR_FLAGS", "PG_IR_N", "PG_FIELD_RPATH", "PG_SUFFIX_MAX",
                 "PG_PATH_SLOTS", "PG_GRAM_SHIFT", "PG_GRAM_BITS", "PG_SCREEN_SHIFT", "PG_SCREEN_SLOTS"):
        assert getattr(header, name) == int(defines[name], 0), name
