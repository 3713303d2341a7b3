"""The exec's executable inode, from real execs: overlayfs layer, writability and inode times.

An overlayfs is mounted in a temp dir (a copy of /bin/true in the lower layer, an empty upper
layer), a second copy is written through the merged mount so it lands in the upper layer, and
both run from the merged mount while the collector records. Two more copies in a plain directory
run as uid 65534 (no capabilities): one only root may write, one world-writable. The recorded
exec events must say which layer each binary lives in (proc.is_exe_upper_layer/lower_layer),
whether the process could write it (proc.is_exe_writable) and the inode times (proc.exe_ino.*).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from collector_actions import Collector, capture_contents, of_type, tempdir

from rules.record import (
    EV_PROC,
    EXE_LOWER_LAYER,
    EXE_UPPER_LAYER,
    EXE_WRITABLE,
    P_EXE_FLAGS,
    P_EXE_INO_CTIME,
    P_EXE_INO_MTIME,
    P_EXEPATH,
    Process,
)

pytestmark = [pytest.mark.root, pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]

NOBODY = "65534"


def _copy_true(path: Path, mode: int) -> Path:
    shutil.copy("/bin/true", path)
    os.chmod(path, mode)
    return path


def _exec_process(events: list[list[object]], path: Path) -> Process:
    found = [e[EV_PROC] for e in of_type(events, "execve") if e[EV_PROC][P_EXEPATH] == str(path)]  # type: ignore[index]
    assert found, f"no execve of {path}"
    return found[-1]  # type: ignore[return-value]


def test_exec_reports_overlay_layer_writability_and_inode_times() -> None:
    top = Path(tempdir())
    os.chmod(top, 0o755)  # uid 65534 must reach the plain directory's binaries
    lower, upper, work, merged, plain = (top / d for d in ("lower", "upper", "work", "merged", "plain"))
    for d in (lower, upper, work, merged, plain):
        d.mkdir()
    _copy_true(lower / "from-lower", 0o755)
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                    f"lowerdir={lower},upperdir={upper},workdir={work}", str(merged)], check=True)
    try:
        in_lower = merged / "from-lower"
        in_upper = _copy_true(merged / "dropped", 0o755)
        assert (upper / "dropped").exists() and not (upper / "from-lower").exists()
        root_only = _copy_true(plain / "root-only", 0o755)
        world_writable = _copy_true(plain / "world-writable", 0o757)
        out = str(top / "exe.cap")
        collector = Collector(["record", "--out", out, "--event-types", "execve"]).start()
        try:
            for path in (in_lower, in_upper):
                subprocess.run([str(path)], check=True)
            for path in (root_only, world_writable):
                subprocess.run(["setpriv", "--reuid", NOBODY, "--regid", NOBODY, "--clear-groups", str(path)],
                               check=True)
        finally:
            collector.stop()
        events, _ = capture_contents(out)

        lower_p, upper_p = _exec_process(events, in_lower), _exec_process(events, in_upper)
        assert lower_p[P_EXE_FLAGS] & (EXE_UPPER_LAYER | EXE_LOWER_LAYER) == EXE_LOWER_LAYER
        assert upper_p[P_EXE_FLAGS] & (EXE_UPPER_LAYER | EXE_LOWER_LAYER) == EXE_UPPER_LAYER
        for p, path in ((lower_p, in_lower), (upper_p, in_upper)):
            st = os.stat(path)
            assert (p[P_EXE_INO_CTIME], p[P_EXE_INO_MTIME]) == (st.st_ctime_ns, st.st_mtime_ns), path
            assert p[P_EXE_FLAGS] & EXE_WRITABLE  # root owns it

        ro_p, rw_p = _exec_process(events, root_only), _exec_process(events, world_writable)
        assert not ro_p[P_EXE_FLAGS] & EXE_WRITABLE
        assert rw_p[P_EXE_FLAGS] & EXE_WRITABLE
        assert not (ro_p[P_EXE_FLAGS] | rw_p[P_EXE_FLAGS]) & (EXE_UPPER_LAYER | EXE_LOWER_LAYER)
    finally:
        subprocess.run(["umount", "-l", str(merged)], check=False)
        shutil.rmtree(top, ignore_errors=True)
