"""The fixed header of a probe record, mirroring `struct pg_hdr` in probe.h.

`tests/unit/collectors/test_header.py` compiles probe.h and checks this layout (size and every
offset) against it, so the two cannot drift apart silently.
"""

from __future__ import annotations

import struct
from typing import Final

HDR: Final = struct.Struct("<QQq6QQ10I4H16s")
HDR_SIZE: Final = HDR.size

# positions in HDR.unpack_from(...)
H_TS: Final = 0
H_CGROUP: Final = 1
H_RET: Final = 2
H_A0: Final = 3  # a[0] .. a[5] are H_A0 .. H_A0 + 5
H_PSTART: Final = 9
H_TGID: Final = 10
H_TID: Final = 11
H_PPID: Final = 12
H_UID: Final = 13
H_GID: Final = 14
H_LOGINUID: Final = 15
H_TTY: Final = 16
H_SID: Final = 17  # sid, vpid, vpgid: exec and fork records only (0 otherwise)
H_VPID: Final = 18
H_VPGID: Final = 19
H_EVT: Final = 20
H_LEN: Final = 21
H_FLAGS: Final = 22
H_COMM: Final = 24
H_ITEMS: Final = 25  # a parsed record (collectors.decode.Record) appends the payload items here
# h[H_CTX_FIRST:H_CTX_END] is the process context compared per event to detect a changed process
H_CTX_FIRST: Final = H_PPID
H_CTX_END: Final = H_TTY + 1

# (C member, byte offset) for the layout test
C_OFFSETS: Final = (
    ("ts", 0), ("cgroup_id", 8), ("ret", 16), ("a", 24), ("pstart", 72), ("tgid", 80), ("tid", 84),
    ("ppid", 88), ("uid", 92), ("gid", 96), ("loginuid", 100), ("tty", 104), ("sid", 108),
    ("vpid", 112), ("vpgid", 116), ("evt", 120), ("len", 122), ("flags", 124), ("pad", 126),
    ("comm", 128),
)

# values from probe.h
PG_EVT_FORK: Final = 0xFF00
PG_FLAG_TRUNCATED: Final = 1
PG_FLAG_FDTYPES: Final = 2  # the last item is the fd types table (probe.bpf.c pg_put_fdtypes)
PG_FLAG_UNWANTED: Final = 4  # for the process table only: no loaded interest names its type
PG_MAX_STR: Final = 4096  # one path or argv block, as the probe captures it
PG_CNT_EVTS, PG_CNT_RING_FULL, PG_CNT_BAD_REGS, PG_CNT_PAGE_FAULT = 0, 1, 2, 3
PG_CNT_N: Final = 4
LOGINUID_UNSET: Final = 0xFFFFFFFF
PG_EXE_ITEM: Final = 64
PG_EXE_HAVE_TIMES, PG_EXE_HAVE_LAYER, PG_EXE_UPPER = 1, 2, 4
# interest (probe.h): mode bits, key layout, counter reasons
PG_IM_KEEP, PG_IM_PATH, PG_IM_COMM, PG_IM_FDTABLE, PG_IM_GRAM_PAIRS = 1, 2, 4, 8, 16
PG_PATH_SLOTS, PG_GRAM_SHIFT, PG_GRAM_BITS, PG_GRAM_MUL = 4, 16, 65536, 0x9E3779B1
PG_SCREEN_SHIFT, PG_SCREEN_SLOTS = 10, 1024
PG_LPM_HEAD, PG_LPM_STR, PG_LPM_DATA = 4, 248, 252
PG_SUFFIX_MAX: Final = 64
PG_FIELD_PATH, PG_FIELD_COMM, PG_FIELD_RPATH = 1, 2, 3
PG_COMM_LEN: Final = 16
PG_IR_KEPT, PG_IR_NO_RULE, PG_IR_PATH, PG_IR_COMM, PG_IR_FLAGS = 0, 1, 2, 3, 4
PG_IR_N: Final = 5
