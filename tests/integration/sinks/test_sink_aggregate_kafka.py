"""Alert storms on a real broker (issues 16 and 17): Slack gets a handful of messages whose counts add
up, the SIEM-like file gets every alert, another key is not held behind the storm, and a kill -9 of
the sink mid-window still gives exact counts with no summary lost or doubled."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from receivers import Receiver, Status
from test_sink_kafka import PARTITIONS, Service, Topics, produce, service, topics, wait_until

from sinks.aggregate import parse_metadata
from sinks.service import suppress_main

__all__ = ["service", "topics"]  # fixtures shared with test_sink_kafka
pytestmark = pytest.mark.kafka
SLACK_PATH = "/services/T0/B0/XXXX"
MORE = re.compile(r"and ([\d,]+) more like this")


def storm(alert_doc: Callable[..., dict[str, Any]], first: int, n: int, **changes: Any) -> list[bytes]:
    """``n`` alerts of one rule and pod, microseconds apart in event time."""
    return [
        json.dumps(alert_doc(uuid=f"00000000-0000-4000-8000-{i:012d}", priority="Critical",
                             time=f"2026-08-21T10:15:{30 + i // 1_000_000:02d}.{i % 1_000_000:06d}000Z",
                             **changes)).encode()
        for i in range(first, first + n)
    ]


def represented(slack: Receiver) -> tuple[int, int]:
    """(alerts the Slack messages stand for, summaries among them)."""
    total = summaries = 0
    with slack.lock:
        alerts = list(slack.alerts)
    for a in alerts:
        found = MORE.search(a["payload"]["attachments"][0]["blocks"][1]["text"]["text"])
        if found:
            summaries += 1
            total += int(found.group(1).replace(",", ""))
        else:
            total += 1
    return total, summaries


def lines(path: Path) -> int:
    return len(path.read_bytes().splitlines()) if path.exists() else 0


def test_a_storm_reaches_slack_as_a_handful_and_the_file_in_full(
    kafka_bootstrap: str,
    topics: Topics,
    service: Callable[..., Service],
    receiver: Callable[..., Receiver],
    alert_doc: Callable[..., dict[str, Any]],
    tmp_path: Path,
) -> None:
    n = 5000
    slack, path = receiver("slack", slack_path=SLACK_PATH), tmp_path / "siem.jsonl"
    other = json.dumps(alert_doc(uuid="00000000-0000-4000-9000-000000000001", priority="Warning",
                                 rule="Contact K8S API Server From Container", hostname="node-2",
                                 output_fields={"k8s.pod.name": "other-pod"})).encode()
    values = storm(alert_doc, 0, n // 2) + [other] + storm(alert_doc, n // 2, n - n // 2)
    svc = service([
        {"name": "slack", "type": "slack", "webhook_url_env": "SLACK_URL",
         "aggregate": {"window_s": 4, "sample_fields": ["proc.pid"]}},
        {"name": "siem", "type": "file", "path": str(path)},
    ], env={"SLACK_URL": slack.url + SLACK_PATH})
    produce(kafka_bootstrap, topics.alerts, values)
    assert wait_until(lambda: lines(path) == n + 1 and represented(slack)[0] == n + 1, 90), (
        lines(path), represented(slack))
    time.sleep(1)  # nothing more may come
    total, summaries = represented(slack)
    uuids = slack.uuids()
    print(f"\nstorm of {n}: {len(uuids)} Slack message(s), {summaries} summary(ies)")
    assert total == n + 1 and len(uuids) <= 6 and len(set(uuids)) == len(uuids)
    first_summary = min(i for i, a in enumerate(slack.alerts) if MORE.search(json.dumps(a["payload"])))
    assert uuids.index("00000000-0000-4000-9000-000000000001") < first_summary  # not behind the storm
    assert svc.finish() == 0
    assert svc.counter("folded")["slack"] == n - (len(uuids) - summaries - 1)
    assert svc.counter("summaries")["slack"] == summaries
    assert "siem" not in svc.counter("folded")


def test_without_aggregation_another_key_is_not_held_behind_a_storm_in_its_batch(
    kafka_bootstrap: str,
    topics: Topics,
    service: Callable[..., Service],
    receiver: Callable[..., Receiver],
    alert_doc: Callable[..., dict[str, Any]],
) -> None:
    slack = receiver("slack", slack_path=SLACK_PATH)
    other_uuid = "00000000-0000-4000-9000-000000000002"
    other = json.dumps(alert_doc(uuid=other_uuid, output_fields={"k8s.pod.name": "other-pod"})).encode()
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for value in [*storm(alert_doc, 0, 30), other]:  # one partition, the other alert last
        producer.produce(topics.alerts, value=value, key=b"node-1", partition=0)
    assert producer.flush(30) == 0
    svc = service([{"name": "slack", "type": "slack", "webhook_url_env": "SLACK_URL",
                    "pace": {"per_s": 20, "burst": 1}}], env={"SLACK_URL": slack.url + SLACK_PATH})
    assert slack.wait_for(31, timeout=60)
    position = slack.uuids().index(other_uuid)
    print(f"\nthe other key's alert arrived {position + 1}th of 31")
    assert position < 30  # round-robin within the batch: not after the whole storm
    assert svc.finish() == 0


def test_a_429_with_retry_after_delays_the_storm_and_loses_nothing(
    kafka_bootstrap: str,
    topics: Topics,
    service: Callable[..., Service],
    receiver: Callable[..., Receiver],
    alert_doc: Callable[..., dict[str, Any]],
) -> None:
    slack = receiver("slack", slack_path=SLACK_PATH)
    slack.respond(Status(429, {"Retry-After": "1"}, b"rate_limited"))
    svc = service([{"name": "slack", "type": "slack", "webhook_url_env": "SLACK_URL",
                    "aggregate": {"window_s": 2}}], env={"SLACK_URL": slack.url + SLACK_PATH})
    produce(kafka_bootstrap, topics.alerts, storm(alert_doc, 0, 500))
    assert wait_until(lambda: represented(slack)[0] == 500, 60), represented(slack)
    assert svc.finish() == 0
    uuids = slack.uuids()
    assert len(set(uuids)) == len(uuids) and len(uuids) <= 4  # a first and a summary per window
    assert svc.counter("retried")["slack"] == 1  # the 429, obeyed once


def committed_marks(bootstrap: str, group: str, topic: str) -> tuple[int, int, list[str]]:
    """(sum of committed offsets, sum of the marks in their metadata, the metadata)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        found = consumer.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=10)
    finally:
        consumer.close()
    metadata = [tp.metadata or "" for tp in found]
    replays = [parse_metadata(m) for m in metadata]
    marks = sum(r.mark for r in replays if r is not None)
    return sum(max(tp.offset, 0) for tp in found), marks, metadata


