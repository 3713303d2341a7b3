"""What a worker reports besides rule alerts: drop alerts from `peregrine.stats` (Falco's rule and
rate limit), sequence gaps (one log line per gap), a rules reload that keeps the running rules
when the new file is bad, and its rules' interest on `peregrine.control`, at start, after the
reload that changed it, and withdrawn when SIGTERM stops it (one worker process, real broker,
stand-in rule)."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
from worker_batches import make_batch
from worker_harness import WorkerProcs, consume_until, produce

from collectors.stats import Stats, encode_stats
from enrichers.topic import read_records
from rules.interest_wire import decode

pytestmark = pytest.mark.kafka
S = 1_000_000_000
T0 = 1_780_000_000 * S


def stats(node: str, second: int, n_evts: int, ring_full: int) -> tuple[bytes, bytes]:
    s = Stats(node, "boot-1", T0 + second * S, S, n_evts, n_evts - ring_full, {"ring_full": ring_full})
    return node.encode(), encode_stats(s)


def wait_for_log(procs: WorkerProcs, text: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        log = procs.log_text(0)
        if text in log:
            return log
        time.sleep(0.2)
    raise AssertionError(f"no {text!r} in the worker log after {timeout:.0f} s\n{procs.describe()}")


def test_drop_alerts_gaps_and_reload(workers: WorkerProcs, tmp_path: Path) -> None:
    setup = workers.setup
    rules = tmp_path / "rules.yaml"
    rules.write_text("# stand-in rules\n")
    # node-a drops 20% every second for 65 s: alerts at 0, 30, 60; node-b drops 5%: never
    records = [stats("node-a", s, 1000, 200) for s in range(65)]
    records += [stats("node-b", s, 1000, 50) for s in range(65)]
    produce(setup.bootstrap, setup.topic("stats"), records)
    produce(setup.bootstrap, setup.topic("events"),
            [(b"node-g", make_batch("node-g", seq, 10)) for seq in (0, 1, 2, 5, 6, 9)])
    workers.start([rules])

    alerts = consume_until(setup.bootstrap, setup.topic("alerts"), lambda r: len(r) >= 3, 90, settle=3,
                           on_timeout=workers.describe)
    docs = [a.json() for a in alerts]
    assert [(d["hostname"], d["time"][11:19]) for d in docs] == [
        ("node-a", "20:26:40"), ("node-a", "20:27:10"), ("node-a", "20:27:40")
    ]
    assert all(d["rule"] == "Falco internal: syscall event drop" and "tags" not in d for d in docs)
    assert docs[0]["output"] == "Falco internal: syscall event drop. 200 system calls dropped in last second."
    assert all(a.key == b"node-a" for a in alerts)

    log = wait_for_log(workers, "missing=2")
    gaps = [line for line in log.splitlines() if "sequence gap node=node-g" in line]
    assert len(gaps) == 2, gaps
    assert "seq=5 missing=2" in gaps[0] and "seq=9 missing=2" in gaps[1]

    rules.write_text("invalid\n")
    workers.procs[0].send_signal(signal.SIGHUP)
    wait_for_log(workers, "rules reload failed, keeping the running rules")
    rules.write_text("# stand-in rules, fixed\n# shells: zsh\n")
    workers.procs[0].send_signal(signal.SIGHUP)
    wait_for_log(workers, "rules reloaded (generation 2)")
    assert workers.procs[0].poll() is None

    # the start's interest, none for the failed reload, then the reloaded rules' (zsh added)
    deadline = time.monotonic() + 30
    while len(records := read_records(setup.bootstrap, setup.topic("control"))) < 2:
        assert time.monotonic() < deadline, f"{records}\n{workers.describe()}"
        time.sleep(0.2)
    interests = [decode(key, value or b"") for key, value in records]
    assert [r.group for r in interests] == [setup.app_id] * 2
    assert interests[0].replica is not None and interests[0].replica == interests[1].replica  # its own key
    names = [r.interest["execve"].fields[0].exact for r in interests]
    assert names == [{"bash"}, {"bash", "zsh"}]

    # stopped, it withdraws its record: the nodes stop capturing for rules no longer running
    workers.procs[0].send_signal(signal.SIGTERM)
    assert workers.procs[0].wait(60) == 0, workers.describe()
    records = read_records(setup.bootstrap, setup.topic("control"))
    assert records[-1] == (records[0][0], None), f"{records[-1]}\n{workers.describe()}"
