"""The libs-derived data behind ``fd.types`` (`rules.record`), checked against libs' own source:
which event types carry fd fields, and the type names. Both are read from the libs mirror with
``git show`` (as test_libs_event_table.py does), never from the code under test."""

from __future__ import annotations

import re
import subprocess

import pytest

from rules import libs_event_table
from rules import record as R
from tests.unit.rules.test_libs_event_table import MIRROR

pytestmark = pytest.mark.skipif(not MIRROR.is_dir(), reason="no libs mirror on this machine")


def _show(path: str) -> str:
    command = ["git", f"--git-dir={MIRROR}", "show", f"{libs_event_table.LIBS_COMMIT}:{path}"]
    return subprocess.run(command, check=True, capture_output=True, text=True).stdout


def test_fd_event_types_are_libs_fd_events() -> None:
    """sinsp_filtercheck_fd.cpp extract_fd: fd fields exist on events flagged EF_CREATES_FD,
    EF_USES_FD or EF_DESTROYS_FD; the current (not EF_OLD_VERSION) exit event of each type decides."""
    table = _show("driver/event_table.c")
    flagged: dict[str, bool] = {}
    for m in re.finditer(r"\[PPME_\w+_X\]\s*=\s*\{\s*\"(\w+)\",\s*[^,]+,\s*([^}]*?),\s*\d+\s*,", table):
        name, flags = m.group(1), m.group(2)
        if "EF_OLD_VERSION" in flags or "EF_UNUSED" in flags:
            continue
        flagged[name] = bool(re.search(r"EF_(CREATES|USES|DESTROYS)_FD", flags))
    ours = {name for name in R.EVENT_TYPES if flagged.get(name)}
    assert R.FD_EVENT_TYPES == ours


def test_fdtype_names_are_libs_typestrings() -> None:
    """fdinfo.cpp sinsp_fdinfo::get_typestring: every name it returns, each once."""
    source = _show("userspace/libsinsp/fdinfo.cpp")
    body = source[source.index("sinsp_fdinfo::get_typestring") :]
    body = body[: body.index("\n}\n")]
    names = list(dict.fromkeys(re.findall(r'return "([^"]+)";', body)))
    assert sorted(R.FDTYPE_NAMES) == sorted(names)
