"""The OCI archive scripts/image writes: a valid layout, the labels, a non-root user; and what runs
in it without a broker: `peregrine --help`, `peregrine rules validate` of the shipped rules, and
the native code (the rule gate and the wire decoder) active inside the image."""

from __future__ import annotations

import hashlib
import json
import subprocess
import tarfile
import tomllib
from pathlib import Path

import pytest
from image_harness import IMAGE_USER, PREFIX, RULES, run

pytestmark = pytest.mark.image

REPO = Path(__file__).resolve().parents[2]


def test_archive_is_a_valid_oci_layout(image_archive: Path) -> None:
    with tarfile.open(image_archive) as tar:
        members = {m.name.removeprefix("./"): m for m in tar.getmembers()}
        assert json.loads(tar.extractfile(members["oci-layout"]).read())["imageLayoutVersion"] == "1.0.0"  # type: ignore[union-attr]
        index = json.loads(tar.extractfile(members["index.json"]).read())  # type: ignore[union-attr]
        blobs = {
            name.removeprefix("blobs/sha256/"): m
            for name, m in members.items()
            if name.startswith("blobs/sha256/") and m.isfile()
        }
        for digest, member in blobs.items():  # every blob is what its name says
            data = tar.extractfile(member).read()  # type: ignore[union-attr]
            assert hashlib.sha256(data).hexdigest() == digest
        (manifest_desc,) = index["manifests"]
        manifest = json.loads(tar.extractfile(blobs[manifest_desc["digest"].split(":")[1]]).read())  # type: ignore[union-attr]
        for desc in [manifest["config"], *manifest["layers"]]:
            assert desc["digest"].split(":")[1] in blobs
            assert blobs[desc["digest"].split(":")[1]].size == desc["size"]
        assert {m.uid for m in members.values()} == {0}
    inspected = subprocess.run(
        ["skopeo", "inspect", "--config", f"oci-archive:{image_archive}"],
        capture_output=True,
        text=True,
        check=True,
    )
    config = json.loads(inspected.stdout)
    assert len(config["rootfs"]["diff_ids"]) == len(manifest["layers"]) == 2


def test_labels_and_user(image_archive: Path) -> None:
    done = subprocess.run(
        ["skopeo", "inspect", f"oci-archive:{image_archive}"], capture_output=True, text=True, check=True
    )
    labels = json.loads(done.stdout)["Labels"]
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert labels["org.opencontainers.image.version"] == version
    assert (
        labels["org.opencontainers.image.revision"] and len(labels["org.opencontainers.image.revision"]) == 40
    )
    assert labels["org.opencontainers.image.source"].startswith("https://")
    assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"
    config = json.loads(
        subprocess.run(
            ["skopeo", "inspect", "--config", f"oci-archive:{image_archive}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )["config"]
    assert config["User"] == IMAGE_USER
    assert config["Entrypoint"] == [f"{PREFIX}/venv/bin/peregrine"]
    # the commit built: HEAD or, when HEAD changed nothing the image holds, an ancestor of it
    revision = labels["org.opencontainers.image.revision"]
    ancestor = subprocess.run(["git", "-C", str(REPO), "merge-base", "--is-ancestor", revision, "HEAD"])
    assert ancestor.returncode == 0, f"{revision} is not HEAD or an ancestor of it"


def test_runs_as_non_root(image: str) -> None:
    done = run(image, options=["--entrypoint", "id"])
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("uid=10001(peregrine) gid=10001(peregrine)"), done.stdout


def test_help(image: str) -> None:
    done = run(image, "--help")
    assert done.returncode == 0, done.stderr
    for role in ("collect", "worker", "sink", "k8s-meta", "replay", "rules"):
        assert f"  {role} " in done.stdout


def test_rules_validate_of_the_shipped_rules(image: str) -> None:
    files = [
        f"{RULES}/{n}" for n in ("falco_rules.yaml", "falco-incubating_rules.yaml", "peregrine_rules.yaml")
    ]
    done = run(image, "rules", "validate", *files)
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    done = run(image, "rules", "validate", f"{RULES}/falco-sandbox_rules.yaml")
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"


def test_falco_licence_and_notice_ship_with_the_rules(image: str) -> None:
    done = run(image, "-c", f"cat {RULES}/LICENSE.falco-rules {RULES}/NOTICE", options=["--entrypoint", "sh"])
    assert done.returncode == 0, done.stderr
    assert "Apache License" in done.stdout and "Version 2.0" in done.stdout
    assert "The Falco Authors" in done.stdout


NATIVE_CHECK = f"""
import json, os
from pathlib import Path
import rules
from collectors import wire
names = ("falco_rules.yaml", "falco-incubating_rules.yaml", "peregrine_rules.yaml")
files = [Path("{RULES}") / n for n in names]
print(json.dumps({{"gated": rules.load(files).gated, "native": wire.Decoder().native,
                  "uid": os.getuid(), "cache": os.environ["PEREGRINE_CACHE"]}}))
"""


def test_gate_and_wire_decoder_are_native_in_the_image(image: str) -> None:
    """As the image's non-root user, with a read-only root file system: nothing is built at start."""
    done = run(
        image, "-c", NATIVE_CHECK, options=["--entrypoint", f"{PREFIX}/venv/bin/python", "--read-only"]
    )
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    facts = json.loads(done.stdout.strip().splitlines()[-1])
    assert facts == {"gated": True, "native": True, "uid": 10001, "cache": f"{PREFIX}/cache"}
