"""The container image (scripts/image) and a way to run it: podman, as root, host networking.

`image_archive` (tests/conftest.py, shared with the node tests) runs scripts/image. `image` loads
the archive into podman's storage once per session (`podman pull oci-archive:...`) and removes it at the end.
Podman's options for this machine: image_harness.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from image_harness import Container, podman


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
