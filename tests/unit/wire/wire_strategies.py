"""Hypothesis strategies for wire batches, shared by the contract and decoder tests."""

from __future__ import annotations

from hypothesis import strategies as st

from collectors.wire import DROP_CAUSES, MAX_DROP_COUNT, MAX_DROP_TIME, Batch, Drops
from rules.record import (
    EV_FDTYPES,
    EV_PROC,
    EVENT_LEN,
    EVENT_PARAMS,
    EVENT_TYPES,
    FD_LEN,
    FDTYPE_NAMES,
    MAX_FDTYPES_FDS,
    P_CONTAINER,
    P_PARENT,
    PROCESS_LEN,
)

scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.text(max_size=20),
    # around the C decoder's longest cached string (256 bytes)
    st.text(alphabet=st.characters(max_codepoint=127), min_size=250, max_size=270),
    st.binary(max_size=20),
    st.floats(allow_nan=False),
    st.lists(st.text(max_size=8), max_size=3),  # argv, environment
)


@st.composite
def processes(draw: st.DrawFn, n: int) -> list[list[object]]:
    procs = []
    for i in range(n):
        p = [draw(scalar) for _ in range(PROCESS_LEN)]
        p[P_PARENT] = draw(st.integers(min_value=-1, max_value=i - 1))  # parents come first: a forest
        p[P_CONTAINER] = None
        procs.append(p)
    return procs


@st.composite
def batches(draw: st.DrawFn) -> Batch:
    n_procs = draw(st.integers(min_value=1, max_value=6))
    procs = draw(processes(n_procs))
    events = []
    for _ in range(draw(st.integers(min_value=0, max_value=12))):
        ev = [draw(scalar) for _ in range(EVENT_LEN)]
        ev[0] = draw(st.integers(min_value=0, max_value=len(EVENT_TYPES) - 1))
        ev[EV_PROC] = draw(st.integers(min_value=0, max_value=n_procs - 1))
        n_params = len(EVENT_PARAMS[ev[0]])
        ev[5] = draw(st.lists(scalar, min_size=n_params, max_size=n_params))
        ev[6] = draw(st.one_of(st.none(), st.lists(scalar, min_size=FD_LEN, max_size=FD_LEN)))
        ev[EV_FDTYPES] = draw(st.one_of(st.none(), fd_tables))
        if draw(st.integers(min_value=0, max_value=5)) == 0:
            del ev[EV_FDTYPES:]  # written before EV_FDTYPES existed
        events.append(ev)
    return Batch(
        node=draw(st.text(min_size=1, max_size=30)),
        boot_id=draw(st.text(max_size=36)),
        seq=draw(st.integers(min_value=0, max_value=2**63 - 1)),
        t_first=draw(st.integers(min_value=0, max_value=2**63 - 1)),
        t_last=draw(st.integers(min_value=0, max_value=2**63 - 1)),
        procs=procs,
        events=events,
        drops=draw(st.one_of(st.none(), drops())),
    )


@st.composite
def drops(draw: st.DrawFn) -> Drops:
    """A valid ``drops`` with at least one count (all zero decodes as None)."""
    first = draw(st.integers(min_value=0, max_value=MAX_DROP_TIME))
    last = draw(st.integers(min_value=first, max_value=MAX_DROP_TIME))
    count = st.one_of(st.integers(min_value=0, max_value=3), st.just(MAX_DROP_COUNT),
                      st.integers(min_value=0, max_value=MAX_DROP_COUNT))  # fmt: skip
    counts = draw(st.lists(count, min_size=len(DROP_CAUSES), max_size=len(DROP_CAUSES)).filter(any))
    return Drops(first, last, tuple(counts))


# What a hostile node may put under ``drops``: near-misses of the valid shape, and anything else.
hostile_drops = st.one_of(
    scalar,
    st.lists(st.integers(min_value=-(2**63), max_value=2**64 - 1), min_size=0, max_size=10),
    st.lists(st.one_of(st.integers(min_value=-2, max_value=MAX_DROP_COUNT + 2),
                       st.sampled_from([MAX_DROP_TIME, MAX_DROP_TIME + 1, 2**64 - 1])),
             min_size=2 + len(DROP_CAUSES), max_size=2 + len(DROP_CAUSES)),
    st.lists(scalar, min_size=2 + len(DROP_CAUSES), max_size=2 + len(DROP_CAUSES)),
    st.dictionaries(st.sampled_from(DROP_CAUSES), st.integers(min_value=0, max_value=9), max_size=3),
)


# A valid EV_FDTYPES: one byte per fd, 0 (not open) or 1 + an index of FDTYPE_NAMES.
fd_tables = st.binary(max_size=MAX_FDTYPES_FDS).map(lambda b: bytes(x % (len(FDTYPE_NAMES) + 1) for x in b))

# What a hostile node may put in EV_FDTYPES: near-misses of the valid shape, and anything else.
hostile_fd_tables = st.one_of(
    scalar,
    fd_tables,
    st.binary(min_size=MAX_FDTYPES_FDS, max_size=MAX_FDTYPES_FDS + 2),
    st.lists(st.integers(min_value=0, max_value=255), max_size=MAX_FDTYPES_FDS).map(bytes),
    st.lists(st.integers(min_value=0, max_value=len(FDTYPE_NAMES)), max_size=4),  # an array, not a bin
    st.text(max_size=4),
)
