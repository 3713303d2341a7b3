"""`helm upgrade` with a changed rules ConfigMap (issue #15 §3): the workers (and the collector,
which captures what the rules need) roll to the new rules while a pod keeps raising alerts, and
counted by uuid across the upgrade no alert is lost or doubled: every alert the workers committed
to `peregrine.alerts` reaches the Slack stand-in and rsyslogd exactly once, and no event has two
alerts. The old rules file knows `marker-one`, the new one `marker-two` too.

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
from confluent_kafka import Consumer, KafkaError

from .helm_release import DEADLINE_S, Release, Target, target_pod

pytestmark = [pytest.mark.kubelet, pytest.mark.root, pytest.mark.kafka]

UPGRADE = Path(__file__).with_name("upgrade-rules.yaml")
RULE = "Peregrine test marker"
TICK = re.compile(r"command=marker-one tick-(\d+) ")


@pytest.fixture(scope="module")
def pod(release: Release, image_ref: str) -> Iterator[Target]:
    yield from target_pod(release, image_ref)


def committed_alerts(bootstrap: str, topic: str) -> list[dict[str, Any]]:
    """Every alert of `topic` a read_committed consumer sees, from the start to the end."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"upgrade-{uuid.uuid4().hex[:8]}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False,
                         "isolation.level": "read_committed", "enable.partition.eof": True})
    consumer.subscribe([topic])
    found: list[dict[str, Any]] = []
    at_end: set[int] = set()
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            for m in consumer.consume(500, 0.5):
                error = m.error()
                if error is not None and error.code() == KafkaError._PARTITION_EOF:
                    at_end.add(m.partition())
                elif error is None:
                    found.append(json.loads(m.value() or b"{}"))
            assignment = consumer.assignment()
            if assignment and at_end >= {tp.partition for tp in assignment}:
                return found
    finally:
        consumer.close()
    raise AssertionError(f"{topic}: not read to its end in 60 s ({len(found)} alerts so far)")


def test_helm_upgrade_of_the_rules_loses_and_doubles_no_alert(release: Release, pod: Target) -> None:
    node = release.node
    run = ["exec", "-n", pod.namespace, pod.name, "--", "bash", "-c"]
    node.kubectl(*run, "ln -sf /bin/true /tmp/marker-one && ln -sf /bin/true /tmp/marker-two && "
                 "/tmp/marker-two before-upgrade")
    ticking = ("i=0; while [ ! -e /tmp/stop ]; do i=$((i+1)); /tmp/marker-one tick-$i; sleep 0.2; done; "
               "echo $i")
    ticker = subprocess.Popen(pod.exec_argv(node, "bash", "-c", ticking), stdout=subprocess.PIPE, text=True)
    try:
        pod.wait_for_rules({RULE}, release.describe)  # ticks alert before the upgrade
        t0 = time.monotonic()
        release.install(UPGRADE, verb="upgrade")
        upgraded_s = time.monotonic() - t0
        node.kubectl(*run, "/tmp/marker-two after-upgrade")
        pod.arrivals.wait(lambda a: any("command=marker-two after-upgrade " in d.text
                                        for d in pod.mine(a.at_slack).values()), DEADLINE_S, release.describe)
    finally:
        node.kubectl(*run, "touch /tmp/stop", check=False)
        out, _ = ticker.communicate(timeout=60)
    last = int(out.strip().splitlines()[-1])
    pod.arrivals.wait(lambda a: any(f"command=marker-one tick-{last} " in d.text
                                    for d in pod.mine(a.at_slack).values()), DEADLINE_S, release.describe)
    pod.arrivals.settle(3.0)

    mark = f"container_id={pod.container_id[:12]}"
    committed = [a for a in committed_alerts(release.kafka.bootstrap, "peregrine.alerts")
                 if a.get("rule") == RULE and mark in a.get("output", "")]
    by_uuid = Counter(a["uuid"] for a in committed)
    # the marker alerts of this pod: committed, or seen at either receiver
    ours = set(by_uuid) | {u for found in (pod.arrivals.at_slack, pod.arrivals.at_syslog)
                           for u, d in pod.mine(found).items() if d.rule == RULE}
    at_slack = Counter(u for u in release.slack.uuids() if u in ours)
    at_syslog = Counter(u for u in _syslog_uuids(release) if u in ours)
    ticks = Counter(int(m.group(1)) for a in committed if (m := TICK.search(a["output"])))
    missed = sorted(set(range(1, last + 1)) - set(ticks))
    summary = {"helm_upgrade_s": round(upgraded_s, 1), "ticks": last, "alerts": len(by_uuid),
               "ticks_not_seen": missed}
    print(f"\n{json.dumps(summary)}")
    assert not any("before-upgrade" in a["output"] for a in committed), "marker-two alerted before its rule"
    assert any("command=marker-two after-upgrade " in a["output"] for a in committed)
    assert [u for u, n in by_uuid.items() if n > 1] == [], "an alert committed twice"
    assert [t for t, n in ticks.items() if n > 1] == [], "an event alerted twice"
    assert at_slack == Counter(set(by_uuid)), "Slack: each committed alert exactly once, nothing else"
    assert at_syslog == Counter(set(by_uuid)), "rsyslog: each committed alert exactly once, nothing else"


def _syslog_uuids(release: Release) -> list[str]:
    return [m.group(1) for _, parsed in release.rsyslog.messages("tcp")
            if (m := re.search(r'uuid="([0-9a-f-]+)"', parsed["structured_data"]))]
