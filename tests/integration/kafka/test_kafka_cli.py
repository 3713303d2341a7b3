"""`peregrine kafka up|down|status` drives a real broker and explains what is missing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.kafka


def _peregrine(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cli.main", *args], capture_output=True, text=True,
                          timeout=180, env=env, check=False)


def test_up_status_down_cycle_keeps_data_directory(tmp_path: Path) -> None:
    d = str(tmp_path / "kafka")
    up = _peregrine("kafka", "up", "--dir", d, "--port", "0", "--heap", "512m")
    try:
        assert up.returncode == 0, up.stderr
        assert "Kafka up: bootstrap 127.0.0.1:" in up.stdout
        status = _peregrine("kafka", "status", "--dir", d)
        assert status.returncode == 0 and "Kafka is up" in status.stdout
        again = _peregrine("kafka", "up", "--dir", d)
        assert again.returncode == 0 and "already running" in again.stdout
    finally:
        down = _peregrine("kafka", "down", "--dir", d)
    assert down.returncode == 0 and "Kafka stopped" in down.stdout
    status = _peregrine("kafka", "status", "--dir", d)
    assert status.returncode == 3 and "down" in status.stdout
    assert (tmp_path / "kafka" / "node1" / "server.properties").exists()


def test_missing_jars_are_explained(tmp_path: Path) -> None:
    env = {**os.environ, "PEREGRINE_CACHE": str(tmp_path / "empty-cache")}
    env.pop("PEREGRINE_KAFKA_LIBS", None)
    out = _peregrine("kafka", "up", "--dir", str(tmp_path / "k"), "--port", "0", env=env)
    assert out.returncode == 1
    assert "run ./scripts/setup" in out.stderr


def test_missing_java_is_explained(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": str(tmp_path)}  # nothing on PATH: no java
    out = _peregrine("kafka", "up", "--dir", str(tmp_path / "k"), "--port", "0", env=env)
    assert out.returncode == 1
    assert "java not found" in out.stderr


def test_unknown_command_lists_the_roles() -> None:
    out = _peregrine("frobnicate")
    assert out.returncode == 2
    assert "collect" in out.stderr and "worker" in out.stderr and "sink" in out.stderr
