"""Batches are self-contained: each event's process and its ancestors travel with it."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from collectors.batch import MAX_ANCESTORS, Batcher, DropWindow
from collectors.wire import Batch, Drops, decode_batch, encode_batch
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
    ev: Event = [EVENT_TYPE_IDS["unlink"], ts, p[P_PID], p, 0, [0, "/x"], None, ts, None]
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


# What a node lost around a batch (collectors.batch.DropWindow)


def _counts(ring_full: int = 0, queue: int = 0) -> tuple[int, ...]:
    return (ring_full, 0, 0, 0, queue, 0)


def test_a_batch_without_losses_carries_no_drops() -> None:
    window = DropWindow(0, _counts())
    b = Batcher("node", "boot", max_events=2, max_age_ns=10**9, drops=window)
    p = proc(1, "a", None)
    window.read(10, _counts())
    closed = b.extend([event(p, 1), event(p, 2)], now_ns=10)
    assert len(closed) == 1 and closed[0].drops is None
    assert encode_batch(closed[0]) == encode_batch(Batcher("node", "boot", 2, 10**9).extend(
        [event(p, 1), event(p, 2)], now_ns=10)[0])  # fmt: skip


def test_losses_reach_every_batch_of_the_drains_around_them() -> None:
    window = DropWindow(0, _counts())
    b = Batcher("node", "boot", max_events=2, max_age_ns=10**9, drops=window)
    p = proc(1, "a", None)
    window.read(10, _counts())
    first = b.extend([event(p, 1), event(p, 2)], now_ns=10)
    window.read(20, _counts(ring_full=7, queue=1))  # lost in (10, 20]
    second = b.extend([event(p, t) for t in range(3, 8)], now_ns=20)
    window.read(30, _counts(ring_full=7, queue=1))
    third = b.extend([event(p, 8)], now_ns=30)  # opens a batch in the drain after the losses
    window.read(40, _counts(ring_full=7, queue=1))
    fourth = b.extend([event(p, 9)], now_ns=40)
    window.read(50, _counts(ring_full=7, queue=1))
    fifth = b.extend([event(p, 10)], now_ns=50)
    last = fifth[0] if len(fifth) == 1 else None
    assert [x.drops for x in first] == [None]
    assert [x.drops for x in second] == [Drops(10, 20, _counts(7, 1))] * 2
    assert len(third) == 1 and third[0].drops == Drops(10, 20, _counts(7, 1))  # events 7 and 8
    assert fourth == [] and last is not None and last.drops is None  # drains 4 and 5: after the losses
    assert second[0].drops is not None and second[0].drops.lost == 8


def test_a_counter_that_goes_back_and_a_clock_that_steps_back() -> None:
    window = DropWindow(100, _counts(ring_full=50))
    b = Batcher("node", "boot", max_events=10, max_age_ns=10**9, drops=window)
    p = proc(1, "a", None)
    window.read(90, _counts(ring_full=3))  # a reloaded probe: no negative counts
    b.extend([event(p, 1)], now_ns=0)
    window.read(80, _counts(ring_full=5))
    batch = b.close()
    assert batch is not None and batch.drops is not None
    assert batch.drops.counts == _counts(2) and batch.drops.first_ns <= batch.drops.last_ns
    decode_batch(encode_batch(batch))  # a window the worker accepts


@st.composite
def _schedules(draw: st.DrawFn) -> list[str]:
    """Writes (w), pumps (p: the drain looks, then `w`s may land before its counter read, r), age
    closes (c, right after a read, as the collector does)."""
    steps: list[str] = []
    for _ in range(draw(st.integers(min_value=1, max_value=40))):
        steps += ["w"] * draw(st.integers(min_value=0, max_value=6))
        steps.append("p")
        steps += ["w"] * draw(st.integers(min_value=0, max_value=2))
        steps.append("r")
        if draw(st.booleans()):
            steps.append("c")
    return steps


@given(_schedules(), st.integers(min_value=1, max_value=4), st.integers(min_value=1, max_value=5))
@settings(max_examples=400)
def test_every_loss_within_a_batch_or_just_after_it_flags_that_batch(
    steps: list[str], ring_size: int, max_events: int
) -> None:
    """A ring of `ring_size` records that drops writes while full, drained on a timer, batched as the
    collector does: every loss between two events of a batch, and every loss right after a batch's
    last event, reaches that batch's ``drops``."""
    window = DropWindow(0, _counts())
    b = Batcher("node", "boot", max_events=max_events, max_age_ns=0, drops=window)
    p = proc(1, "a", None)
    clock, lost = 0, 0
    ring: list[int] = []  # times of the events written and not yet read
    looked: list[int] = []  # read by the current drain, batched after its counter read
    writes: list[tuple[int, bool]] = []  # (time, delivered)
    batches: list[Batch] = []
    for step in steps:
        clock += 1
        if step == "w":
            if len(ring) < ring_size:
                ring.append(clock)
            else:
                lost += 1
            writes.append((clock, len(ring) > 0 and ring[-1] == clock))
        elif step == "p":
            looked, ring = ring, []
        elif step == "r":
            window.read(clock, _counts(ring_full=lost))
            batches += b.extend([event(p, t) for t in looked], now_ns=clock)
            looked = []
        elif step == "c":
            closed = b.close()
            batches += [closed] if closed is not None else []
    of_event = {ev_ts: x for x in batches for ev_ts in (e[1] for e in x.events)}
    previous: int | None = None  # the last delivered event before the current write
    for t, delivered in writes:
        if delivered:
            previous = t
            continue
        if previous is None or previous not in of_event:  # nothing before, or not batched yet
            continue
        batch = of_event[previous]
        assert batch.drops is not None and batch.drops.counts[0] >= 1, (t, batch.t_first, batch.t_last)
