"""Daemons of the local cluster: started in their own session, waited for, stopped (SIGTERM, then
SIGKILL); and the small probes and tools every part uses."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devtools.errors import DevtoolsError

CACHE = Path(os.environ.get("PEREGRINE_CACHE", Path.home() / ".cache" / "peregrine"))
READY_TIMEOUT_S = 120.0


class KubeError(DevtoolsError):
    """A component of the local cluster is missing, did not start, or did not become ready."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def binary(name: str) -> Path:
    path = CACHE / name
    if not path.exists():
        raise KubeError(f"no {name} at {path}: run ./scripts/setup (scripts/setup.d/55-kube-node.sh)")
    return path


@dataclass
class Proc:
    """A daemon we started: a child (`popen`) or, after `scripts/cluster up`, a pid from the state
    file, told apart from a recycled pid by its start time."""

    name: str
    pid: int
    started: str
    log: str
    popen: subprocess.Popen[bytes] | None = field(default=None, repr=False, compare=False)

    def alive(self) -> bool:
        if self.popen is not None:
            return self.popen.poll() is None
        return _start_time(self.pid) == self.started

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return Path(self.log).read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    def state(self) -> dict[str, Any]:
        return {"name": self.name, "pid": self.pid, "started": self.started, "log": self.log}


def _start_time(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    fields = stat.rsplit(")", 1)[1].split()
    return "" if fields[0] == "Z" else fields[19]


def launch(name: str, cmd: Sequence[str | Path], log: Path, env: Mapping[str, str] | None = None) -> Proc:
    # own session: a Ctrl-C in the terminal of `scripts/cluster up` must not reach the daemons
    with log.open("ab") as out:
        popen = subprocess.Popen(
            [str(c) for c in cmd], stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            env=dict(env) if env is not None else None,
        )
    return Proc(name, popen.pid, _start_time(popen.pid), str(log), popen)


def terminate(procs: Sequence[Proc], timeout: float = 30.0) -> None:
    """SIGTERM all, then SIGKILL what is left after the timeout."""
    live = [p for p in procs if p.alive()]
    for p in live:
        with contextlib.suppress(ProcessLookupError):
            os.kill(p.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for p in live:
        while p.alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        if p.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(p.pid, signal.SIGKILL)
            while p.alive():
                time.sleep(0.05)
        if p.popen is not None:
            p.popen.wait()


def wait_for(proc: Proc, probe: Callable[[], bool], timeout: float = READY_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise KubeError(f"{proc.name} exited; log {proc.log}:\n{proc.log_tail()}")
        if probe():
            return
        time.sleep(0.2)
    raise KubeError(f"{proc.name} not ready in {timeout:.0f}s; log {proc.log}:\n{proc.log_tail()}")


def https_ok(url: str, token: str | None = None) -> bool:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        req = urllib.request.Request(url, headers=headers)
        with urllib.request.urlopen(req, timeout=5, context=ctx) as r:
            return bool(r.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def openssl(*args: str) -> None:
    done = subprocess.run(["openssl", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise KubeError(f"openssl {' '.join(args)} failed: {done.stderr}")

