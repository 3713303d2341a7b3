"""Helpers for the root tests: run the collector as a child process and perform real actions.

The collector never traces its own process, so it always runs as a separate process here; the
actions run in the test process or in children it starts.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import termios
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from collectors.capture import read_capture
from collectors.stats import Stats, decode_stats
from collectors.wire import decode_batch
from rules.record import EV_PROC, EVENT_TYPES, P_CONTAINER_ID, P_PARENT, Event

REPO = Path(__file__).resolve().parents[2]
CGROUP2 = Path("/sys/fs/cgroup/unified")
READY = "peregrine collector ready"
START_TIMEOUT_S = 180.0


@dataclass
class Collector:
    """A `peregrine collect|record` child process."""

    args: list[str]
    proc: subprocess.Popen[str] | None = None
    lines: list[str] = field(default_factory=list)
    _ready: threading.Event = field(default_factory=threading.Event)

    def start(self) -> Collector:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "collectors.service", *self.args],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        threading.Thread(target=self._read, daemon=True).start()
        if not self._ready.wait(START_TIMEOUT_S) or self.proc.poll() is not None:
            self.stop()
            raise RuntimeError("collector did not start:\n" + "".join(self.lines[-30:]))
        return self

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)
            if READY in line:
                self._ready.set()
        self._ready.set()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 120.0) -> dict[str, int]:
        """SIGTERM, wait, and return the final summary the collector prints."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        time.sleep(0.1)
        for line in reversed(self.lines):
            if line.startswith('{"collector_final"'):
                final: dict[str, int] = json.loads(line)["collector_final"]
                return final
        raise RuntimeError("collector printed no final summary:\n" + "".join(self.lines[-30:]))

    def log(self) -> str:
        return "".join(self.lines)


def capture_contents(path: str) -> tuple[list[Event], list[Stats]]:
    events: list[Event] = []
    stats: list[Stats] = []
    for frame in read_capture(path):
        if frame.kind == "events":
            events.extend(decode_batch(frame.value).events)
        else:
            stats.append(decode_stats(frame.value))
    return events, stats


def of_type(events: list[Event], name: str) -> list[Event]:
    i = EVENT_TYPES.index(name)
    return [e for e in events if e[0] == i]


def aname(proc: list[object], n: int) -> object:
    """Falco's proc.aname[n]: the n-th ancestor's name (1 = parent)."""
    p: object = proc
    for _ in range(n):
        if p is None:
            return None
        p = p[P_PARENT]  # type: ignore[index]
    return None if p is None else p[2]  # type: ignore[index]


def new_encode_dev(rdev: int) -> int:
    major, minor = os.major(rdev), os.minor(rdev)
    return (minor & 0xFF) | (major << 8) | ((minor & ~0xFF) << 12)


def run_under_pty(argv: list[str], timeout: float = 30.0) -> int:
    """Run argv as a session leader whose controlling terminal is a new pty; returns its tty_nr."""
    master, slave = os.openpty()
    tty_nr = new_encode_dev(os.fstat(slave).st_rdev)

    def take_tty() -> None:
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    try:
        subprocess.run(
            argv, stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
            preexec_fn=take_tty, timeout=timeout, check=True,
        )
    finally:
        os.close(slave)
        os.close(master)
    return tty_nr


def tcp_connect_local() -> tuple[int, int]:
    """Connect to a listener on 127.0.0.1; returns (server port, client port)."""
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        port = srv.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port)) as cli:
            cport = cli.getsockname()[1]
            conn, _ = srv.accept()
            conn.close()
    return port, cport


def container_cgroup(container_id: str, pod_uid: str) -> Path:
    """A cgroup v2 directory laid out as containerd's systemd driver does under kubepods."""
    pod = pod_uid.replace("-", "_")
    path = (
        CGROUP2 / "kubepods.slice" / "kubepods-besteffort.slice" / f"kubepods-besteffort-pod{pod}.slice"
        / f"cri-containerd-{container_id}.scope"
    )
    path.mkdir(parents=True, exist_ok=True)
    return path


def remove_cgroup_tree(top: Path) -> None:
    """rmdir bottom-up (cgroupfs directories cannot be removed recursively by content)."""
    for root, dirs, _ in sorted(os.walk(top), key=lambda t: -t[0].count("/")):
        for d in dirs:
            try:
                os.rmdir(os.path.join(root, d))
            except OSError:
                pass
    try:
        os.rmdir(top)
    except OSError:
        pass


def run_in_cgroup(cgroup: Path, script: str, timeout: float = 30.0) -> None:
    """`sh -c` that first moves itself into `cgroup`, then runs `script`."""
    subprocess.run(
        ["sh", "-c", f"echo $$ > {cgroup}/cgroup.procs && {script}"], timeout=timeout, check=True,
        stdout=subprocess.DEVNULL,
    )


def kubectl_binary(directory: str) -> str:
    """A binary named kubectl (a copy of /bin/true): what the rule matches is the name."""
    path = os.path.join(directory, "kubectl")
    shutil.copy("/bin/true", path)
    os.chmod(path, 0o755)
    return path


def container_ids(events: list[Event]) -> Iterator[str]:
    for e in events:
        yield e[EV_PROC][P_CONTAINER_ID]


def tempdir() -> str:
    return tempfile.mkdtemp(prefix="pg-ebpf-")
