"""The C extension cache: a cached object is imported only if nobody else could have written it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from rules import native

SOURCE = """
#include <Python.h>
static struct PyModuleDef def = {PyModuleDef_HEAD_INIT, "tiny", NULL, -1, NULL};
PyMODINIT_FUNC PyInit_tiny(void) { return PyModule_Create(&def); }
"""


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    root = tmp_path / "cache"
    root.mkdir(mode=0o700)
    monkeypatch.setenv("PEREGRINE_CACHE", str(root))
    yield root / "native"


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.c"
    path.write_text(SOURCE)
    return path


def test_a_fresh_build_records_its_hash_and_imports(cache: Path, source: Path) -> None:
    module = native.load("tiny", source)
    assert module.__name__ == "tiny"
    built = native.build(source)
    assert built.parent == cache and built.with_name(built.name + ".sha256").exists()
    assert cache.stat().st_mode & 0o777 == 0o700


def test_a_tampered_object_is_refused(cache: Path, source: Path) -> None:
    built = native.build(source)
    data = bytearray(built.read_bytes())
    data[-1] ^= 0xFF
    built.write_bytes(bytes(data))
    with pytest.raises(native.NativeError, match="SHA-256"):
        native.load("tiny", source)


def test_an_object_in_a_directory_others_can_write_is_refused(cache: Path, source: Path) -> None:
    native.build(source)
    cache.chmod(0o777)
    with pytest.raises(native.NativeError, match="writable by others"):
        native.load("tiny", source)


def test_an_object_owned_by_another_user_is_refused(cache: Path, source: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("chown needs root")
    built = native.build(source)
    os.chown(built, 12345, 12345)
    with pytest.raises(native.NativeError, match="owned by uid 12345"):
        native.load("tiny", source)


def test_a_symlinked_object_is_refused(cache: Path, source: Path, tmp_path: Path) -> None:
    built = native.build(source)
    elsewhere = tmp_path / "elsewhere.so"
    built.rename(elsewhere)
    built.symlink_to(elsewhere)
    with pytest.raises(native.NativeError, match="symbolic link"):
        native.load("tiny", source)
