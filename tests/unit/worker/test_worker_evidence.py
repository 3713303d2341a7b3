"""Evidence: the events of the alerting process and its ancestors before the trigger.

The expectations are written by hand from the issue's words (same process or an ancestor, before
the trigger, the last N, oldest first), and the indexed history (`streams.evidence`) is compared
with a plain scan of every kept event on random histories."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from alerts import wire
from rules import evidence
from rules.alert import Alert
from rules.priority import Priority
from rules.record import (
    EV_NUM,
    EV_PROC,
    EVENT_LEN,
    P_ARGS,
    P_EXEPATH,
    P_NAME,
    P_PARENT,
    P_PID,
    P_PPID,
    P_START,
    PROCESS_LEN,
    event_type_id,
)
from streams.evidence import History

T0 = 1_780_000_000_000_000_000
EXECVE, OPENAT, CONNECT = (event_type_id(n) for n in ("execve", "openat", "connect"))


def proc(pid: int, ppid: int, name: str, parent: list[Any] | None = None, start: int = 0) -> list[Any]:
    p: list[Any] = [None] * PROCESS_LEN
    p[P_PID], p[P_PPID], p[P_NAME], p[P_ARGS], p[P_EXEPATH] = pid, ppid, name, ["-x"], f"/usr/bin/{name}"
    p[P_START], p[P_PARENT] = start, parent
    return p


def event(num: int, p: list[Any], etype: int = OPENAT) -> list[Any]:
    ev: list[Any] = [None] * EVENT_LEN
    ev[0:8] = [etype, T0 + num, p[P_PID], p, 0, [], None, num]
    return ev


def nums(evidence_maps: tuple[dict[str, Any], ...]) -> list[int]:
    return [int(m["evt.num"]) for m in evidence_maps]


def test_the_process_and_its_ancestors_before_the_trigger_oldest_first() -> None:
    init = proc(1, 0, "systemd")
    sshd = proc(700, 1, "sshd", init)
    bash = proc(800, 700, "bash", sshd)
    cat = proc(900, 800, "cat", bash)
    other = proc(555, 1, "nginx", init)
    events = [
        event(1, sshd, CONNECT), event(2, other), event(3, bash, EXECVE), event(4, bash),
        event(5, other), event(6, cat, EXECVE), event(7, cat), event(8, cat), event(9, bash),
    ]  # fmt: skip
    trigger = events[7]  # cat's second open
    picked = evidence.select(trigger, [events])
    assert [e[EV_NUM] for e in picked] == [1, 3, 4, 6, 7]  # not nginx, not the trigger, nothing after
    assert [e[EV_NUM] for e in evidence.select(trigger, [events], limit=2)] == [6, 7]
    maps = evidence.render(picked)
    assert maps[1]["evt.type"] == "execve" and maps[1]["proc.name"] == "bash"
    assert maps[0]["proc.pid"] == 700 and maps[0]["evt.time"] == T0 + 1
    assert all("fd.name" not in m for m in maps)  # absent values are left out


def test_a_reused_pid_of_another_process_is_not_an_ancestor() -> None:
    old_bash = proc(800, 1, "bash", None, start=T0 - 10**12)
    new_bash = proc(800, 1, "bash", None, start=T0)
    cat = proc(900, 800, "cat", new_bash)
    history = [[event(1, old_bash), event(2, new_bash), event(3, cat)]]
    assert [e[EV_NUM] for e in evidence.select(history[0][2], history)] == [2]


def test_strings_and_the_whole_list_are_bounded() -> None:
    p = proc(10, 1, "x" * 10_000)
    p[P_ARGS] = ["y" * 100_000]
    events = [event(i, p) for i in range(1, 60)]
    maps = evidence.render(evidence.select(events[-1], [events], limit=evidence.EVIDENCE_EVENTS_LIMIT))
    assert maps and all(len(str(v)) <= evidence.MAX_VALUE_CHARS for m in maps for v in m.values())
    size = len(json.dumps(list(maps), ensure_ascii=False, separators=(",", ":")).encode())
    assert size <= evidence.MAX_EVIDENCE_BYTES
    assert nums(maps)[-1] == 58  # what is dropped to fit is the oldest


def test_history_is_bounded_per_node_and_in_total_oldest_first() -> None:
    h = History(events_per_alert=16, depth=2, max_events=250)
    p = proc(10, 1, "sh")
    for seq in range(3):
        h.keep("a", "b", h.view([event(seq * 100 + i, p) for i in range(1, 101)]))
    assert h.kept_events == 200  # depth 2: the first batch went
    h.keep("b", "b", h.view([event(i, p) for i in range(1, 101)]))
    assert h.kept_events <= 250 and len(h) == 2  # node a, least recently seen, lost its oldest
    trigger = event(1000, p)
    assert nums(h.evidence("a", "b", h.view([trigger]), trigger)) == list(range(285, 301))
    assert h.evidence("a", "other-boot", h.view([trigger]), trigger) == ()


def test_evidence_off_keeps_nothing() -> None:
    h = History(events_per_alert=0)
    p = proc(10, 1, "sh")
    h.keep("a", "b", h.view([event(1, p)]))
    assert h.kept_events == 0 and h.evidence("a", "b", h.view([event(2, p)]), event(2, p)) == ()


def plain_evidence(batches: list[list[list[Any]]], trigger: list[Any], limit: int) -> list[int]:
    """Reference: every kept event in order, filtered by the lineage's pids, the last `limit`."""
    chain: dict[int, int] = {}
    p: list[Any] | None = trigger[EV_PROC]
    last = None
    while p is not None:
        chain.setdefault(p[P_PID], p[P_START])
        last, p = p, p[P_PARENT]
    if last is not None:
        chain.setdefault(last[P_PPID], 0)
    chain.pop(0, None)
    flat = [e for batch in batches for e in batch]
    hits = [e[EV_NUM] for e in flat if e[EV_NUM] < trigger[EV_NUM] and e[EV_PROC][P_PID] in chain
            and (not chain[e[EV_PROC][P_PID]] or not e[EV_PROC][P_START]
                 or chain[e[EV_PROC][P_PID]] == e[EV_PROC][P_START])]
    return hits[-limit:] if limit else []


