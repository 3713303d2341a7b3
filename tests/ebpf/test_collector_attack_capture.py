"""The attack scenario, recorded live and shipped as `devtools/data/attack_scenario.cap`.

In a cgroup laid out like a containerd container under kubepods, a process named runc starts an
interactive bash on a pty; the shell runs a binary named kubectl, connects to the API server's
service address (10.96.0.1:443; a non-blocking connect, so no server is needed), unshares and
enters a UTS namespace, and runs a package manager. `test_recording_...` (root) records it and
checks the capture; with PEREGRINE_WRITE_CAPTURE=1 it also rewrites the shipped file, keeping
only the container's events (re-batched, so batches stay self-contained) and the stats frames.
`test_shipped_...` checks the shipped file without root, which is what pipelines tests replay.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import uuid
from pathlib import Path

import pytest
from collector_actions import (
    CGROUP2,
    Collector,
    container_cgroup,
    kubectl_binary,
    of_type,
    remove_cgroup_tree,
    run_under_pty,
    tempdir,
)

from collectors.batch import Batcher
from collectors.capture import CaptureWriter, read_capture
from collectors.wire import decode_batch, encode_batch
from rules.record import (
    EV_ARGS,
    EV_FD,
    EV_PROC,
    EV_RES,
    F_SIP,
    F_SPORT,
    P_CONTAINER_ID,
    P_NAME,
    P_PARENT,
    P_TTY,
    Event,
)

SHIPPED = Path(__file__).resolve().parents[2] / "devtools" / "data" / "attack_scenario.cap"
API_SERVER = ("10.96.0.1", 443)
CLONE_NEWUTS = 0x04000000
PYTHON = "/usr/bin/python3"


def check_attack_scenario(events: list[Event]) -> str:
    """Assert the scenario's events; returns the container id."""
    cids = {e[EV_PROC][P_CONTAINER_ID] for e in events}
    assert len(cids) == 1, cids
    cid = cids.pop()
    assert re.fullmatch(r"[0-9a-f]{64}", cid)
    shells = [e for e in of_type(events, "execve") if e[EV_PROC][P_NAME] == "bash"]
    assert shells and shells[0][EV_PROC][P_TTY] != 0 and shells[0][EV_PROC][P_PARENT][P_NAME] == "runc"
    names = {e[EV_PROC][P_NAME] for e in of_type(events, "execve")}
    assert {"bash", "kubectl", "apt-get", "unshare", "nsenter"} <= names
    connects = [e for e in of_type(events, "connect") if e[EV_FD] and e[EV_FD][F_SIP] == API_SERVER[0]]
    assert connects and connects[0][EV_FD][F_SPORT] == API_SERVER[1] and connects[0][EV_RES] == -115
    assert [e[EV_ARGS][1] for e in of_type(events, "unshare") if e[EV_RES] == 0] == [CLONE_NEWUTS]
    assert [e[EV_ARGS][2] for e in of_type(events, "setns") if e[EV_RES] == 0] == [CLONE_NEWUTS]
    return str(cid)


def _events_of(path: str) -> tuple[list[Event], list[bytes]]:
    events: list[Event] = []
    stats: list[bytes] = []
    for frame in read_capture(path):
        if frame.kind == "events":
            events.extend(decode_batch(frame.value).events)
        else:
            stats.append(frame.value)
    return events, stats


def _write_shipped(path: str, cid: str) -> None:
    """Keep the container's events only; re-batch them from the raw frames (references intact)."""
    w = CaptureWriter(str(SHIPPED))
    batcher = Batcher("demo-node", "", max_events=500, max_age_ns=1 << 62)
    for frame in read_capture(path):
        if frame.kind == "stats":
            w.send("stats", frame.key, frame.value, 0)
            continue
        b = decode_batch(frame.value)
        batcher.node, batcher.boot_id = b.node, b.boot_id
        for ev in b.events:
            if ev[EV_PROC][P_CONTAINER_ID] == cid:
                batcher.add(ev, 0)
    batch = batcher.close()
    assert batch is not None
    w.send("events", batch.node.encode(), encode_batch(batch), len(batch.events))
    w.close(1.0)


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
def test_recording_the_attack_scenario_in_a_kubepods_container(tmp_path: Path) -> None:
    out = str(tmp_path / "attack.cap")
    work = tempdir()
    cid, pod_uid = secrets.token_hex(32), str(uuid.uuid4())
    cgroup = container_cgroup(cid, pod_uid)
    runc = os.path.join(work, "runc")
    shutil.copy("/bin/sh", runc)
    kubectl = kubectl_binary(work)
    connect = os.path.join(work, "connect.py")
    Path(connect).write_text(
        f"import socket\ns = socket.socket()\ns.setblocking(False)\ns.connect_ex({API_SERVER!r})\n"
    )
    shell = "; ".join([
        f"{kubectl} get pods",
        f"{PYTHON} -S {connect}",
        "unshare --uts true",
        "nsenter --uts=/proc/$$/ns/uts true",
        "apt-get --version > /dev/null",
    ])
    collector = Collector(["record", "--out", out, "--node", "demo-node"]).start()
    try:
        run_under_pty([runc, "-c", f"echo $$ > {cgroup}/cgroup.procs; bash --norc -i -c '{shell}'; true"])
    finally:
        collector.stop()
        remove_cgroup_tree(CGROUP2 / "kubepods.slice")
    events, _ = _events_of(out)
    in_container = [e for e in events if e[EV_PROC][P_CONTAINER_ID] == cid]
    assert check_attack_scenario(in_container) == cid
    if os.environ.get("PEREGRINE_WRITE_CAPTURE") == "1":
        _write_shipped(out, cid)


@pytest.mark.skipif(not SHIPPED.exists(), reason="capture not generated yet")
def test_shipped_attack_capture_decodes_and_holds_the_scenario() -> None:
    events, stats = _events_of(str(SHIPPED))
    check_attack_scenario(events)
    assert stats, "the capture carries the collector's stats too"
    assert SHIPPED.stat().st_size < 256 * 1024
