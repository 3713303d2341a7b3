"""Evidence: the events of the alerting process and its ancestors before the trigger.

The expectations are written by hand from the issue's words (same process or an ancestor, before
the trigger, the last N, oldest first), and the indexed history (`streams.evidence`) is compared
with a plain scan of every kept event on random histories."""

from __future__ import annotations

import dataclasses
import json
import re
from datetime import UTC, datetime
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from alerts import wire
from rules import evidence
from rules.alert import Alert, FieldValue
from rules.output import compile_output, json_of
from rules.priority import Priority
from rules.record import (
    EV_FD,
    EV_NUM,
    EV_PROC,
    EVENT_LEN,
    F_NAME,
    FD_LEN,
    P_ARGS,
    P_EXEPATH,
    P_NAME,
    P_PARENT,
    P_PID,
    P_PPID,
    P_START,
    P_USER,
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


# --- the alert's evidence is its maps' JSON, written once (rules.alert.EncodedEvidence) -----------
# Text as an attacker writes it: control characters, quotes, backslashes, U+FFFD (what invalid
# UTF-8 decodes to), lone surrogates (what a path with invalid UTF-8 is, surrogate-escaped), emoji,
# and strings past the 512-character cut, so some lists pass the 16 KiB bound and lose entries.
hostile = st.one_of(
    st.text(max_size=40),
    st.text(st.sampled_from(["\x00", "\x1b", "\n", '"', "\\", "\ufffd", "\udcff", "\ud800", "é", "😀", "a"]),
            max_size=40),
    st.builds(lambda piece, n: piece * n, st.sampled_from(["x", "\ufffd", "\udcc3", '"', "😀"]),
              st.integers(400, 3000)),
)
SURROGATE = re.compile("[\ud800-\udfff]")


def reference_maps(events: list[list[Any]]) -> list[dict[str, Any]]:
    """The evidence as the issue words it, plainly: each event's Falco fields (one template of them
    all) without absent values, strings cut at 512 characters, the oldest dropped past 16 KiB."""
    template = compile_output(" ".join(f"%{name}" for name in evidence.FIELDS), suggested=False)
    maps = []
    for ev in events:
        m: dict[str, Any] = {}
        for token, value in zip(template.tokens, template.read(ev), strict=True):
            if value is None:
                continue
            if not isinstance(value, str | int | float):
                value = json_of(value)
            if isinstance(value, str) and len(value) > evidence.MAX_VALUE_CHARS:
                value = value[: evidence.MAX_VALUE_CHARS - 1] + "…"
            m[token.key] = value
        maps.append(m)

    def size(value: object) -> int:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        return len(text.encode("utf-8", "surrogatepass"))

    while size(maps) > evidence.MAX_EVIDENCE_BYTES:
        maps.pop(0)
    return maps


def reference_record(a: Alert, maps: list[dict[str, Any]]) -> bytes:
    """The alert's record written plainly from the issue's contract: Falco's keys, uuid first,
    evidence last, compact JSON in UTF-8, a lone surrogate written as U+FFFD."""
    seconds, nanos = divmod(a.time_ns, 10**9)
    doc: dict[str, Any] = {
        "uuid": a.uuid, "hostname": a.hostname, "output": a.output, "output_fields": a.output_fields,
        "priority": a.priority.label, "rule": a.rule, "source": a.source, "tags": list(a.tags),
        "time": datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{nanos:09d}Z",
    }  # fmt: skip
    if maps:
        doc["evidence"] = maps
    text = json.dumps(doc, ensure_ascii=False, separators=(",", ":"))
    return SURROGATE.sub("\ufffd", text).encode()


@settings(max_examples=60, deadline=None)
@given(
    texts=st.lists(st.tuples(hostile, hostile, hostile, hostile), min_size=1, max_size=40),
    limit=st.integers(1, evidence.EVIDENCE_EVENTS_LIMIT),
    output=hostile,
    huge=st.booleans(),
)
def test_the_alert_with_its_evidence_is_the_plain_encoding_byte_for_byte(
    texts: list[tuple[str, str, str, str]], limit: int, output: str, huge: bool
) -> None:
    # a few process records (a chain), each shared by several events, as in a decoded batch
    procs: list[list[Any]] = []
    for i, (name, arg, path, user) in enumerate(texts[:4]):
        p = proc(100 + i, 99 + i, name, procs[-1] if procs else None)
        p[P_ARGS], p[P_EXEPATH], p[P_USER] = [arg, "-c"], path, user
        procs.append(p)
    events = []
    for num, (_, _, path, _) in enumerate(texts, start=1):
        ev = event(num, procs[num % len(procs)], (EXECVE, OPENAT, CONNECT)[num % 3])
        fd: list[Any] = [None] * FD_LEN
        fd[F_NAME] = path
        ev[EV_FD] = fd if num % 2 else None
        events.append(ev)
    events.append(event(len(events) + 1, procs[-1]))  # the trigger, of the chain's last process
    picked = evidence.select(events[-1], [events], limit)
    rendered = evidence.render(picked)
    assert list(rendered) == reference_maps(picked)
    maps = [dict(m) for m in rendered]
    assert rendered.json == json.dumps(maps, ensure_ascii=False, separators=(",", ":"))
    # past the 256 KiB bound the output is cut (alerts.bound), around the spliced evidence
    fd_name = "p" * 300_000 if huge else texts[-1][2]
    fields: dict[str, FieldValue] = {"evt.time": T0, "proc.name": texts[-1][0], "fd.name": fd_name}
    alert = Alert(T0, "r", Priority.WARNING, output, fields, "node-a", "syscall", ("t", "u"), "u-1", rendered)
    data = wire.encode(alert)
    assert data == wire.encode(dataclasses.replace(alert, evidence=tuple(maps)))  # the maps, written again
    if not huge:
        assert data == reference_record(alert, maps)
    assert len(data) <= wire.MAX_ALERT_BYTES
    assert list(wire.decode(data).evidence) == json.loads(SURROGATE.sub("\ufffd", rendered.json))


def test_an_alert_raised_while_its_node_lost_events_keeps_its_evidence() -> None:
    p = proc(10, 1, "sh")
    maps = evidence.render([event(1, p, EXECVE), event(2, p)])
    alert = Alert(T0, "r", Priority.WARNING, "o", {"evt.time": T0}, "node-a", "syscall", ("t",), "u-1", maps)
    flagged = wire.decode(wire.encode(wire.with_drops(alert, 1, 2, {"ring_full": 3}, 3)))
    assert flagged.evidence == maps and wire.dropped(flagged) == 3
