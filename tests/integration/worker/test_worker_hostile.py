"""Issue #16, items 3-5: what one node sends can neither silence another node, grow the worker's
state, make up host names, nor forge or flood the worker's log (one real worker, real broker).

One worker reads, in one run:

* stats: a forged record for ``victim`` at t = 2^64-1 ns with every event dropped, then the victim's
  real seconds with drops, 40 s apart. Before, the forged time froze the victim's token bucket and
  none of its real drop alerts came (and the forged time made an alert of its own);
* a batch whose envelope says ``node-a`` while its process records claim 300 other host names.
  Before, each alert's ``hostname`` (a Loki label) was the process record's;
* batches whose envelope node holds a newline and a forged log line, or is 1 MB long. Before, the
  first forged a "rules reloaded" line in the log, the second made a 1 MB log line and a 1 MB key
  in the worker's sequence table.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from worker_batches import make_batch
from worker_harness import Record, WorkerProcs, WorkerSetup, consume_until, produce

from bus import dlq
from collectors.stats import Stats, encode_stats

pytestmark = pytest.mark.kafka

FORGED_LINE = "rules reloaded (generation 99) from /etc/forged.yaml"
NEWLINE_NODE = f"evil\n[2026-01-01 00:00:00,000] [1] [INFO] {FORGED_LINE}"
HUGE_NODE = "n" * 1_000_000
FAR_FUTURE = 2**64 - 1


@dataclass
class Run:
    workers: WorkerProcs
    alerts: list[Record]
    letters: list[Record]
    now_ns: int


def _stats(node: str, t: int, n_evts: int, ring_full: int) -> bytes:
    return encode_stats(Stats(node, "boot-1", t, 10**9, n_evts, n_evts - ring_full, {"ring_full": ring_full}))


@pytest.fixture(scope="module")
def run(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    tmp = tmp_path_factory.mktemp("hostile")
    setup = WorkerSetup(kafka_bootstrap, tmp)
    setup.create_topics()
    workers = WorkerProcs(setup)
    rules = tmp / "rules.yaml"
    rules.write_text("# stand-in rules\n")
    now = time.time_ns()
    stats = [(b"victim", _stats("victim", FAR_FUTURE, 1000, 1000))]
    stats += [(b"victim", _stats("victim", now + i * 40 * 10**9, 1000, 500)) for i in range(3)]
    produce(setup.bootstrap, setup.topic("stats"), stats)
    events = [(b"node-a", make_batch("node-a", seq, 50, shell_every=5, proc_node=f"made-up-{seq}"))
              for seq in range(30)]  # 10 shells each: 300 alerts, 30 made-up host names
    events += [(b"evil", make_batch(NEWLINE_NODE, 0, 10, shell_every=5)),
               (b"huge", make_batch(HUGE_NODE, 0, 10, shell_every=5))]
    produce(setup.bootstrap, setup.topic("events"), events)
    workers.start([rules])
    try:
        alerts = consume_until(setup.bootstrap, setup.topic("alerts"), lambda r: len(r) >= 303, 90,
                               settle=3, on_timeout=workers.describe)
        letters = consume_until(setup.bootstrap, setup.topic("dlq"), lambda r: len(r) >= 3, 60,
                                settle=2, on_timeout=workers.describe)
        yield Run(workers, alerts, letters, now)
    finally:
        workers.stop_all()


def test_a_forged_stats_time_cannot_silence_the_victims_drop_alerts(run: Run) -> None:
    drops = [a.json() for a in run.alerts if a.json()["rule"] == "Falco internal: syscall event drop"]
    assert [a["hostname"] for a in drops] == ["victim"] * 3, drops
    letters = [dlq.parse_headers(r.headers) for r in run.letters]
    assert [letter.reason for letter in letters if "stats" in letter.topic] == ["stats time out of range"]


def test_the_alert_hostname_is_the_envelopes_node(run: Run) -> None:
    shells = [a.json() for a in run.alerts if a.json()["rule"] != "Falco internal: syscall event drop"]
    hosts = {a["hostname"] for a in shells}
    assert hosts == {"node-a"}


def test_hostile_node_names_are_dead_lettered_and_neither_forge_nor_flood_the_log(run: Run) -> None:
    letters = [dlq.parse_headers(r.headers) for r in run.letters]
    bad = [letter for letter in letters if "events" in letter.topic]
    assert [letter.reason for letter in bad] == ["bad envelope field"] * 2
    assert all(len(letter.detail) < 300 for letter in bad)
    assert max(len(r.value) for r in run.letters) <= dlq.MAX_WHOLE_BYTES
    log = run.workers.log_text(0)
    assert not any(line.endswith(FORGED_LINE) or line.startswith("[2026-01-01") for line in log.splitlines())
    assert max(len(line) for line in log.splitlines()) < 4096
