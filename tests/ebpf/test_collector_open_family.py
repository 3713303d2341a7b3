"""Open-family syscalls beyond open/openat/openat2/creat, and close, proven on the real kernel
(issue #14 §1 and §3).

open_by_handle_at names no path: as libs does, the probe takes the path the kernel gives the new
fd (its f_path, walked as the working directory is), so fd.name and evt.arg.path are that file's
absolute path. A rule naming the syscall fires end to end, and so does `evt.type startswith open`.

open_tree and open_tree_attr are libs' generic events (the PPM_SC code and the syscall number,
no return value), as are personality and syncfs: one probe program serves every generic syscall,
attached only to those the rules name. close carries what the fd referred to, walked at
sys_enter_close.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from collector_actions import Collector, capture_contents, of_type

import rules
from rules.libs_event_table import GENERIC_SYSCALLS
from rules.record import (
    EV_ARGS,
    EV_FD,
    EV_PROC,
    EV_RES,
    EVENT_PARAM_INDEX,
    EVENT_TYPE_IDS,
    F_NAME,
    F_NUM,
    F_TYPECHAR,
    P_ARGS,
)

pytestmark = [pytest.mark.root, pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]

PYTHON = "/usr/bin/python3"
BY_HANDLE = "Peregrine test - open_by_handle_at"
STARTSWITH = "Peregrine test - evt.type startswith open"
RULES = """
- rule: {by_handle}
  desc: a file opened through a handle
  condition: evt.type = open_by_handle_at and fd.name = /etc/hostname and proc.cmdline contains {marker}
  output: by handle file=%fd.name path=%evt.arg.path
  priority: WARNING
- rule: {startswith}
  desc: every open-family call
  condition: evt.type startswith open and fd.name = /etc/hostname and proc.cmdline contains {marker}
  output: open family %evt.type file=%fd.name
  priority: WARNING
"""
# name_to_handle_at then open_by_handle_at (needs CAP_DAC_READ_SEARCH: root)
SCRIPT = """
import ctypes, os, struct
libc = ctypes.CDLL(None, use_errno=True)
handle = ctypes.create_string_buffer(8 + 128)
struct.pack_into("I", handle, 0, 128)
mount_id = ctypes.c_int()
assert libc.name_to_handle_at(-100, b"/etc/hostname", handle, ctypes.byref(mount_id), 0) == 0
mount_fd = os.open("/etc", os.O_RDONLY)
fd = libc.open_by_handle_at(mount_fd, handle, os.O_RDONLY)
assert fd >= 0, ctypes.get_errno()
os.close(fd)
"""


def test_open_by_handle_at_names_the_opened_file_and_fires_its_rules(tmp_path: Path) -> None:
    marker = f"pgohat{os.getpid()}"
    rule_file = tmp_path / "rules.yaml"
    rule_file.write_text(RULES.format(by_handle=BY_HANDLE, startswith=STARTSWITH, marker=marker))
    out = tmp_path / "ohat.cap"
    collector = Collector(["record", "--out", str(out), "--rules", str(rule_file)]).start()
    try:
        subprocess.run([PYTHON, "-c", SCRIPT + f"# {marker}\n"], check=True)
    finally:
        collector.stop()
    events, _ = capture_contents(str(out))
    ours = [e for e in of_type(events, "open_by_handle_at") if marker in " ".join(e[EV_PROC][P_ARGS])]
    assert len(ours) == 1
    ev = ours[0]
    params = EVENT_PARAM_INDEX[EVENT_TYPE_IDS["open_by_handle_at"]]
    assert ev[EV_FD] is not None and ev[EV_FD][F_NAME] == "/etc/hostname" and ev[EV_FD][F_TYPECHAR] == "f"
    assert ev[EV_ARGS][params["path"]] == "/etc/hostname"
    assert ev[EV_ARGS][params["fd"]] >= 0

    ruleset = rules.load([rule_file], all_matches=True)
    alerts = [rules.build_alert(rule, e) for e, rule in ruleset.evaluate(events)]
    by_handle = [a for a in alerts if a["rule"] == BY_HANDLE]
    assert len(by_handle) == 1 and "path=/etc/hostname" in str(by_handle[0]["output"])
    family = [str(a["output"]) for a in alerts if a["rule"] == STARTSWITH]
    assert any("open family open_by_handle_at file=/etc/hostname" in o for o in family), family


CLOSE = "Peregrine test - close"
OPEN_TREE = "Peregrine test - open_tree"
GENERIC = "Peregrine test - generic syscalls"
CLOSE_RULES = """
- rule: {close}
  desc: a file under /tmp/x closed
  condition: evt.type = close and fd.name startswith /tmp/x and proc.cmdline contains {marker}
  output: closed file=%fd.name num=%fd.num type=%fd.typechar res=%evt.res raw=%evt.rawres by=%proc.name
  priority: WARNING
- rule: {open_tree}
  desc: a mount tree opened
  condition: evt.type in (open_tree, open_tree_attr) and proc.cmdline contains {marker}
  output: >-
    tree %evt.type id=%evt.arg.ID raw=%evt.rawarg.ID native=%evt.arg.nativeID res=%evt.res
    args=[%evt.args]
  priority: WARNING
- rule: {startswith}
  desc: every open-family call
  condition: evt.type startswith open and proc.cmdline contains {marker}
  output: open family %evt.type
  priority: WARNING
- rule: {generic}
  desc: two syscalls libs sends as its generic event
  condition: evt.type in (personality, syncfs) and proc.cmdline contains {marker}
  output: >-
    generic %evt.type id=%evt.arg.ID raw=%evt.rawarg.ID native=%evt.arg.nativeID res=%evt.res
    args=[%evt.args]
  priority: WARNING
