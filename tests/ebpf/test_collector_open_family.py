"""Open-family syscalls beyond open/openat/openat2/creat, proven on the real kernel (issue #14 §1).

open_by_handle_at names no path: as libs does, the probe takes the path the kernel gives the new
fd (its f_path, walked as the working directory is), so fd.name and evt.arg.path are that file's
absolute path. A rule naming the syscall fires end to end, and so does `evt.type startswith open`.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from collector_actions import Collector, capture_contents, of_type

import rules
from rules.record import (
    EV_ARGS,
    EV_FD,
    EV_PROC,
    EVENT_PARAM_INDEX,
    EVENT_TYPE_IDS,
    F_NAME,
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
