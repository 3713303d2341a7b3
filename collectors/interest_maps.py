"""Apply an interest to a loaded probe, live: its maps and which tracepoints are attached.

`apply_interest` moves the probe from the interest it holds to a new one without reloading it. The
probe's maps hold two generations (a generation byte in every trie key, a record per type and
generation, a gram bitmap and a screen per open-family type and generation) and `interest_gen` says
which one is live; each program run reads that one u32 once and then only its generation's record,
keys, bitmap and screen. A switch writes the new interest into the generation no program reads,
attaches the types it adds, and flips `interest_gen` (one aligned u32 store: atomic; it counts the
switches, and its parity is the live generation, so a result the probe remembers from one switch's
maps is never taken for another's). So every event is judged whole by the old interest or whole by
the new one, never by a mixture (a union of two plans is not the union of their masks: the bits
number each plan's own alternatives), and an event of the new interest is kept from the flip on. The
old generation's entries are deleted only at the next switch, before it writes there, long after any
program run that read the old generation ended (a run lasts microseconds, a switch follows a
worker's reload). Types the new interest drops stay attached, dropping their events (a record of
mode 0): detaching blocks the caller for a kernel grace period (79-96 ms) while an attached type
no rule names costs the same as a detached one (benchmarks/RESULTS.md). Types the process table
needs (`loader.ALWAYS_TRACED`) are attached at load and their records are flagged instead.

`seed_names` gives pg_names the names the process table read from /proc at start, and
`filtered` reads the kernel's counts of kept and dropped events.
"""

from __future__ import annotations

import ctypes
import logging
from collections.abc import Mapping

from collectors import loader
from collectors.header import (
    PG_COMM_LEN,
    PG_IR_COMM,
    PG_IR_FLAGS,
    PG_IR_KEPT,
    PG_IR_N,
    PG_IR_NO_RULE,
    PG_IR_PATH,
)
from collectors.interest_plan import DROP, PATH_SLOTS, plan
from collectors.loader import Probe
from collectors.proctable import ProcTable
from rules.interest import TypeInterest
from rules.record import EVENT_TYPE_IDS, EVENT_TYPES, P_NAME

log = logging.getLogger("peregrine.collector")
REASONS = {PG_IR_KEPT: "kept", PG_IR_NO_RULE: "dropped-no-rule", PG_IR_PATH: "dropped-path",
           PG_IR_COMM: "dropped-comm", PG_IR_FLAGS: "dropped-flags"}  # fmt: skip


def apply_interest(
    probe: Probe, interest: Mapping[str, TypeInterest] | None, fd_tables: bool = False
) -> None:
    """Make the probe keep what `interest` needs (None: every event of the types it traced at
    start, with the fd table when `fd_tables`). Types the interest names that this kernel lacks are
    left out (logged)."""
    target = plan(interest, probe.traced, fd_tables)
    lacking = sorted(set(target.types) - probe.compiled)
    if lacking:
        log.info("interest names event types this kernel cannot trace: %s", " ".join(lacking))
    types = {name: record for name, record in target.types.items() if name in probe.compiled}
    live, bpf = probe.live, probe.bpf
    switches = live.switches + 1
    gen = switches & 1
    keys = {e.key(gen): mask for e, mask in target.entries.items() if EVENT_TYPES[e.type_id] in types}
    lpm, records = bpf["interest_lpm"], bpf["interest_type"]
    # the free generation: what the switch before last left there goes first
    for key in live.stale_keys:
        del lpm[_key(lpm, key)]
    for key, mask in keys.items():
        lpm[_key(lpm, key)] = ctypes.c_uint64(mask)
    base = gen * len(EVENT_TYPES)
    for name in live.stale_types - set(types):
        _set_record(records, base + EVENT_TYPE_IDS[name], DROP.record(gen))
    for name, record in types.items():
        _set_record(records, base + EVENT_TYPE_IDS[name], record.record(gen))
    grams, screens = bpf["interest_grams"], bpf["interest_screens"]
    for slot, name in enumerate(PATH_SLOTS):
        _set_record(grams, gen * len(PATH_SLOTS) + slot, target.bitmap(name))
        _set_record(screens, gen * len(PATH_SLOTS) + slot, target.screen(name))
    for name in sorted(set(types) - live.attached - loader.ALWAYS_TRACED):
        loader.attach(probe, name)
    bpf["interest_gen"][ctypes.c_int(0)] = ctypes.c_uint32(switches)
    live.switches, live.gen, live.stale_keys, live.stale_types = switches, gen, live.keys, live.types
    live.keys, live.types = set(keys), set(types)


def seed_names(probe: Probe, procs: ProcTable) -> int:
    """Give pg_names the name of every process the table already holds (read from /proc before
    the probe was attached) unless the probe set one since: from then on the probe follows each
    process's exec and fork in step with the table. Returns how many were added. Call it before
    the first `apply_interest`: the probe remembers name lookups until the next switch
    (probe.bpf.c pg_comm_memos), and before the first no name is looked up."""
    names = probe.bpf["pg_names"]
    added = 0
    for tgid, entry in list(procs.entries.items()):
        comm = str(entry[0][P_NAME]).encode()[: PG_COMM_LEN - 1]
        value = names.Leaf()
        ctypes.memmove(ctypes.addressof(value), comm, len(comm))
        added += loader.insert_new(names, names.Key(tgid), value)
    return added


def filtered(probe: Probe) -> dict[tuple[str, str], int]:
    """Cumulative (event type, reason) -> events, summed over CPUs, non-zero only."""
    counts = probe.bpf["interest_counts"]
    out: dict[tuple[str, str], int] = {}
    for name in sorted(probe.compiled):
        base = EVENT_TYPE_IDS[name] * PG_IR_N
        for reason, label in REASONS.items():
            n = sum(counts[ctypes.c_int(base + reason)])
            if n:
                out[name, label] = n
    return out


def _key(lpm: object, raw: bytes) -> object:
    key = lpm.Key()  # type: ignore[attr-defined]
    ctypes.memmove(ctypes.addressof(key), raw, len(raw))
    return key


def _set_record(records: object, index: int, raw: bytes) -> None:
    value = records.Leaf()  # type: ignore[attr-defined]
    ctypes.memmove(ctypes.addressof(value), raw, len(raw))
    records[ctypes.c_int(index)] = value  # type: ignore[index]
