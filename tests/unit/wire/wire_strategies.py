"""Hypothesis strategies for wire batches, shared by the contract and decoder tests."""

from __future__ import annotations

from hypothesis import strategies as st

from collectors.wire import Batch
from rules.record import (
    EV_PROC,
    EVENT_LEN,
    EVENT_PARAMS,
    EVENT_TYPES,
    FD_LEN,
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
        events.append(ev)
    return Batch(
        node=draw(st.text(min_size=1, max_size=30)),
        boot_id=draw(st.text(max_size=36)),
        seq=draw(st.integers(min_value=0, max_value=2**63 - 1)),
        t_first=draw(st.integers(min_value=0, max_value=2**63 - 1)),
        t_last=draw(st.integers(min_value=0, max_value=2**63 - 1)),
        procs=procs,
        events=events,
    )
