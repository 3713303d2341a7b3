"""`peregrine collect`'s Kubernetes probes on the real kernel: ``/readyz`` is 503 until the probe is
loaded and attached, then 200 (Kafka need not be reachable: the collector captures and buffers
meanwhile), and ``/livez`` stays 200 while the capture loop runs."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest
from collector_actions import REPO, START_TIMEOUT_S
from http_probe import probe

pytestmark = [pytest.mark.root, pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_collector_is_ready_once_attached_and_live_while_capturing() -> None:
    port, kafka = _free_port(), _free_port()  # nothing listens on `kafka`
    env = {**os.environ, "PEREGRINE_METRICS_PORT": str(port), "PEREGRINE_METRICS_ADDR": "127.0.0.1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "collect", "--bootstrap", f"127.0.0.1:{kafka}",
         "--event-types", "openat"],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    answers: list[tuple[int, str]] = []
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline and proc.poll() is None:
            answer = probe(port, "/readyz")
            if not answers or answers[-1] != answer:
                answers.append(answer)
            if answer[0] == 200:
                break
            time.sleep(0.1)
        assert proc.poll() is None, "collector exited"
        assert answers[-1] == (200, "ok\n"), answers
        # before attaching, the server was up and said what it waited for (the BPF build takes seconds)
        assert (503, "waiting: probe (not loaded and attached yet)\n") in answers, answers
        time.sleep(2)
        assert probe(port, "/livez") == (200, "ok\n")
    finally:
        # killed, not stopped: with no broker, a clean stop waits out its final flush for nothing
        proc.kill()
        proc.wait()
