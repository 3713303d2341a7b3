"""Process context in events against /proc, over a fork/exec storm of processes in varied states.

Every storm process ends in `sleep` and stays alive until /proc has been read, so each event of its
final image is checkable: ppid, tty, loginuid and effective uid in the event's process record must
equal /proc. Variants: a direct exec, a child of a shell, another uid (setpriv), a loginuid set by
the process itself, and a session on a pty. The match rate is printed and must be 100%.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import termios
import time

import pytest
from collector_actions import Collector, capture_contents

from rules.record import EV_PROC, P_LOGINUID, P_NAME, P_PID, P_PPID, P_TTY, P_UID

pytestmark = [pytest.mark.root, pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]

ROUNDS = 40  # x 5 variants = 200 processes, plus the shells and setpriv execs in front of them


def _take_tty() -> None:
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def _spawn_storm(seconds: int) -> tuple[list[subprocess.Popen[bytes]], list[int]]:
    procs: list[subprocess.Popen[bytes]] = []
    ptys: list[int] = []
    sleep = f"sleep {seconds}"
    for i in range(ROUNDS):
        procs.append(subprocess.Popen(["sh", "-c", f"exec {sleep}"]))
        procs.append(subprocess.Popen(["sh", "-c", f"{sleep}; true"]))
        procs.append(subprocess.Popen(["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups",
                                       "sleep", str(seconds)]))
        procs.append(subprocess.Popen(["sh", "-c", f"echo {4000 + i} > /proc/self/loginuid; exec {sleep}"]))
        master, slave = os.openpty()
        ptys += [master, slave]
        procs.append(subprocess.Popen(["sh", "-c", f"exec {sleep}"], stdin=slave, stdout=slave, stderr=slave,
                                      start_new_session=True, preexec_fn=_take_tty))
    return procs, ptys


def _proc_context(pid: int) -> tuple[int, int, int, int] | None:
    """(ppid, tty_nr, loginuid, euid) from /proc, or None when gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
        with open(f"/proc/{pid}/status") as f:
            uid = next(int(line.split()[2]) for line in f if line.startswith("Uid:"))
        with open(f"/proc/{pid}/loginuid") as f:
            loginuid = int(f.read())
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[1]), int(fields[4]), -1 if loginuid == 0xFFFFFFFF else loginuid, uid


def _sleep_pids() -> list[int]:
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/comm") as f:
                    if f.read().strip() == "sleep":
                        out.append(int(name))
            except OSError:
                pass
    return out


def test_process_context_matches_proc_for_every_event_of_a_storm(tmp_path: object) -> None:
    out = f"{tmp_path}/storm.cap"
    collector = Collector(["record", "--out", out]).start()
    procs: list[subprocess.Popen[bytes]] = []
    ptys: list[int] = []
    try:
        procs, ptys = _spawn_storm(60)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(_sleep_pids()) < len(procs):
            time.sleep(0.2)
        time.sleep(0.5)  # let every sleep finish its start-up syscalls
        truth = {pid: ctx for pid in _sleep_pids() if (ctx := _proc_context(pid)) is not None}
        assert collector.alive()
    finally:
        final = collector.stop()
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()
        for fd in ptys:
            os.close(fd)
    events, _ = capture_contents(out)
    checked = matched = 0
    mismatches = []
    seen_pids = set()
    for ev in events:
        p = ev[EV_PROC]
        want = truth.get(p[P_PID])
        if want is None or p[P_NAME] != "sleep":
            continue
        checked += 1
        seen_pids.add(p[P_PID])
        got = (p[P_PPID], p[P_TTY], p[P_LOGINUID], p[P_UID])
        if got == want:
            matched += 1
        elif len(mismatches) < 5:
            mismatches.append((p[P_PID], got, want))
    rate = matched / checked if checked else 0.0
    print(f"\nprocess context vs /proc: {matched}/{checked} events match ({rate:.2%}) "
          f"over {len(seen_pids)} processes; drops {final['ring_full']}")
    assert final["ring_full"] == 0
    assert len(seen_pids) >= 5 * ROUNDS, "every storm process has checkable events"
    assert {w[1] != 0 for w in truth.values()} == {True, False}, "the storm has pty and non-pty processes"
    assert {w[3] for w in truth.values()} >= {0, 65534}
    assert matched == checked, f"mismatches (pid, event, /proc): {mismatches}"
