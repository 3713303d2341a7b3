"""Apply an interest to a loaded probe, live: its maps and which tracepoints are attached.

`apply_interest` moves the probe from the interest it holds to a new one without reloading it,
and widens before it narrows: the new trie entries go in and every type's mode becomes the
union of both interests, new types are attached, and only then are the types and entries only
the old interest had removed. An event either interest keeps is kept at every moment of the
switch. Types no rule names are detached (a detached tracepoint costs nothing; an attached one
costs the tracepoint's floor even when its program drops everything), but the ones the process
table needs (`loader.ALWAYS_TRACED`) stay attached and their records are flagged instead.

`seed_names` gives pg_names the names the process table read from /proc at start, and
`filtered` reads the kernel's counts of kept and dropped events.
"""

from __future__ import annotations

import ctypes
import logging
from collections.abc import Mapping

from collectors import loader
from collectors.header import PG_COMM_LEN, PG_IR_COMM, PG_IR_KEPT, PG_IR_N, PG_IR_NO_RULE, PG_IR_PATH
from collectors.interest_plan import plan, union_mode
from collectors.loader import Probe
from collectors.proctable import ProcTable
from rules.interest import TypeInterest
from rules.record import EVENT_TYPE_IDS, EVENT_TYPES, P_NAME

log = logging.getLogger("peregrine.collector")
REASONS = {PG_IR_KEPT: "kept", PG_IR_NO_RULE: "dropped-no-rule", PG_IR_PATH: "dropped-path",
           PG_IR_COMM: "dropped-comm"}  # fmt: skip


def apply_interest(probe: Probe, interest: Mapping[str, TypeInterest] | None) -> None:
    """Make the probe keep what `interest` needs (None: every event of the types it traced at
    start). Types the interest names that this kernel lacks are left out (logged)."""
    target = plan(interest, probe.traced)
    lacking = sorted(set(target.modes) - probe.compiled)
    if lacking:
        log.info("interest names event types this kernel cannot trace: %s", " ".join(lacking))
    modes = {name: mode for name, mode in target.modes.items() if name in probe.compiled}
    keys = {e.key() for e in target.entries if EVENT_TYPES[e.type_id] in modes}
    live, bpf = probe.live, probe.bpf
    lpm, mode_map = bpf["interest_lpm"], bpf["interest_mode"]
    # widen: both interests' entries, the union of both modes, the new types attached
    for key in keys - live.keys:
        _put_key(lpm, key)
    for name, mode in modes.items():
        _set_mode(mode_map, name, union_mode(live.modes.get(name, 0), mode))
    for name in sorted(set(modes) - live.attached - loader.ALWAYS_TRACED):
        loader.attach(probe, name)
    # narrow: the old interest's types and entries go
    for name in sorted(live.attached - set(modes) - loader.ALWAYS_TRACED):
        loader.detach_type(probe, name)
    for name in set(live.modes) | set(modes):
        _set_mode(mode_map, name, modes.get(name, 0))
    for key in live.keys - keys:
        del lpm[_key(lpm, key)]
    live.modes, live.keys = modes, keys


def seed_names(probe: Probe, procs: ProcTable) -> int:
    """Give pg_names the name of every process the table already holds (read from /proc before
    the probe was attached) unless the probe set one since: from then on the probe follows each
    process's exec and fork in step with the table. Returns how many were added."""
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


def _put_key(lpm: object, raw: bytes) -> None:
    lpm[_key(lpm, raw)] = ctypes.c_uint8(1)  # type: ignore[index]


def _set_mode(mode_map: object, name: str, mode: int) -> None:
    mode_map[ctypes.c_int(EVENT_TYPE_IDS[name])] = ctypes.c_uint32(mode)  # type: ignore[index]
