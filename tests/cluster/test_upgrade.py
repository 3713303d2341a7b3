"""`helm upgrade` with a changed rules ConfigMap (issue #15 §3): the workers roll to the new rules
while a pod keeps raising alerts, and counted by uuid across the upgrade no alert is lost or
doubled: every alert the workers committed to `peregrine.alerts` reaches the Slack stand-in and
rsyslogd exactly once, no event has two alerts, and every tick the collector published in
`peregrine.events` has its alert (one missing would be an alert the workers lost while rolling).
The old rules file knows `marker-one`, the new one `marker-two` too, and a rule on `syncfs`, which
no old rule names.

The collector is not restarted (issue #18 §1): the new workers publish what their rules need on
`peregrine.control` and the collector attaches `syncfs` live, so the node is traced throughout
(every tick is captured) and the new syncfs rule fires on the same collector pod.

Runs last in this folder (file order): the upgrade restarts the workers and the collector.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, TopicPartition

from collectors.wire import decode_batch
from rules.record import P_ARGS, P_CONTAINER_ID, P_NAME

from .helm_release import DEADLINE_S, Release, Target, target_pod

pytestmark = [pytest.mark.kubelet, pytest.mark.root, pytest.mark.kafka]

UPGRADE = Path(__file__).with_name("upgrade-rules.yaml")
RULE = "Peregrine test marker"
TICK = re.compile(r"command=marker-one tick-(\d+) ")


@pytest.fixture(scope="module")
def pod(release: Release, image_ref: str) -> Iterator[Target]:
    yield from target_pod(release, image_ref)


def read_range(bootstrap: str, topic: str, since_ms: int = 0) -> list[bytes]:
    """The records of `topic` a read_committed consumer sees from `since_ms` (epoch ms, by record
    time) up to the end each partition had when called: the collector keeps writing meanwhile."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"upgrade-{uuid.uuid4().hex[:8]}",
                         "enable.auto.commit": False, "isolation.level": "read_committed",
                         "enable.partition.eof": True})
    found: list[bytes] = []
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        wanted = [TopicPartition(topic, p, since_ms) for p in partitions]
        starts = consumer.offsets_for_times(wanted, timeout=10)
        ends = {tp.partition: consumer.get_watermark_offsets(tp, timeout=10)[1] for tp in starts}
        todo = {tp.partition for tp in starts if 0 <= tp.offset < ends[tp.partition]}
        consumer.assign([tp for tp in starts if tp.partition in todo])
        deadline = time.monotonic() + 60
        while todo and time.monotonic() < deadline:
            for m in consumer.consume(500, 0.5):
                error = m.error()
                if error is None:
                    found.append(m.value() or b"")
                if (error is None and m.offset() >= ends[m.partition()] - 1) or (
                        error is not None and error.code() == KafkaError._PARTITION_EOF):
                    todo.discard(m.partition())
    finally:
        consumer.close()
    assert not todo, f"{topic}: partitions {sorted(todo)} not read to {ends} in 60 s ({len(found)} records)"
    return found


def captured_ticks(bootstrap: str, container_id: str, since_ms: int) -> set[int]:
    """The ticks whose process the collector published in `peregrine.events` (what the workers
    could alert on; the reference decoder reads the batches)."""
    ticks = set()
    for value in read_range(bootstrap, "peregrine.events", since_ms):
        for proc in decode_batch(value).procs:
            if proc[P_NAME] == "marker-one" and proc[P_CONTAINER_ID] == container_id and proc[P_ARGS]:
                if (m := re.fullmatch(r"tick-(\d+)", proc[P_ARGS][0])):
                    ticks.add(int(m.group(1)))
    return ticks


