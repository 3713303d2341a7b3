"""Running the image under podman in tests/image (helpers; the fixtures are in conftest.py).

How podman has to run on this machine (all explicit, so no host configuration is needed):
- no systemd: cgroupfs as cgroup manager and a file events log;
- runc, not crun: the kernel mounts cgroup v1 with the hugetlb controller left on the v2 hierarchy
  ("hybrid"), which crun 1.8 refuses ("cgroups in hybrid mode not supported");
- rlimits at or below the host's: root here lacks CAP_SYS_RESOURCE, so podman's defaults
  (nofile 1048576, nproc) cannot be set ("setrlimit RLIMIT_NOFILE: Operation not permitted").
"""

from __future__ import annotations

import json
import resource
import subprocess
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PODMAN = ["podman", "--cgroup-manager=cgroupfs", "--events-backend=file", "--runtime=runc"]
_NOFILE = resource.getrlimit(resource.RLIMIT_NOFILE)
ULIMITS = [f"--ulimit=nofile={_NOFILE[0]}:{_NOFILE[1]}", "--ulimit=nproc=32768:32768"]
PREFIX = "/opt/peregrine"
SITE = f"{PREFIX}/venv/lib/python3.11/site-packages"
RULES = f"{PREFIX}/rules"
IMAGE_USER = "10001:10001"


def podman(*args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([*PODMAN, *args], capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise AssertionError(
            f"podman {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
        )
    return done


def run(
    image: str, *args: str, options: Sequence[str] = (), timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """`podman run --rm` of the image with `args` after the entrypoint (`peregrine`)."""
    return podman(
        "run", "--rm", "--network=host", *ULIMITS, *options, image, *args, timeout=timeout, check=False
    )


@dataclass
class Container:
    """A detached container (`start`); the `containers` fixture stops and removes it."""

    name: str

    def logs(self) -> str:
        done = podman("logs", self.name, check=False)
        return done.stdout + done.stderr

    def exit_code(self) -> int | None:
        done = podman("inspect", "--format", "{{json .State}}", self.name, check=False)
        if done.returncode != 0:
            return None
        state = json.loads(done.stdout)
        return None if state.get("Running") else int(state.get("ExitCode", -1))

    def stop(self) -> None:
        podman("stop", "-t", "15", self.name, check=False, timeout=60)
        podman("rm", "-f", self.name, check=False, timeout=60)


def start(containers: list[Container], image: str, *args: str, options: Sequence[str] = ()) -> Container:
    """`podman run -d` of the image with `args` after the entrypoint; noted in `containers`."""
    name = f"peregrine-test-{uuid.uuid4().hex[:8]}"
    podman("run", "-d", "--name", name, "--network=host", *ULIMITS, *options, image, *args, timeout=120)
    container = Container(name)
    containers.append(container)
    return container
