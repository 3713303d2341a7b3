"""fd.types end to end on the real kernel (issue #14 §3): the probe classifies the open fds of
the process at each fd event when, and only when, the loaded rules name fd.types, and a rule on
them fires from a recorded capture.

A child holding an IPv4 socket, a pipe and an eventfd (its standard fds on /dev/null) opens a
file: the rule `fd.types intersects (ipv4, pipe)` fires for it with the types libs would list,
`fd.types[N]` names each fd's type, and a rule asking for types it does not hold stays silent;
a second child holding the other kinds libs names (unix, netlink, ipv6, inotify, memfd,
eventpoll, directory) fires that rule, with each fd classified as libs' /proc scan does. Rules that
start reading fd.types get the table from the running probe.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from collector_actions import Collector, capture_contents, of_type

import rules
from rules.record import EV_FDTYPES, EV_PROC, FDTYPE_NAMES, LEGACY_EVENT_LEN, P_ARGS, Event

pytestmark = [pytest.mark.root, pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]

PYTHON = "/usr/bin/python3"
HOLDS = "Peregrine test - fd.types holds a socket and a pipe"
OTHERS = "Peregrine test - fd.types holds a netlink, inotify or memfd fd"
RULES = f"""
- rule: {HOLDS}
  desc: an opener holding an IPv4 socket or a pipe
  condition: evt.type = openat and fd.name = /etc/hostname and fd.types intersects (ipv4, pipe)
  output: >-
    types=%fd.types socket=%fd.types[3] pipe=%fd.types[4] event=%fd.types[6] gone=%fd.types[9]
    cmd=%proc.cmdline
  priority: NOTICE
- rule: {OTHERS}
  desc: an opener holding fds the first child does not hold
  condition: evt.type = openat and fd.name = /etc/hostname and fd.types intersects (netlink, inotify, memfd)
  output: types=%fd.types cmd=%proc.cmdline
  priority: NOTICE
"""
# fds 0-2 on /dev/null; 3 the socket, 4-5 the pipe, 6 the eventfd, 7 the file opened
CHILD = (
    "import os, socket\n"
    "s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)\n"
    "r, w = os.pipe()\n"
    "e = os.eventfd(0)\n"
    "assert (s.fileno(), r, w, e) == (3, 4, 5, 6), (s.fileno(), r, w, e)\n"
    "open('/etc/hostname').close()\n"
)
# the second child: the other kinds libs names, from fd 3 on
OTHER_KINDS = ["unix", "netlink", "ipv6", "inotify", "memfd", "eventpoll", "directory"]
OTHER_CHILD = (
    "import ctypes, os, select, socket\n"
    "kept = [socket.socket(socket.AF_UNIX), socket.socket(socket.AF_NETLINK, socket.SOCK_RAW),\n"
    "        socket.socket(socket.AF_INET6), ctypes.CDLL(None).inotify_init1(0), os.memfd_create('pg'),\n"
    "        select.epoll(), os.open('/tmp', os.O_RDONLY)]\n"
    "fds = [k if isinstance(k, int) else k.fileno() for k in kept]\n"
    "assert fds == list(range(3, 10)), fds\n"
    "open('/etc/hostname').close()\n"
)


def _ours(events: list[Event], marker: str) -> list[Event]:
    return [e for e in events if marker in " ".join(e[EV_PROC][P_ARGS])]


def test_a_socket_a_pipe_and_an_eventfd_make_the_fd_types_rule_fire(tmp_path: Path) -> None:
    rules_file = tmp_path / "fdtypes.yaml"
    rules_file.write_text(RULES)
    marker = f"pgfdtypes{os.getpid()}"
    out = tmp_path / "fdtypes.cap"
    collector = Collector(["record", "--out", str(out), "--rules", str(rules_file)]).start()
    try:
        for script, tag in ((CHILD, "one"), (OTHER_CHILD, "two")):
            subprocess.run([PYTHON, "-c", script + f"# {marker} {tag}\n"], check=True, close_fds=True,
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    finally:
        collector.stop()
    events, _ = capture_contents(str(out))
    ours = _ours(events, marker)
    first = ["file", "file", "file", "ipv4", "pipe", "pipe", "event", "file"]
    assert _last_table(_ours(ours, " one"))[:8] == first
    assert _last_table(_ours(ours, " two"))[:11] == ["file", "file", "file", *OTHER_KINDS, "file"]
    assert all(len(e) == LEGACY_EVENT_LEN for e in of_type(ours, "execve")), "no fd fields on exec"

    ruleset = rules.load([rules_file], all_matches=True)
    alerts = [rules.build_alert(rule, ev) for ev, rule in ruleset.evaluate(ours)]
    fired = [str(a["output"]) for a in alerts if a["rule"] == HOLDS]
    assert len(fired) == 1 and " one" in fired[0], alerts
    assert "types=(file,ipv4,pipe,event) socket=(ipv4) pipe=(pipe) event=(event) gone=<NA> cmd=" in fired[0]
    others = [str(a["output"]) for a in alerts if a["rule"] == OTHERS]
    assert len(others) == 1 and " two" in others[0], "the first child holds none of them; the second does"
    assert "types=(file,unix,netlink,ipv6,inotify,memfd,eventpoll,directory) " in others[0]


def _last_table(events: list[Event]) -> list[str | None]:
    """The type names of the fd table of the last open that carries one."""
    opens = [e for e in of_type(events, "openat") if len(e) > EV_FDTYPES and e[EV_FDTYPES] is not None]
    assert opens, "the opens carry the fd table"
    return [FDTYPE_NAMES[c - 1] if c else None for c in opens[-1][EV_FDTYPES]]


PLAIN = f"""
- rule: {HOLDS}
  desc: the same opens, without fd.types
  condition: evt.type = openat and fd.name = /etc/hostname
  output: cmd=%proc.cmdline
  priority: NOTICE
"""


def test_rules_that_start_reading_fd_types_get_the_table_without_a_reload(tmp_path: Path) -> None:
    """The walk is compiled into the fd events' programs and run only while the interest asks
    (PG_IM_FDTABLE): rules that start reading fd.types get the table from the next event on, from
    the same probe (a SIGHUP, as a worker's record on peregrine.control would)."""
    rules_file = tmp_path / "fdtypes.yaml"
    rules_file.write_text(PLAIN)
    marker = f"pgfdswitch{os.getpid()}"
    out = tmp_path / "switch.cap"
    collector = Collector(["record", "--out", str(out), "--rules", str(rules_file)]).start()

    def child(tag: str) -> None:
        subprocess.run([PYTHON, "-c", CHILD + f"# {marker} {tag}\n"], check=True, close_fds=True,
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    try:
        child("before")
        rules_file.write_text(RULES)
        assert collector.proc is not None
        collector.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 30
        while "interest applied" not in collector.log() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "interest applied" in collector.log(), collector.log()[-2000:]
        child("after")
    finally:
        collector.stop()
    events, _ = capture_contents(str(out))
    ours = _ours(events, marker)
    before = of_type(_ours(ours, " before"), "openat")
    assert before and all(len(e) == LEGACY_EVENT_LEN for e in before), "no table while no rule reads fd.types"
    first = ["file", "file", "file", "ipv4", "pipe", "pipe", "event", "file"]
    assert _last_table(_ours(ours, " after"))[:8] == first
