"""Builds and imports the collector's C extensions at start, as bcc builds the probe: `ringread.c`
(the ring buffer read in place) and `openevent.c` (openat events built in C).

The shared object is cached under `$PEREGRINE_CACHE/native/` (default `~/.cache/peregrine`), named
by a hash of the source, the interpreter and the compiler command, so a changed source or a
different Python rebuilds it and a second start only imports it. Needs a C compiler (`cc`, Debian's
gcc, listed in scripts/apt-packages.txt) and the running interpreter's headers; a failure raises
ProbeError with the compiler's message (the collector refuses to start, like a probe that does
not compile).
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import os
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Final

from collectors.errors import ProbeError

SOURCE: Final = Path(__file__).with_name("ringread.c")
OPENEVENT: Final = Path(__file__).with_name("openevent.c")
CFLAGS: Final = ("-O2", "-shared", "-fPIC", "-Wall", "-Werror")


def cache_dir() -> Path:
    return Path(os.environ.get("PEREGRINE_CACHE", Path.home() / ".cache" / "peregrine")) / "native"


def build(source: Path = SOURCE, out_dir: Path | None = None) -> Path:
    """Compile `source` unless an identical build is cached; returns the shared object's path."""
    include = sysconfig.get_paths()["include"]
    cmd = ["cc", *CFLAGS, f"-I{include}"]
    key = hashlib.sha256(
        source.read_bytes() + sys.version.encode() + include.encode() + " ".join(cmd).encode()
    ).hexdigest()[:16]
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    directory = out_dir or cache_dir()
    target = directory / f"{source.stem}-{key}{suffix}"
    if target.exists():
        return target
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, suffix=suffix)
    os.close(fd)
    try:
        done = subprocess.run([*cmd, "-o", tmp, str(source)], capture_output=True, text=True)
    except OSError as exc:
        os.unlink(tmp)
        raise ProbeError(f"cannot build {source}: no C compiler ({exc}); install gcc (./scripts/setup)") \
            from None
    if done.returncode != 0:
        os.unlink(tmp)
        raise ProbeError(f"cannot build {source} with {' '.join(cmd)}:\n{done.stderr.strip()}")
    os.replace(tmp, target)  # atomic: a concurrent start sees the old name missing or a whole file
    return target


def build_all() -> list[Path]:
    """Every extension the collector loads (scripts/setup.d/40-collector-native.sh calls this)."""
    return [build(SOURCE), build(OPENEVENT)]


def load(name: str = "ringread", source: Path = SOURCE) -> ModuleType:
    """Build if needed and import the extension module `name` from `source`."""
    path = build(source)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ProbeError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
