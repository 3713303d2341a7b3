"""The exec's executable inode, from real execs: overlayfs layer, writability and inode times.

An overlayfs is mounted in a temp dir (a copy of /bin/true in the lower layer, an empty upper
layer), a second copy is written through the merged mount so it lands in the upper layer, and
both run from the merged mount while the collector records. Two more copies in a plain directory
run as uid 65534 (no capabilities): one only root may write, one world-writable. The recorded
exec events must say which layer each binary lives in (proc.is_exe_upper_layer/lower_layer),
whether the process could write it (proc.is_exe_writable) and the inode times (proc.exe_ino.*).
Last, Falco's stable rule "Drop and execute new binary in container" must fire from a live
capture for the dropped binary run in a kubepods-like cgroup, and only for it.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from collector_actions import (
    CGROUP2,
    Collector,
    capture_contents,
    container_cgroup,
    of_type,
    remove_cgroup_tree,
    run_in_cgroup,
    tempdir,
)

import rules
from rules.record import (
    EV_PROC,
    EXE_LOWER_LAYER,
    EXE_UPPER_LAYER,
    EXE_WRITABLE,
    P_CONTAINER_ID,
    P_EXE_FLAGS,
    P_EXE_INO_CTIME,
    P_EXE_INO_MTIME,
    P_EXEPATH,
    Event,
    Process,
)

pytestmark = [pytest.mark.root, pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]

NOBODY = "65534"
LAYERS = EXE_UPPER_LAYER | EXE_LOWER_LAYER
DROP_RULE = "Drop and execute new binary in container"


@dataclass(frozen=True)
class Overlay:
    top: Path
    in_lower: Path  # a binary of the lower layer, as seen through the merged mount
    in_upper: Path  # a binary written through the merged mount (so it is in the upper layer)


def _copy_true(path: Path, mode: int) -> Path:
    shutil.copy("/bin/true", path)
    os.chmod(path, mode)
    return path


@pytest.fixture
def overlay() -> Iterator[Overlay]:
    top = Path(tempdir())
    os.chmod(top, 0o755)  # uid 65534 must reach the binaries
    lower, upper, work, merged = (top / d for d in ("lower", "upper", "work", "merged"))
    for d in (lower, upper, work, merged):
        d.mkdir()
    _copy_true(lower / "from-lower", 0o755)
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                    f"lowerdir={lower},upperdir={upper},workdir={work}", str(merged)], check=True)
    try:
        in_upper = _copy_true(merged / "dropped", 0o755)
        assert (upper / "dropped").exists() and not (upper / "from-lower").exists()
        yield Overlay(top, merged / "from-lower", in_upper)
    finally:
        subprocess.run(["umount", "-l", str(merged)], check=False)
        shutil.rmtree(top, ignore_errors=True)


def _exec_process(events: list[Event], path: Path) -> Process:
    found = [e[EV_PROC] for e in of_type(events, "execve") if e[EV_PROC][P_EXEPATH] == str(path)]
    assert found, f"no execve of {path}"
    proc: Process = found[-1]
    return proc


def test_exec_reports_overlay_layer_writability_and_inode_times(overlay: Overlay) -> None:
    plain = overlay.top / "plain"
    plain.mkdir()
    root_only = _copy_true(plain / "root-only", 0o755)
    world_writable = _copy_true(plain / "world-writable", 0o757)
    out = str(overlay.top / "exe.cap")
    collector = Collector(["record", "--out", out, "--event-types", "execve"]).start()
    try:
        for path in (overlay.in_lower, overlay.in_upper):
            subprocess.run([str(path)], check=True)
        for path in (root_only, world_writable):
            subprocess.run(["setpriv", "--reuid", NOBODY, "--regid", NOBODY, "--clear-groups", str(path)],
                           check=True)
    finally:
        collector.stop()
    events, _ = capture_contents(out)

    lower_p, upper_p = _exec_process(events, overlay.in_lower), _exec_process(events, overlay.in_upper)
    assert lower_p[P_EXE_FLAGS] & LAYERS == EXE_LOWER_LAYER
    assert upper_p[P_EXE_FLAGS] & LAYERS == EXE_UPPER_LAYER
    for p, path in ((lower_p, overlay.in_lower), (upper_p, overlay.in_upper)):
        st = os.stat(path)
        assert (p[P_EXE_INO_CTIME], p[P_EXE_INO_MTIME]) == (st.st_ctime_ns, st.st_mtime_ns), path
        assert p[P_EXE_FLAGS] & EXE_WRITABLE  # root owns it

    ro_p, rw_p = _exec_process(events, root_only), _exec_process(events, world_writable)
    assert not ro_p[P_EXE_FLAGS] & EXE_WRITABLE
    assert rw_p[P_EXE_FLAGS] & EXE_WRITABLE
    assert not (ro_p[P_EXE_FLAGS] | rw_p[P_EXE_FLAGS]) & LAYERS  # not on overlayfs


def test_drop_and_execute_rule_fires_for_the_upper_layer_binary_in_a_container(
    overlay: Overlay, falco_rules_dir: Path
) -> None:
    out = str(overlay.top / "drop.cap")
    cid, pod_uid = secrets.token_hex(32), str(uuid.uuid4())
    cgroup = container_cgroup(cid, pod_uid)
    collector = Collector(["record", "--out", out, "--event-types", "execve"]).start()
    try:
        run_in_cgroup(cgroup, f"{overlay.in_lower}; {overlay.in_upper}")
    finally:
        collector.stop()
        remove_cgroup_tree(CGROUP2 / "kubepods.slice")
    events, _ = capture_contents(out)
    in_container = [e for e in events if e[EV_PROC][P_CONTAINER_ID] == cid]
    assert {e[EV_PROC][P_EXEPATH] for e in in_container} >= {str(overlay.in_lower), str(overlay.in_upper)}

    ruleset = rules.load(falco_rules_dir / "falco_rules.yaml")
    alerts = [rules.build_alert(rule, ev) for ev, rule in ruleset.evaluate(in_container)]
    dropped = [a for a in alerts if a["rule"] == DROP_RULE]
    assert len(dropped) == 1, alerts
    output = str(dropped[0]["output"])
    assert f"proc_exepath={overlay.in_upper} " in output
    assert "exe_flags=EXE_WRITABLE|EXE_UPPER_LAYER" in output