def start_sink(config: Path, slack: Receiver, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "SLACK_URL": slack.url + SLACK_PATH, "PEREGRINE_METRICS_PORT": "0"}
    return subprocess.Popen([sys.executable, "-m", "cli.main", "sink", "--config", str(config)],
                            env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT)


def test_a_kill_mid_window_loses_and_doubles_nothing(
    kafka_bootstrap: str,
    topics: Topics,
    receiver: Callable[..., Receiver],
    alert_doc: Callable[..., dict[str, Any]],
    tmp_path: Path,
) -> None:
    before, after = 2000, 1000
    slack, log = receiver("slack", slack_path=SLACK_PATH), tmp_path / "sink.log"
    config = tmp_path / "sink.yaml"
    config.write_text(json.dumps({
        "kafka": {"bootstrap_servers": kafka_bootstrap, "topic": topics.alerts, "dlq_topic": topics.dlq,
                  "group_prefix": topics.group_prefix},
        "batch": {"max_wait_s": 0.05},
        "destinations": [{"name": "slack", "type": "slack", "webhook_url_env": "SLACK_URL",
                          "aggregate": {"window_s": 15}}],
    }))
    group = f"{topics.group_prefix}-slack"
    process = start_sink(config, slack, log)
    try:
        produce(kafka_bootstrap, topics.alerts, storm(alert_doc, 0, before))
        # every record processed and committed, the window still open: the commit holds it back
        held = wait_until(lambda: committed_marks(kafka_bootstrap, group, topics.alerts)[1] == before, 60)
        offsets, marks, metadata = committed_marks(kafka_bootstrap, group, topics.alerts)
        assert held and len(slack.uuids()) == 1, (metadata, slack.uuids(), log.read_text())
        assert offsets < marks  # the open window's records will be read again
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        produce(kafka_bootstrap, topics.alerts, storm(alert_doc, before, after))
        process = start_sink(config, slack, log)
        assert wait_until(lambda: represented(slack)[0] >= before + after, 90), (
            represented(slack), log.read_text()[-3000:])
        time.sleep(2)  # a doubled summary would have come by now
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
    total, summaries = represented(slack)
    uuids = slack.uuids()
    print(f"\nkill -9 mid-window: {len(uuids)} Slack message(s), {summaries} summary(ies), {total} alerts")
    assert total == before + after and len(set(uuids)) == len(uuids) and len(uuids) <= 4


def test_a_suppression_added_by_the_cli_silences_its_key_and_is_counted(
    kafka_bootstrap: str,
    topics: Topics,
    service: Callable[..., Service],
    alert_doc: Callable[..., dict[str, Any]],
    tmp_path: Path,
) -> None:
    kafka = {"bootstrap_servers": kafka_bootstrap, "topic": topics.alerts, "dlq_topic": topics.dlq,
             "group_prefix": topics.group_prefix, "suppressions_topic": f"{topics.alerts}-suppressions"}
    path = tmp_path / "siem.jsonl"
    destinations = [{"name": "siem", "type": "file", "path": str(path)}]
    config = tmp_path / "sink.yaml"
    config.write_text(json.dumps({"kafka": kafka, "destinations": destinations}))
    assert suppress_main(["--config", str(config), "--match", "k8s.pod.name=noisy-*", "--for", "1h",
                          "--reason", "test"]) == 0
    svc = service(destinations, kafka=kafka)
    noisy = [json.dumps(alert_doc(uuid=f"00000000-0000-4000-8000-{i:012d}",
                                  output_fields={"k8s.pod.name": f"noisy-{i}"})).encode() for i in range(10)]
    quiet = [json.dumps(alert_doc(uuid=f"00000000-0000-4000-9000-{i:012d}")).encode() for i in range(5)]
    produce(kafka_bootstrap, topics.alerts, noisy + quiet)
    assert wait_until(lambda: lines(path) == 5 and svc.counter("suppressed").get("siem") == 10, 60), (
        lines(path), svc.counter("suppressed"))
    assert svc.finish() == 0
    delivered = {json.loads(line)["uuid"] for line in path.read_bytes().splitlines()}
    assert delivered == {f"00000000-0000-4000-9000-{i:012d}" for i in range(5)}
