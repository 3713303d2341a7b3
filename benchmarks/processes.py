"""Stopping the `peregrine` role processes a benchmark started, whatever state they are in."""

from __future__ import annotations

import os
import signal
import subprocess


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM all at once (a clean leave from the consumer group), then SIGKILL stragglers."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(10)


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process and its threads (librdkafka's included)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
