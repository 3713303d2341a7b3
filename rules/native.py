"""Builds and imports the project's small C extensions, cached, as bcc builds a probe: at first
use, with the running interpreter's headers.

The shared object is cached under `$PEREGRINE_CACHE/native/` (default `~/.cache/peregrine`), named
by a hash of the source, the interpreter and the compiler command, so a changed source or a
different Python rebuilds it and a second start only imports it. Needs a C compiler (`cc`,
Debian's gcc, in scripts/apt-packages.txt) and the interpreter's headers (python3-dev); a failure
raises NativeError with the compiler's message. Used by the rule engine's batch gate
(rules/gate.c), the collector's ring reader and event builder (collectors/native.py) and the
worker's wire decoder (collectors/wiredecode.c, through `collectors.wire.Decoder`).

The collector imports these as root, so a cached object is code it will run: before importing
one, the loader refuses it unless the file and every directory above it are owned by the
current user or root and writable by nobody else (a world-writable directory only with the
sticky bit, as /tmp), the file is not a symbolic link, and its SHA-256 equals the one recorded
beside it when it was built (`<object>.sha256`). A refusal names the path and the reason; the
fix is to remove the file (it is rebuilt) or the permissions that made it untrustworthy.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import os
import stat
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
    if target.exists() and _digest_path(target).exists():
        return target
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
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
    _write_digest(target, Path(tmp).read_bytes())
    os.replace(tmp, target)  # atomic: a concurrent start sees the old name missing or a whole file
    return target


def _digest_path(target: Path) -> Path:
    return target.with_name(target.name + ".sha256")


def _write_digest(target: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".sha256")
    with os.fdopen(fd, "w") as out:
        out.write(hashlib.sha256(data).hexdigest() + "\n")
    os.replace(tmp, _digest_path(target))


def verify(path: Path) -> None:
    """Raise NativeError unless ``path`` is a cached object this process may safely import."""
    digest = _digest_path(path)
    for link in (path, digest):
        if link.is_symlink():
            raise NativeError(f"refusing {link}: a symbolic link")
    real = path.resolve()  # judge the directories the file really sits in
    uid = os.geteuid()
    for place in (real, real.with_name(digest.name), *real.parents):
        try:
            info = os.lstat(place)
        except OSError as exc:
            raise NativeError(f"cannot check {place}: {exc.strerror}") from None
        if info.st_uid not in (uid, 0):
            owner = f"uid {info.st_uid}, not this user or root"
            raise NativeError(f"refusing {path}: {place} is owned by {owner}")
        sticky_dir = stat.S_ISDIR(info.st_mode) and info.st_mode & stat.S_ISVTX
        if info.st_mode & 0o022 and not sticky_dir:
            mode = f"{info.st_mode & 0o777:o}"
            raise NativeError(f"refusing {path}: {place} is writable by others (mode {mode})")
    if hashlib.sha256(real.read_bytes()).hexdigest() != digest.read_text().strip():
        raise NativeError(f"refusing {path}: its SHA-256 is not the one recorded when it was built")


def load(name: str, source: Path) -> ModuleType:
    """Build if needed and import the extension module `name` from `source`."""
    path = build(source)
    verify(path)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise NativeError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
