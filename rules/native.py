"""Builds and imports the project's small C extensions, cached, as bcc builds a probe: at first
use, with the running interpreter's headers.

The shared object is cached under `$PEREGRINE_CACHE/native/` (default `~/.cache/peregrine`), named
by a hash of the source, the interpreter and the compiler command, so a changed source or a
different Python rebuilds it and a second start only imports it. Needs a C compiler (`cc`,
Debian's gcc, in scripts/apt-packages.txt) and the interpreter's headers (python3-dev); a failure
raises NativeError with the compiler's message. Used by the rule engine's batch gate
(rules/gate.c), the collector's ring reader and event builder (collectors/native.py) and the
worker's wire decoder (collectors/wiredecode.c, through `collectors.wire.Decoder`).
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

from rules.errors import RulesError

CFLAGS: Final = ("-O2", "-shared", "-fPIC", "-Wall", "-Werror")


class NativeError(RulesError):
    """A C extension could not be built or imported (the message says why)."""


def cache_dir() -> Path:
    return Path(os.environ.get("PEREGRINE_CACHE", Path.home() / ".cache" / "peregrine")) / "native"


def build(source: Path, out_dir: Path | None = None) -> Path:
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
        raise NativeError(f"cannot build {source}: no C compiler ({exc}); install gcc (./scripts/setup)") \
            from None
    if done.returncode != 0:
        os.unlink(tmp)
        raise NativeError(f"cannot build {source} with {' '.join(cmd)}:\n{done.stderr.strip()}")
    os.replace(tmp, target)  # atomic: a concurrent start sees the old name missing or a whole file
    return target


def load(name: str, source: Path) -> ModuleType:
    """Build if needed and import the extension module `name` from `source`."""
    path = build(source)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise NativeError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
