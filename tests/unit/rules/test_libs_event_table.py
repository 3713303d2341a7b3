"""`rules.libs_event_table` is derived from falcosecurity/libs, never written by hand.

Run ``python -m tests.unit.rules.test_libs_event_table GIT_DIR`` to write it again from a libs
checkout (a bare mirror works: the files are read with ``git show HEAD:...``); the test below
derives it from the mirror the `fetch` tool leaves, when it is there, and compares.
"""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import pytest

from rules import libs_event_table
from rules import record as R
from rules.ast import BinaryCheckExpr, Expr, FieldExpr, ListExpr, ValueExpr
from rules.collect import load_files

MIRROR = Path("/work/.mirror/falcosecurity+libs/repo")
MODULE = Path(libs_event_table.__file__)
# libs' PPM_MAX_NAME_LEN: scap_get_ppm_sc_name copies names with strlcpy into 32 bytes
_PPM_MAX_NAME_LEN = 32
# driver/syscall_table.c: `[__NR_x - SYSCALL_TABLE_ID0] = {.ppm_sc = PPM_SC_X}`, no event pair
_GENERIC_ENTRY = re.compile(r"\[__NR_(\w+) - SYSCALL_TABLE_ID0\]\s*=\s*\{\s*\.ppm_sc\s*=\s*PPM_SC_(\w+)\s*\}")


def _show(git_dir: Path, commit: str, path: str) -> str:
    command = ["git", f"--git-dir={git_dir}", "show", f"{commit}:{path}"]
    return subprocess.run(command, check=True, capture_output=True, text=True).stdout


def derive(git_dir: Path) -> str:
    """The module text: driver/event_table.c's event names, the lower-cased PPM_SC_X names of
    driver/ppm_events_public.h (scap_get_ppm_sc_name) and the generic syscalls of
    driver/syscall_table.c with their codes, at the mirror's HEAD."""
    commit = subprocess.run(
        ["git", f"--git-dir={git_dir}", "rev-parse", "HEAD"], check=True, capture_output=True, text=True
    ).stdout.strip()
    table = _show(git_dir, commit, "driver/event_table.c")
    events = sorted(set(re.findall(r"\[PPME_\w+\]\s*=\s*\{\s*\"([^\"]*)\"", table)))
    header = _show(git_dir, commit, "driver/ppm_events_public.h")
    syscalls = sorted(
        {name.lower()[: _PPM_MAX_NAME_LEN - 1] for name in re.findall(r"PPM_SC_X\((\w+),\s*\d+\)", header)}
    )
    ppm_sc = {name: int(code) for name, code in re.findall(r"PPM_SC_X\((\w+),\s*(\d+)\)", header)}
    x86_64 = _show(git_dir, commit, "driver/syscall_compat_x86_64.h")
    native = {name: int(nr) for name, nr in re.findall(r"#define __NR_(\w+) (\d+)", x86_64)}
    syscall_table = _show(git_dir, commit, "driver/syscall_table.c")
    generic = sorted(
        (sc.lower(), ppm_sc[sc], native[nr])
        for nr, sc in _GENERIC_ENTRY.findall(syscall_table)
        if nr in native
    )
    lines = [
        '"""Event-type names libs knows, derived from falcosecurity/libs (do not edit by hand: see',
        'tests/unit/rules/test_libs_event_table.py, which writes and checks this file).',
        "",
        "`EVENT_NAMES` are the names of driver/event_table.c (``ppm_event_info.name``);",
        "`SYSCALL_NAMES` the lower-cased ``PPM_SC_X`` names of driver/ppm_events_public.h",
        "(``scap_get_ppm_sc_name``). libs accepts an ``evt.type`` value found in either",
        "(sinsp_filtercheck_event.cpp ``validate_filter_value``).",
        "",
        "`GENERIC_SYSCALLS` are the x86_64 syscalls libs has no event of its own for:",
        "driver/syscall_table.c gives them a PPM_SC code only, so the driver sends its generic event",
        "(PPME_GENERIC_X, parameters ``ID``: that code, ``nativeID``: the syscall number of",
        "driver/syscall_compat_x86_64.h), and ``evt.type`` prints the syscall's name.",
        '"""',
        "",
        "from __future__ import annotations",
        "",
        "from typing import Final",
        "",
        f'LIBS_COMMIT: Final = "{commit}"',
        "",
        "EVENT_NAMES: Final = frozenset({",
        *(f'    "{name}",' for name in events),
        "})",
        "",
        "SYSCALL_NAMES: Final = frozenset({",
        *(f'    "{name}",' for name in syscalls),
        "})",
        "",
        "# name -> (PPM_SC code, x86_64 syscall number)",
        "GENERIC_SYSCALLS: Final[dict[str, tuple[int, int]]] = {",
        *(f'    "{name}": ({code}, {nr}),' for name, code, nr in generic),
        "}",
    ]
    return "\n".join(lines) + "\n"


