"""The real worker on the real broker attaches evidence to Falco's alerts: for every alert of the
recorded attack scenario, the evidence is the last 16 events of the alerting process and its
ancestors before the trigger, as a plain scan of the capture finds them (not the worker's code)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from worker_harness import REPO, WorkerProcs, consume_until, replay

from alerts import wire
from collectors.capture import read_capture
from collectors.wire import decode_batch
from rules.alert import alert_id
from rules.record import EV_NUM, EV_PROC, EV_TID, EV_TS, EVENT_TYPES, P_PARENT, P_PID, P_PPID, P_START

pytestmark = pytest.mark.kafka

CAPTURE = REPO / "devtools" / "data" / "attack_scenario.cap"


def _expected(events: list[list[Any]], trigger: list[Any]) -> list[int]:
    pids: dict[int, int] = {}
    p, last = trigger[EV_PROC], None
    while p is not None:
        pids.setdefault(p[P_PID], p[P_START])
        last, p = p, p[P_PARENT]
    pids.setdefault(last[P_PPID], 0)
    pids.pop(0, None)
    hits = []
    for ev in events:
        proc = ev[EV_PROC]
        start = pids.get(proc[P_PID])
        if ev[EV_NUM] < trigger[EV_NUM] and proc[P_PID] in pids and (
                not start or not proc[P_START] or start == proc[P_START]):
            hits.append(ev[EV_NUM])
    return hits[-16:]


def test_every_alert_carries_its_process_lineage_before_the_trigger(
    workers: WorkerProcs, falco_rules_dir: Path
) -> None:
    batches = [decode_batch(f.value) for f in read_capture(str(CAPTURE)) if f.kind == "events"]
    events = [ev for b in batches for ev in b.events]
    node = batches[0].node
    setup = workers.setup
    replay(setup, CAPTURE)
    workers.start([falco_rules_dir / "falco_rules.yaml", falco_rules_dir / "falco-incubating_rules.yaml",
                   REPO / "rules" / "data" / "peregrine_rules.yaml"], standin=False)
    # the capture is one batch, so its alerts commit in one transaction: the first read has them all
    records = consume_until(setup.bootstrap, setup.topic("alerts"), lambda r: len(r) >= 1, 120, settle=3,
                            on_timeout=workers.describe)
    alerts = [wire.decode(r.value) for r in records]
    with_evidence = 0
    for alert in alerts:
        trigger = next(ev for ev in events
                       if alert_id(node, ev[EV_TS], ev[EV_TID], ev[EV_NUM], alert.rule) == alert.uuid)
        want = _expected(events, trigger)
        assert [e["evt.num"] for e in alert.evidence] == want, alert.rule
        for entry, num in zip(alert.evidence, want, strict=True):
            ev = next(e for e in events if e[EV_NUM] == num)
            assert entry["evt.type"] == EVENT_TYPES[ev[0]] and entry["proc.pid"] == ev[EV_PROC][P_PID]
        with_evidence += bool(alert.evidence)
    assert with_evidence >= len(alerts) // 2, f"{with_evidence} of {len(alerts)} alerts had evidence"
    print(f"\n{with_evidence} of {len(alerts)} alerts carry evidence, "
          f"{sum(len(a.evidence) for a in alerts)} events in all")