def test_helm_upgrade_of_the_rules_loses_and_doubles_no_alert(release: Release, pod: Target) -> None:
    node = release.node
    run = ["exec", "-n", pod.namespace, pod.name, "--", "bash", "-c"]
    node.kubectl(*run, "ln -sf /bin/true /tmp/marker-one && ln -sf /bin/true /tmp/marker-two && "
                 "/tmp/marker-two before-upgrade")
    ticking = ("i=0; while [ ! -e /tmp/stop ]; do i=$((i+1)); /tmp/marker-one tick-$i; sleep 0.2; done; "
               "echo $i")
    started_ms = time.time_ns() // 1_000_000 - 1000  # record times are the producers', on this machine
    ticker = subprocess.Popen(pod.exec_argv(node, "bash", "-c", ticking), stdout=subprocess.PIPE, text=True)
    try:
        pod.wait_for_rules({RULE}, release.describe)  # ticks alert before the upgrade
        collector_before = _collector(release)
        node.kubectl(*run, "sync -f /tmp")  # no rule names syncfs yet
        t0 = time.monotonic()
        release.install(UPGRADE, verb="upgrade")
        upgraded_s = time.monotonic() - t0
        node.kubectl(*run, "/tmp/marker-two after-upgrade")
        pod.arrivals.wait(lambda a: any("command=marker-two after-upgrade " in d.text
                                        for d in pod.mine(a.at_slack).values()), DEADLINE_S, release.describe)
        # syncfs is captured once the collector has the new workers' interest: until then a sync
        # goes unseen, so one runs every second until its alert comes
        syncing = "while true; do sync -f /var; sleep 1; done"
        syncs = subprocess.Popen(pod.exec_argv(node, "bash", "-c", syncing))
        try:
            pod.arrivals.wait(lambda a: any("command=sync -f /var" in d.text
                                            for d in pod.mine(a.at_slack).values()),
                              DEADLINE_S, release.describe)  # fmt: skip
        finally:
            syncs.kill()
        synced_s = time.monotonic() - t0
    finally:
        node.kubectl(*run, "touch /tmp/stop", check=False)
        out, _ = ticker.communicate(timeout=60)
    last = int(out.strip().splitlines()[-1])
    pod.arrivals.wait(lambda a: any(f"command=marker-one tick-{last} " in d.text
                                    for d in pod.mine(a.at_slack).values()), DEADLINE_S, release.describe)
    pod.arrivals.settle(3.0)

    mark = f"container_id={pod.container_id[:12]}"
    committed = [a for a in _alerts(release) if a.get("rule") == RULE and mark in a.get("output", "")]
    by_uuid = Counter(a["uuid"] for a in committed)
    # the marker alerts of this pod: committed, or seen at either receiver
    ours = set(by_uuid) | {u for found in (pod.arrivals.at_slack, pod.arrivals.at_syslog)
                           for u, d in pod.mine(found).items() if d.rule == RULE}
    at_slack = Counter(u for u in release.slack.uuids() if u in ours)
    at_syslog = Counter(u for u in _syslog_uuids(release) if u in ours)
    ticks = Counter(int(m.group(1)) for a in committed if (m := TICK.search(a["output"])))
    missed = sorted(set(range(1, last + 1)) - set(ticks))
    captured = captured_ticks(release.kafka.bootstrap, pod.container_id, started_ms)
    not_captured = _ranges(sorted(set(missed) - captured))
    summary = {"helm_upgrade_s": round(upgraded_s, 1), "syncfs_alerted_after_s": round(synced_s, 1),
               "ticks": last, "alerts": len(by_uuid), "ticks_not_alerted": _ranges(missed),
               "of_those_not_captured": not_captured, "alerted_around_the_gap": _around(committed, missed)}
    print(f"\n{json.dumps(summary)}")
    assert _collector(release) == collector_before, "the upgrade replaced the collector's pod"
    assert not_captured == [], "ticks the collector never captured: the node was untraced"
    syncfs = [a for a in _alerts(release) if a.get("rule") == "Peregrine test syncfs" and mark in a["output"]]
    assert syncfs and not any("command=sync -f /tmp" in a["output"] for a in syncfs)
    assert not any("before-upgrade" in a["output"] for a in committed), "marker-two alerted before its rule"
    assert any("command=marker-two after-upgrade " in a["output"] for a in committed)
    assert [u for u, n in by_uuid.items() if n > 1] == [], "an alert committed twice"
    assert [t for t, n in ticks.items() if n > 1] == [], "an event alerted twice"
    assert _ranges(sorted(captured - set(ticks))) == [], "captured ticks the workers did not alert on"
    assert at_slack == Counter(set(by_uuid)), "Slack: each committed alert exactly once, nothing else"
    assert at_syslog == Counter(set(by_uuid)), "rsyslog: each committed alert exactly once, nothing else"


def _syslog_uuids(release: Release) -> list[str]:
    return [m.group(1) for _, parsed in release.rsyslog.messages("tcp")
            if (m := re.search(r'uuid="([0-9a-f-]+)"', parsed["structured_data"]))]


def _ranges(numbers: list[int]) -> list[str]:
    runs: list[list[int]] = []
    for n in numbers:
        if runs and n == runs[-1][-1] + 1:
            runs[-1].append(n)
        else:
            runs.append([n])
    return [f"{r[0]}-{r[-1]}" if len(r) > 1 else str(r[0]) for r in runs]


def _around(committed: list[dict[str, Any]], missed: list[int]) -> dict[str, str]:
    """Event times of the last tick alerted before the first gap and of the first after it."""
    if not missed:
        return {}
    times = {int(m.group(1)): a["time"] for a in committed if (m := TICK.search(a["output"]))}
    before = [t for t in times if t < missed[0]]
    after = [t for t in times if t > missed[0]]
    return {"last_before": times[max(before)] if before else "",
            "first_after": times[min(after)] if after else ""}


def _alerts(release: Release) -> list[dict[str, Any]]:
    return [json.loads(v) for v in read_range(release.kafka.bootstrap, "peregrine.alerts")]


def _collector(release: Release) -> str:
    """The uid of the collector's pod."""
    labels = "app.kubernetes.io/component"
    (pod,) = [p for p in release.pods() if p["metadata"]["labels"][labels] == "collector"]
    return str(pod["metadata"]["uid"])
