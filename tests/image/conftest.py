"""The container image (scripts/image) and a way to run it: podman, as root, host networking.

`image_archive` runs scripts/image, which builds the archive for HEAD's committed tree unless
~/.cache/peregrine/image already holds it (scripts/setup.d/70-image.sh builds it on a fresh
machine, so here it is normally a cache hit). `image` loads the archive into podman's storage once
per session (`podman pull oci-archive:...`) and removes it at the end.
Podman's options for this machine: image_harness.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from image_harness import REPO, Container, podman


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


@pytest.fixture
def containers(image: str) -> Iterator[list[Container]]:
    started: list[Container] = []
    yield started
    for c in started:
        c.stop()
