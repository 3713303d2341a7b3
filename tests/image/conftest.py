"""The container image (scripts/image) and a way to run it: podman, as root, host networking.

`image_archive` runs scripts/image, which builds the archive for HEAD's committed tree unless
~/.cache/peregrine/image already holds it (scripts/setup.d/70-image.sh builds it on a fresh
machine, so here it is normally a cache hit). `image` loads the archive into podman's storage once
per session (`podman pull oci-archive:...`) and removes it at the end.

How podman has to run on this machine (all explicit, so no host configuration is needed):
- no systemd: cgroupfs as cgroup manager and a file events log;
- runc, not crun: the kernel mounts cgroup v1 with the hugetlb controller left on the v2 hierarchy
  ("hybrid"), which crun 1.8 refuses ("cgroups in hybrid mode not supported");
- rlimits at or below the host's: root here lacks CAP_SYS_RESOURCE, so podman's defaults
  (nofile 1048576, nproc) cannot be set ("setrlimit RLIMIT_NOFILE: Operation not permitted").
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

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


@pytest.fixture(scope="session")
def image_archive() -> Path:
    if os.geteuid() != 0:
        pytest.skip("scripts/image needs root (mmdebstrap, mount, chroot)")
    missing = [t for t in ("mmdebstrap", "podman", "skopeo") if shutil.which(t) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed: run ./scripts/setup (scripts/apt-packages.txt)")
    done = subprocess.run([str(REPO / "scripts" / "image")], capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, f"scripts/image failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    path = Path(done.stdout.strip().splitlines()[-1])
    assert path.is_file(), path
    print(f"\nimage archive {path}: {path.stat().st_size / 1e6:.1f} MB")
    return path


@pytest.fixture(scope="session")
def image(image_archive: Path) -> Iterator[str]:
    """The image's id in podman's storage."""
    pulled = podman("pull", "-q", f"oci-archive:{image_archive}", timeout=600)
    image_id = pulled.stdout.strip().splitlines()[-1]
    yield image_id
    podman("rmi", "-f", image_id, check=False)


def run(
    image: str, *args: str, options: Sequence[str] = (), timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """`podman run --rm` of the image with `args` after the entrypoint (`peregrine`)."""
    return podman(
        "run", "--rm", "--network=host", *ULIMITS, *options, image, *args, timeout=timeout, check=False
    )


@dataclass
class Container:
    """A detached container; `stop` at teardown, its output kept for messages."""

    name: str
    started: list[str] = field(default_factory=list)

    def logs(self) -> str:
        done = podman("logs", self.name, check=False)
        return done.stdout + done.stderr

    def running(self) -> bool:
        done = podman("inspect", "--format", "{{.State.Running}}", self.name, check=False)
        return done.stdout.strip() == "true"

    def exit_code(self) -> int | None:
        done = podman("inspect", "--format", "{{json .State}}", self.name, check=False)
        if done.returncode != 0:
            return None
        state = json.loads(done.stdout)
        return None if state.get("Running") else int(state.get("ExitCode", -1))

    def stop(self) -> None:
        podman("stop", "-t", "15", self.name, check=False, timeout=60)
        podman("rm", "-f", self.name, check=False, timeout=60)


@pytest.fixture
def containers(image: str) -> Iterator[list[Container]]:
    started: list[Container] = []
    yield started
    for c in started:
        c.stop()


def start(containers: list[Container], image: str, *args: str, options: Sequence[str] = ()) -> Container:
    name = f"peregrine-test-{uuid.uuid4().hex[:8]}"
    podman("run", "-d", "--name", name, "--network=host", *ULIMITS, *options, image, *args, timeout=120)
    container = Container(name)
    containers.append(container)
    return container
