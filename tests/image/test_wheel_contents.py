"""A wheel built from the repository holds everything the installed project needs at run time.

The wheel is built the way scripts/image builds it (pip, setuptools pinned as there) from a copy of
the files git knows about (tracked and untracked-but-not-ignored), so the shared working tree gets
no build/ directory. Every file git tracks inside a package must be in it: the .py modules, the C
sources the native loaders compile at first use (rules/gate.c, collectors/*.c, *.h; a wheel without
gate.c ran ungated, silently), the default rules, the alert schema, the demo capture, the sink
example. The named ones are also asserted by name, so an emptied package list cannot pass.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SETUPTOOLS = "setuptools==80.9.0"  # as scripts/image pins it

pytestmark = pytest.mark.image

NAMED = (
    "rules/gate.c",
    "collectors/ringread.c",
    "collectors/openevent.c",
    "collectors/wiredecode.c",
    "collectors/probe.bpf.c",
    "collectors/probe.h",
    "rules/data/peregrine_rules.yaml",
    "alerts/schema.json",
    "devtools/data/attack_scenario.cap",
    "sinks/sinks.example.yaml",
    "rules/py.typed",
)


def _packages() -> list[str]:
    found = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    return [p.rstrip("*") for p in found["include"]]


def _git_files(*args: str) -> list[str]:
    out = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z", *args], capture_output=True, check=True)
    return [f for f in out.stdout.decode().split("\0") if f]


def test_wheel_holds_every_packaged_file(tmp_path: Path) -> None:
    src = tmp_path / "src"
    files = [f for f in _git_files("--cached", "--others", "--exclude-standard") if (REPO / f).is_file()]
    for f in files:
        (src / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / f, src / f)
    constraints = tmp_path / "build-constraints.txt"
    constraints.write_text(SETUPTOOLS + "\n")
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path / "dist"), str(src)],
        capture_output=True,
        text=True,
        env={**os.environ, "PIP_CONSTRAINT": str(constraints)},
        timeout=600,
    )
    assert done.returncode == 0, f"pip wheel failed:\n{done.stdout}\n{done.stderr}"
    (wheel,) = (tmp_path / "dist").glob("peregrine-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())

    packages = _packages()
    needed = {f for f in _git_files() if f.split("/")[0] in packages and "__pycache__" not in f}
    assert needed, "no tracked package files: is packages.find in pyproject.toml still right?"
    assert set(NAMED) <= needed, "a named runtime file moved: update NAMED"
    missing = sorted(needed - names)
    assert not missing, f"the wheel lacks files a user needs at run time: {missing}"
    tests_inside = sorted(n for n in names if n.startswith(("tests/", "benchmarks/")))
    assert not tests_inside, f"tests in the wheel: {tests_inside[:5]}"
