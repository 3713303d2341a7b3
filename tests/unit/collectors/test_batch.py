"""Batches are self-contained: each event's process and its ancestors travel with it."""

from __future__ import annotations

from collectors.batch import MAX_ANCESTORS, Batcher
from collectors.wire import decode_batch, encode_batch
from rules.record import (
    EV_PROC,
    EVENT_LEN,
    EVENT_TYPE_IDS,
    P_NAME,
    P_PARENT,
    P_PID,
    PROCESS_LEN,
    Event,
    Process,
)


def proc(pid: int, name: str, parent: Process | None) -> Process:
    p: Process = [None] * PROCESS_LEN
    p[P_PID], p[P_NAME], p[P_PARENT] = pid, name, parent
    return p


def event(p: Process, ts: int) -> Event:
    ev: Event = [EVENT_TYPE_IDS["unlink"], ts, p[P_PID], p, 0, [0, "/x"], None, ts]
    assert len(ev) == EVENT_LEN
    return ev


def chain(n: int) -> list[Process]:
    out: list[Process] = []
    for i in range(n):
        out.append(proc(100 + i, f"p{i}", out[-1] if out else None))
    return out


def test_closes_by_size_with_increasing_seq() -> None:
    b = Batcher("node", "boot", max_events=3, max_age_ns=10**9)
    p = proc(1, "init", None)
    closed = [b.add(event(p, t), now_ns=0) for t in range(7)]
    batches = [x for x in closed if x is not None]
    assert [len(x.events) for x in batches] == [3, 3]
    assert [x.seq for x in batches] == [1, 2]
    assert len(b) == 1 and b.close() is not None and b.close() is None


def test_closes_by_age() -> None:
    b = Batcher("node", "boot", max_events=100, max_age_ns=20)
    b.add(event(proc(1, "a", None), 5), now_ns=100)
    assert not b.due(110) and b.due(120)


def test_processes_travel_once_with_their_ancestors_and_round_trip_the_wire() -> None:
    procs = chain(4)  # p0 <- p1 <- p2 <- p3
    b = Batcher("node", "boot", max_events=100, max_age_ns=10**9)
    for p in (procs[3], procs[3], procs[1]):
        b.add(event(p, 1), now_ns=0)
    batch = b.close()
    assert batch is not None and len(batch.procs) == 4  # p3 and its 3 ancestors, once each
    assert [e[EV_PROC] for e in batch.events] == [3, 3, 1]
    back = decode_batch(encode_batch(batch))
    leaf = back.events[0][EV_PROC]
    assert leaf[P_NAME] == "p3" and leaf[P_PARENT][P_NAME] == "p2"
    assert leaf[P_PARENT][P_PARENT][P_PARENT][P_NAME] == "p0"
    assert back.events[2][EV_PROC] is leaf[P_PARENT][P_PARENT]
    assert procs[3][P_PARENT] is procs[2], "the in-memory records are not modified"


def test_ancestors_are_cut_after_the_limit() -> None:
    procs = chain(MAX_ANCESTORS + 5)
    b = Batcher("node", "boot", max_events=100, max_age_ns=10**9)
    b.add(event(procs[-1], 1), now_ns=0)
    batch = b.close()
    assert batch is not None and len(batch.procs) == MAX_ANCESTORS + 1
    back = decode_batch(encode_batch(batch))
    p, depth = back.events[0][EV_PROC], 0
    while p[P_PARENT] is not None:
        p, depth = p[P_PARENT], depth + 1
    assert depth == MAX_ANCESTORS
