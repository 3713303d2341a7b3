"""Issue #17 section 3, alerts raised while events were dropped: one real worker with Falco's rules,
on the real broker.

* ``node-lossy`` sends three batches; the middle one's envelope says the node lost events around
  it. Exactly the alerts of that batch carry ``peregrine.drops.*`` with its counts and window;
  the alerts of its other batches do not.
* ``node-clean`` sends batches in the same run, interleaved on the same partitions: none of its
  alerts is flagged, whatever ``node-lossy`` reports.
* ``node-forger`` sends a batch whose ``drops`` is out of bounds: dead-lettered with the decoder's
  reason, and nothing of it reaches anyone's alerts.
* A second worker group evaluates the same records from the start (a replay): the same alerts,
  byte for byte, so the flag and the uuids do not depend on the worker's history.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgpack
import pytest
from worker_batches import T0, make_batch
from worker_harness import Record, WorkerProcs, WorkerSetup, consume_until, produce

from alerts import wire
from bus import dlq
from collectors.wire import MAX_DROP_COUNT, Drops

pytestmark = pytest.mark.kafka

N_EVENTS, SHELL_EVERY = 300, 100  # three shells per batch
DROPS = Drops(1_780_000_000_000_000_000, 1_780_000_000_020_000_000, (1200, 0, 0, 3, 34, 0))


def _forged() -> bytes:
    batch = msgpack.unpackb(make_batch("node-forger", 0, N_EVENTS, shell_every=SHELL_EVERY), raw=False)
    batch["drops"] = [0, 1, MAX_DROP_COUNT + 1, 0, 0, 0, 0, 0]
    packed: bytes = msgpack.packb(batch, use_bin_type=True)
    return packed


def _alerts(setup: WorkerSetup, workers: WorkerProcs, n: int) -> list[Record]:
    return consume_until(setup.bootstrap, setup.topic("alerts"), lambda r: len(r) >= n, 120, settle=2,
                         on_timeout=workers.describe)  # fmt: skip


def test_alerts_of_a_batch_that_reports_drops_are_flagged_and_no_others(
    kafka_bootstrap: str, workers: WorkerProcs, falco_rules_dir: Path, tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    setup = workers.setup
    rule_files = [falco_rules_dir / "falco_rules.yaml", falco_rules_dir / "falco-incubating_rules.yaml"]
    records: list[tuple[bytes, bytes]] = []
    for seq in range(3):
        lossy = make_batch("node-lossy", seq, N_EVENTS, shell_every=SHELL_EVERY,
                           drops=DROPS if seq == 1 else None)  # fmt: skip
        records += [(b"node-lossy", lossy),
                    (b"node-clean", make_batch("node-clean", seq, N_EVENTS, shell_every=SHELL_EVERY))]
    forged = _forged()
    records.append((b"node-forger", forged))
    produce(setup.bootstrap, setup.topic("events"), records)
    # The replay's worker group (below), on topics of its own, starts at once too: a worker's
    # start-up (Faust, Falco's rules compiled) is most of this test, and neither waits on the other.
    (tmp_path / "replay").mkdir()
    replay = WorkerSetup(kafka_bootstrap, tmp_path / "replay")
    replay.create_topics()
    produce(replay.bootstrap, replay.topic("events"), records)
    again = WorkerProcs(replay)
    request.addfinalizer(again.stop_all)

    workers.start(rule_files, standin=False)
    again.start(rule_files, standin=False)
    alerts = _alerts(setup, workers, 18)  # 3 shells x 3 batches x 2 nodes
    docs = [a.json() for a in alerts]
    assert len(docs) == 18 and len({d["uuid"] for d in docs}) == 18
    assert {d["hostname"] for d in docs} == {"node-lossy", "node-clean"}

    flagged = [d for d in docs if "peregrine.drops.incomplete" in d["output_fields"]]
    # the shells of node-lossy's seq 1 (make_batch stamps event number n at T0 + n)
    assert sorted(d["output_fields"]["evt.time"] - T0 for d in flagged) == [400, 500, 600]
    assert {d["hostname"] for d in flagged} == {"node-lossy"}
    for d in flagged:
        fields = d["output_fields"]
        assert {k: fields[k] for k in wire.DROP_FIELDS} == {
            "peregrine.drops.incomplete": True, "peregrine.drops.lost": 1234,
            "peregrine.drops.ring_full": 1200, "peregrine.drops.inflight_full": 0, "peregrine.drops.bug": 0,
            "peregrine.drops.page_fault_reads": 3, "peregrine.drops.userspace_queue_full": 34,
            "peregrine.drops.delivery_failed": 0,
            "peregrine.drops.first_ns": DROPS.first_ns, "peregrine.drops.last_ns": DROPS.last_ns,
        }
        assert d["rule"] == "Terminal shell in container"  # Falco's alert otherwise
    # the flag keeps the alert's evidence: a flagged shell carries what the clean node's same shell
    # does (the batch's earlier shells of its process)
    clean = {d["output_fields"]["evt.time"]: d.get("evidence") for d in docs if d["hostname"] == "node-clean"}
    in_order = sorted(flagged, key=lambda d: d["output_fields"]["evt.time"])
    assert [len(d.get("evidence", ())) for d in in_order] == [0, 1, 2]
    assert all(d.get("evidence") == clean[d["output_fields"]["evt.time"]] for d in flagged)
    unflagged = [d for d in docs if d not in flagged]
    keys = {"hostname", "output", "output_fields", "priority", "rule", "source", "tags", "time", "uuid"}
    assert all(set(d) - {"evidence"} == keys for d in docs)  # the flag adds no top-level key
    assert all(not any(k.startswith("peregrine.") for k in d["output_fields"]) for d in unflagged)

    letters = consume_until(setup.bootstrap, setup.topic("dlq"), lambda r: len(r) >= 1, 30,
                            on_timeout=workers.describe)  # fmt: skip
    assert [r.value for r in letters] == [forged]
    letter = dlq.parse_headers(letters[0].headers)
    assert letter.reason == "bad envelope field"
    assert letter.detail == f"drops counts must be 0..{MAX_DROP_COUNT}"

    # the same records again, in a fresh consumer group: the same alerts, byte for byte
    replayed = _alerts(replay, again, 18)
    assert sorted(r.value for r in replayed) == sorted(r.value for r in alerts)
    by_uuid: dict[str, Any] = {d["uuid"]: d for d in docs}
    for r in replayed:
        assert json.loads(r.value) == by_uuid[json.loads(r.value)["uuid"]]