@pytest.mark.skipif(not MIRROR.is_dir(), reason="no libs mirror on this machine")
def test_the_module_is_what_libs_gives() -> None:
    assert MODULE.read_text() == derive(MIRROR)


def test_open_family_and_close_are_known() -> None:
    names = libs_event_table.EVENT_NAMES | libs_event_table.SYSCALL_NAMES
    assert {"open", "openat", "openat2", "open_by_handle_at", "creat", "close"} <= names



def test_the_records_carry_the_whole_open_family_and_close() -> None:
    """``evt.type startswith open`` means these names in libs, and the records carry them all:
    open_tree and open_tree_attr as libs' generic event (no event of their own in libs)."""
    known = libs_event_table.EVENT_NAMES | libs_event_table.SYSCALL_NAMES
    family = {name for name in known if name.startswith("open")}
    assert family == {"open", "openat", "openat2", "open_by_handle_at", "open_tree", "open_tree_attr"}
    assert family | {"close"} <= set(R.EVENT_TYPES)
    assert not {"open_tree", "open_tree_attr"} & libs_event_table.EVENT_NAMES


def test_generic_record_types_are_libs_generic_syscalls() -> None:
    """Every x86_64 syscall libs sends as PPME_GENERIC_X (driver/syscall_table.c) has a record
    type with the generic event's parameters, and only those have them."""
    generic = {R.EVENT_TYPES[i] for i in R.GENERIC_TYPE_IDS}
    assert generic == set(libs_event_table.GENERIC_SYSCALLS)
    assert len(generic) == 219
    assert all(R.EVENT_PARAMS[i] == ("ID", "nativeID") for i in R.GENERIC_TYPE_IDS)
    # x86_64 numbers of the Linux syscall table (arch/x86/entry/syscalls/syscall_64.tbl)
    assert libs_event_table.GENERIC_SYSCALLS["open_tree"][1] == 428
    assert libs_event_table.GENERIC_SYSCALLS["open_tree_attr"][1] == 467


PINNED_IDS = Path(__file__).with_name("data") / "event_type_ids.txt"


def test_event_type_ids_never_move() -> None:
    """The wire carries type ids: every id pinned in data/event_type_ids.txt keeps its name (the
    first 63 are the types before libs' generic syscalls were added), new ones only append, and
    those after the first 63 follow libs' PPM_SC codes, which libs only appends to."""
    lines = PINNED_IDS.read_text().splitlines()
    pinned = [line for line in lines if line and not line.startswith("#")]
    assert list(R.EVENT_TYPES[: len(pinned)]) == pinned
    assert pinned[:3] == ["execve", "execveat", "open"]
    assert pinned[60:63] == ["close", "open_tree", "open_tree_attr"]
    codes = [libs_event_table.GENERIC_SYSCALLS[name][0] for name in R.EVENT_TYPES[63:]]
    assert codes == sorted(codes)


def _named_types(expr: Expr) -> set[str]:
    """Every value an ``evt.type`` check of a loaded (macro-resolved) condition names."""
    found: set[str] = set()
    stack: list[object] = [expr]
    while stack:
        node = stack.pop()
        left = node.left if isinstance(node, BinaryCheckExpr) else None
        if isinstance(node, BinaryCheckExpr) and isinstance(left, FieldExpr) and left.name == "evt.type":
            right = node.right.values if isinstance(node.right, ListExpr) else [node.right]
            found |= {v.value for v in right if isinstance(v, ValueExpr)}
        if dataclasses.is_dataclass(node):
            for child in (getattr(node, f.name) for f in dataclasses.fields(node)):
                stack.extend(child if isinstance(child, (list, tuple)) else [child])
    return found


@pytest.mark.parametrize("extra", [None, "falco-incubating_rules.yaml", "falco-sandbox_rules.yaml"])
def test_falcos_files_name_only_types_records_carry(falco_rules_dir: Path, extra: str | None) -> None:
    """What Falco's rules files name and the records cannot carry (none, in the copy we ship)."""
    files = [falco_rules_dir / "falco_rules.yaml", *([falco_rules_dir / extra] if extra else [])]
    named = set().union(*(_named_types(rule.condition) for rule in load_files(files).rules))
    assert named, "the walk found no evt.type check"
    assert named <= libs_event_table.EVENT_NAMES | libs_event_table.SYSCALL_NAMES
    assert named - set(R.EVENT_TYPES) == set()


if __name__ == "__main__":
    MODULE.write_text(derive(Path(sys.argv[1]) if len(sys.argv) > 1 else MIRROR))