@settings(max_examples=150, deadline=None)
@given(
    shape=st.lists(
        st.lists(st.tuples(st.integers(0, 5), st.integers(0, 2)), max_size=30), min_size=1, max_size=6
    ),
    trigger_pid=st.integers(0, 5),
    depth=st.integers(1, 4),
    limit=st.integers(0, 20),
)
def test_the_indexed_history_equals_a_plain_scan(
    shape: list[list[tuple[int, int]]], trigger_pid: int, depth: int, limit: int
) -> None:
    # six processes in a chain 100 <- 101 <- ... <- 105, each pid with one of three start times
    starts = (0, T0, T0 + 1)
    h = History(events_per_alert=limit, depth=depth, max_events=10_000)
    num, batches = 0, []
    for spec in shape[:-1]:
        batch = []
        for pid_i, start_i in spec:
            num += 1
            batch.append(event(num, proc(100 + pid_i, 99 + pid_i, "p", None, starts[start_i])))
        batches.append(batch)
        h.keep("n", "b", h.view(batch))
    parent = None
    for i in range(trigger_pid + 1):
        parent = proc(100 + i, 99 + i, "p", parent, T0)
    current = [event(num + 1 + i, proc(100 + pid_i, 99 + pid_i, "p", None, starts[s]))
               for i, (pid_i, s) in enumerate(shape[-1])]
    num += len(current)
    assert parent is not None
    trigger = event(num + 1, parent)
    current.append(trigger)
    got = nums(h.evidence("n", "b", h.view(current), trigger))
    kept = [b for b in batches if b][-depth:]  # an empty batch holds nothing: it takes no place
    assert got == plain_evidence([*kept, current], trigger, limit)


def test_an_alert_with_evidence_round_trips_and_without_it_is_falcos_json() -> None:
    p = proc(10, 1, "sh")
    maps = evidence.render([event(1, p, EXECVE), event(2, p)])
    alert = Alert(T0, "r", Priority.WARNING, "o", {"evt.time": T0}, "node-a", "syscall", ("t",), "u-1", maps)
    assert wire.decode(wire.encode(alert)) == alert
    plain = Alert(T0, "r", Priority.WARNING, "o", {}, "node-a", "syscall", ("t",), "u-1")
    assert "evidence" not in json.loads(wire.encode(plain))