"""
# The file, the directory, a closed-twice fd (EBADF), and the O_PATH fds of open_tree and
# open_tree_attr(AT_FDCWD, dir, 0, NULL, 0), each closed by its last reference
CLOSE_SCRIPT = """
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
top = sys.argv[1]
fd = os.open(top + "/f", os.O_CREAT | os.O_WRONLY, 0o600)
os.unlink(top + "/f")
os.close(fd)
dfd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
os.close(dfd)
try:
    os.close(fd)
except OSError:
    pass
for nr, extra in ((428, ()), (467, (None, 0))):
    t = libc.syscall(nr, -100, top.encode(), 0, *extra)
    assert t >= 0, (nr, ctypes.get_errno())
    os.close(t)
# personality(0xffffffff) only reads the persona; getppid is generic too, but no rule names it
assert libc.syscall(135, 0xFFFFFFFF) >= 0 and libc.syscall(306, 4000) == -1 and os.getppid()
sfd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
assert libc.syscall(306, sfd) == 0, ctypes.get_errno()
os.close(sfd)
print(fd, dfd)
"""


def test_close_open_tree_and_generic_syscalls_fire_their_rules_with_libs_fields(tmp_path: Path) -> None:
    marker = f"pgclose{os.getpid()}"
    top = Path(f"/tmp/x{marker}")
    top.mkdir()
    rule_file = tmp_path / "rules.yaml"
    rule_file.write_text(CLOSE_RULES.format(close=CLOSE, open_tree=OPEN_TREE, startswith=STARTSWITH,
                                            generic=GENERIC, marker=marker))  # fmt: skip
    out = tmp_path / "close.cap"
    collector = Collector(["record", "--out", str(out), "--rules", str(rule_file)]).start()
    try:
        done = subprocess.run([PYTHON, "-c", CLOSE_SCRIPT + f"# {marker}\n", str(top)], check=True,
                              capture_output=True, text=True)  # fmt: skip
    finally:
        collector.stop()
        top.rmdir()
    fd, dfd = (int(n) for n in done.stdout.split())
    events, _ = capture_contents(str(out))
    ours = [e for e in events if marker in " ".join(e[EV_PROC][P_ARGS])]

    closes = {(e[EV_FD][F_NUM], e[EV_FD][F_NAME], e[EV_FD][F_TYPECHAR], e[EV_RES], tuple(e[EV_ARGS]))
              for e in of_type(ours, "close") if e[EV_FD][F_NAME] is None or str(top) in e[EV_FD][F_NAME]}
    assert (fd, f"{top}/f", "f", 0, (0, fd)) in closes  # unlinked before the close, named as opened
    assert (dfd, str(top), "d", 0, (0, dfd)) in closes
    assert (fd, None, None, -9, (-9, fd)) in closes  # EBADF: fd.num only, as libs without an entry
    for name in ("open_tree", "open_tree_attr"):
        (tree,) = of_type(ours, name)
        assert tree[EV_ARGS] == list(GENERIC_SYSCALLS[name]) and tree[EV_RES] is None and tree[EV_FD] is None
    assert [e[EV_ARGS] for e in of_type(ours, "syncfs")] == [list(GENERIC_SYSCALLS["syncfs"])] * 2
    assert of_type(ours, "getppid") == []  # attached only where a rule asks

    ruleset = rules.load([rule_file], all_matches=True)
    alerts = [rules.build_alert(rule, e) for e, rule in ruleset.evaluate(events)]
    closed = sorted(_said(a) for a in alerts if a["rule"] == CLOSE)
    assert closed == sorted([
        f"closed file={top}/f num={fd} type=f res=SUCCESS raw=0 by=python3",
        f"closed file={top} num={dfd} type=d res=SUCCESS raw=0 by=python3",
        f"closed file={top} num={dfd} type=d res=SUCCESS raw=0 by=python3",  # open_tree's fd
        f"closed file={top} num={dfd} type=d res=SUCCESS raw=0 by=python3",  # open_tree_attr's
        f"closed file={top} num={dfd} type=d res=SUCCESS raw=0 by=python3",  # the one syncfs syncs
    ]), closed
    trees = sorted(_said(a) for a in alerts if a["rule"] == OPEN_TREE)
    assert trees == [
        "tree open_tree id=open_tree raw=339 native=428 res=<NA> args=[]",
        "tree open_tree_attr id=open_tree_attr raw=448 native=467 res=<NA> args=[]",
    ], trees
    personality = GENERIC_SYSCALLS["personality"][0]
    syncfs = GENERIC_SYSCALLS["syncfs"][0]
    assert [_said(a) for a in alerts if a["rule"] == GENERIC] == [
        f"generic personality id=personality raw={personality} native=135 res=<NA> args=[]",
        f"generic syncfs id=syncfs raw={syncfs} native=306 res=<NA> args=[]",  # EBADF: no result to tell
        f"generic syncfs id=syncfs raw={syncfs} native=306 res=<NA> args=[]",
    ]
    family = {_said(a).rsplit(" ", 1)[1] for a in alerts if a["rule"] == STARTSWITH}
    assert {"openat", "open_tree", "open_tree_attr"} <= family, family


def _said(alert: dict[str, object]) -> str:
    """The rule's own output text: after the priority, before the container fields Falco appends."""
    return str(alert["output"]).split(" Warning ", 1)[1].split(" container_id=", 1)[0]
