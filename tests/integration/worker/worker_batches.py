"""Event batches for the worker tests and benchmarks, and a one-rule stand-in for the rule engine.

`make_batch` builds a realistic-looking wire batch: a container with runc -> nginx doing file opens,
and, every ``shell_every`` events, ``bash`` spawned with a terminal (the event Falco's "Terminal
shell in container" rule fires on). `expected_shells` says which events those are.

`StandInEngine` is NOT the rule engine: it is one hard-coded rule ("execve by bash with a tty")
with a Falco-shaped alert, so the Kafka plumbing tests (dead letters, two workers, kill -9,
exactly-once) measure the worker and not the compiler. Tests that check real rules use
`rules.load` with Falco's files. `standin_worker_main` runs `streams.worker.run` with it, as a
subprocess entry point: ``python worker_batches.py <peregrine worker flags>``.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from alerts.wire import Alert, from_json_dict
from collectors.wire import Batch, Drops, encode_batch
from rules.interest import FieldInterest, TypeInterest
from rules.output import iso_time
from rules.record import (
    EV_NUM,
    EV_PROC,
    EV_TID,
    EV_TS,
    EVENT_LEN,
    P_ARGS,
    P_CONTAINER_ID,
    P_NAME,
    P_NODE,
    P_PARENT,
    P_TTY,
    PROCESS_LEN,
    event_type_id,
)

T0 = 1_780_000_000_000_000_000
EXECVE = event_type_id("execve")
OPENAT = event_type_id("openat")
STANDIN_RULE = "Stand-in: terminal shell"


def container_id(node: str) -> str:
    return uuid.uuid5(uuid.NAMESPACE_DNS, node).hex + uuid.uuid5(uuid.NAMESPACE_URL, node).hex


def _proc(
    pid: int, ppid: int, name: str, args: list[str], tty: int, cid: str, parent: int, node: str,
    start_ns: int = T0,
) -> list[Any]:
    p: list[Any] = [None] * PROCESS_LEN
    p[0:27] = [
        pid, ppid, name, name, f"/usr/bin/{name}", args, "/", tty, 0, 0, "root", "root", -1, None, pid, name,
        pid, pid, start_ns, 0, 0, 0, 0, None, None, None, cid,
    ]
    p[P_PARENT] = parent
    p[P_NODE] = node
    return p


def make_batch(
    node: str, seq: int, n_events: int, shell_every: int = 0, boot_id: str = "boot-1",
    shell_args: list[str] | None = None, proc_node: str | None = None, drops: Drops | None = None,
    start_ns: int = T0,
) -> bytes:
    """One batch; event numbers are ``seq * n_events + i + 1`` so they are unique per node.
    ``shell_args`` are the shell's arguments (they reach the stand-in alert's output); ``proc_node``
    is what the process records claim as their node (the envelope's by default); ``start_ns`` is
    when the processes started (long before the tests run by default: not new containers)."""
    cid = container_id(node)
    pnode = node if proc_node is None else proc_node
    procs = [
        _proc(100, 1, "runc", ["init"], 0, cid, -1, pnode, start_ns),
        _proc(101, 100, "nginx", ["-g", "daemon off;"], 0, cid, 0, pnode, start_ns),
        _proc(102, 100, "bash", shell_args or ["-il"], 34816, cid, 0, pnode, start_ns),
    ]
    events = []
    base = seq * n_events
    for i in range(n_events):
        num = base + i + 1
        ev: list[Any] = [None] * EVENT_LEN
        if shell_every and num % shell_every == 0:
            args = [0, "/bin/bash", ["-il"], 102, 102, 100, "/", 34816, -1, 0, 0, 0, 0, 0, 0, "/usr/bin/bash"]
            ev[:] = [EXECVE, T0 + num, 102, 2, 0, args, None, num]
        else:
            fd = [7, "f", "/etc/nginx/nginx.conf", "nginx.conf", *[None] * 5, False, False, False]
            ev[:] = [OPENAT, T0 + num, 101, 1, 7, [7, -100, "/etc/nginx/nginx.conf", 0, 0, 0, 0], fd, num]
        events.append(ev)
    batch = Batch(node, boot_id, seq, T0 + base, T0 + base + n_events, procs, events, drops=drops)
    return encode_batch(batch)


def expected_shells(node: str, seqs: Iterable[int], n_events: int, shell_every: int) -> set[tuple[str, int]]:
    """(node, evt.num) of every event the stand-in rule fires on."""
    out = set()
    for seq in seqs:
        for i in range(n_events):
            num = seq * n_events + i + 1
            if shell_every and num % shell_every == 0:
                out.add((node, num))
    return out


class StandInRuleset:
    gated = True  # nothing to gate: no warning about a missing C gate

    def __init__(self, shells: frozenset[str] = frozenset({"bash"})) -> None:
        # what its rule needs, as `rules.interest` says it: execs of these (a wider set is sound)
        names = FieldInterest("proc.name", shells, frozenset(), frozenset(), frozenset())
        self.interest = {"execve": TypeInterest("execve", (names,))}

    def gate_counts(self) -> tuple[int, int]:
        return 0, 0  # no batch gate: every event reaches the stand-in rule

    def evaluate(self, events: list[list[Any]]) -> list[tuple[list[Any], str]]:
        return [(ev, STANDIN_RULE) for ev in events if ev[0] == EXECVE and ev[EV_PROC][P_NAME] == "bash"
                and ev[EV_PROC][P_TTY] != 0]


def standin_load(
    paths: list[str], *, all_matches: bool = False, ip_names: dict[str, str] | None = None
) -> StandInRuleset:  # one rule: first and all matches are the same
    shells = {"bash"}
    for p in paths:
        text = Path(p).read_text()
        if "invalid" in text:
            raise ValueError(f"{p}:1: stand-in rules file marked invalid")
        # "# shells: zsh fish" widens the stand-in's interest (not its rule): a reload that changes it
        shells.update(word for line in text.splitlines() if line.startswith("# shells:")
                      for word in line.split()[2:])  # fmt: skip
    return StandInRuleset(frozenset(shells))


def standin_alert(rule: str, ev: list[Any]) -> Alert:
    proc = ev[EV_PROC]
    node = proc[P_NODE]
    cid = proc[P_CONTAINER_ID][:12]
    return from_json_dict({
        "hostname": node,
        "output": f"Notice A shell was spawned (proc.name={proc[P_NAME]} container.id={cid} "
                  f"proc.args={' '.join(proc[P_ARGS])})",
        "output_fields": {"evt.time": ev[EV_TS], "evt.num": ev[EV_NUM], "proc.name": proc[P_NAME],
                          "container.id": cid, "k8s.pod.name": None},
        "priority": "Notice",
        "rule": rule,
        "source": "syscall",
        "tags": ["container", "shell"],
        "time": iso_time(ev[EV_TS]),  # the one form alerts.wire accepts
        "uuid": str(uuid.uuid5(uuid.NAMESPACE_OID, f"{node}/{ev[EV_TS]}/{ev[EV_TID]}/{ev[EV_NUM]}/{rule}")),
    })


def standin_worker_main(argv: list[str]) -> int:
    from streams.config import from_args
    from streams.reload import RulesEngine
    from streams.worker import run

    return run(from_args(argv), RulesEngine(load=standin_load, build_alert=standin_alert))


if __name__ == "__main__":
    raise SystemExit(standin_worker_main(sys.argv[1:]))
