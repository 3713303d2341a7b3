"""`peregrine rules backtest` against a real broker: the report's counts, the time window, the split
across processes, enrichment from `peregrine.k8s`, and that it leaves no trace on the bus.

The events are the shipped attack capture's batch, produced several times with chosen timestamps:
an old generation (3 hours ago, one copy per partition) and a recent one (10 minutes ago, two per
partition). The expected differences are computed independently, with `peregrine rules test` over
the capture file, alerts keyed by (evt.time, rule), and multiplied by the number of copies read.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from collectors.capture import read_capture
from collectors.wire import decode_batch
from enrichers.records import ContainerMeta, encode
from rules.record import P_CONTAINER_ID

pytestmark = pytest.mark.kafka

REPO = Path(__file__).resolve().parents[3]
CAPTURE = REPO / "devtools" / "data" / "attack_scenario.cap"
PEREGRINE_RULES = REPO / "rules" / "data" / "peregrine_rules.yaml"
PARTITIONS = 3
OLD_COPIES = PARTITIONS  # one per partition
NEW_COPIES = 2 * PARTITIONS
CHANGE = """\
- rule: "Peregrine: Package Management in Container"
  enabled: false
  override:
    enabled: replace

- rule: "Backtest: execve in a container"
  desc: every program started in a container
  condition: evt.type = execve and evt.dir = < and container.id != host
  output: "program started in a container (proc.cmdline=%proc.cmdline container=%container.id)"
  priority: INFO
"""


@dataclass(frozen=True)
class Bus:
    bootstrap: str
    events: str
    k8s: str
    alerts: str
    baseline: tuple[str, ...]
    new: tuple[str, ...]


def _capture_batch() -> bytes:
    batches = [f.value for f in read_capture(str(CAPTURE)) if f.kind == "events"]
    assert len(batches) == 1, "the test's copy counts assume the capture holds one events batch"
    return batches[0]


def _create(admin: AdminClient, topics: list[NewTopic]) -> None:
    for future in admin.create_topics(topics).values():
        future.result(30)


def _produce(bootstrap: str, topic: str, records: list[tuple[int | None, bytes, bytes | None, int]]) -> None:
    """(partition, key, value, timestamp ms) each."""
    p = Producer({"bootstrap.servers": bootstrap})
    for partition, key, value, ts in records:
        if partition is None:
            p.produce(topic, value, key, timestamp=ts)
        else:
            p.produce(topic, value, key, partition=partition, timestamp=ts)
    assert p.flush(30) == 0


@pytest.fixture(scope="module")
def bus(kafka_bootstrap: str, falco_rules_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Bus:
    tag = uuid.uuid4().hex[:8]
    events, k8s, alerts = f"bt-events-{tag}", f"bt-k8s-{tag}", f"bt-alerts-{tag}"
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    _create(admin, [NewTopic(events, PARTITIONS, 1), NewTopic(alerts, PARTITIONS, 1),
                    NewTopic(k8s, 1, 1, config={"cleanup.policy": "compact"})])  # fmt: skip
    batch = _capture_batch()
    now = int(time.time() * 1000)
    old = [(i % PARTITIONS, b"demo-node", batch, now - 3 * 3_600_000) for i in range(OLD_COPIES)]
    new = [(i % PARTITIONS, b"demo-node", batch, now - 600_000) for i in range(NEW_COPIES)]
    _produce(kafka_bootstrap, events, [*old, *new])
    change = tmp_path_factory.mktemp("backtest") / "change.yaml"
    change.write_text(CHANGE)
    baseline = (str(falco_rules_dir / "falco_rules.yaml"), str(PEREGRINE_RULES))
    return Bus(kafka_bootstrap, events, k8s, alerts, baseline, (*baseline, str(change)))


def backtest(bus: Bus, *args: str, rules: tuple[str, ...] | None = None,
             baseline: tuple[str, ...] | None = None, k8s: str | None = None) -> dict[str, Any]:  # fmt: skip
    flags = ["--bootstrap-servers", bus.bootstrap, "--events-topic", bus.events,
             "--k8s-topic", k8s or bus.k8s, "--json", *args]  # fmt: skip
    for path in bus.new if rules is None else rules:
        flags += ["--rules", path]
    for path in bus.baseline if baseline is None else baseline:
        flags += ["--baseline", path]
    done = subprocess.run([sys.executable, "-m", "cli.main", "rules", "backtest", *flags], cwd=REPO,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    doc: dict[str, Any] = json.loads(done.stdout)
    return doc


def rules_test_alerts(rules: tuple[str, ...]) -> Counter[tuple[object, str]]:
    """`peregrine rules test` over the capture: alerts as (evt.time, rule) -> count."""
    command = [sys.executable, "-m", "cli.main", "rules", "test", "--events", str(CAPTURE), "--rules", *rules]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    alerts = [json.loads(line) for line in done.stdout.splitlines()]
    return Counter((a["output_fields"]["evt.time"], a["rule"]) for a in alerts)


def expected(
    new: Counter[tuple[object, str]], base: Counter[tuple[object, str]], copies: int
) -> dict[str, dict[str, int]]:
    """Per rule: alerts only the new rules raise, only the baseline raises, both raise; per copy x copies."""
    rows: dict[str, Counter[str]] = {}
    for side, alerts in (("added", new - base), ("removed", base - new), ("unchanged", new & base)):
        for (_, rule), n in alerts.items():
            rows.setdefault(rule, Counter())[side] += n * copies
    return {rule: {k: row[k] for k in ("added", "removed", "unchanged")} for rule, row in rows.items()}


def counts(doc: dict[str, Any]) -> dict[str, dict[str, int]]:
    rows = doc["per_rule"].items()
    return {rule: {k: row[k] for k in ("added", "removed", "unchanged")} for rule, row in rows}


def end_offsets(bootstrap: str, topics: list[str]) -> dict[tuple[str, int], int]:
    from confluent_kafka import Consumer

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"probe-{uuid.uuid4().hex}"})
    try:
        out = {}
        for topic in topics:
            for p in c.list_topics(topic, timeout=10).topics[topic].partitions:
                out[(topic, p)] = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
        return out
    finally:
        c.close()


def backtest_groups(bootstrap: str) -> list[str]:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    listed = admin.list_consumer_groups().result(30)
    return [g.group_id for g in listed.valid if g.group_id.startswith("peregrine-backtest")]


@pytest.fixture(scope="module")
def per_copy(bus: Bus) -> Iterator[tuple[Counter[tuple[object, str]], Counter[tuple[object, str]]]]:
    yield rules_test_alerts(bus.new), rules_test_alerts(bus.baseline)


def test_the_report_counts_what_rules_test_finds_and_the_bus_is_untouched(bus: Bus, per_copy: Any) -> None:
    admin = AdminClient({"bootstrap.servers": bus.bootstrap})
    topics_before = set(admin.list_topics(timeout=10).topics) - {"__consumer_offsets"}
    ends_before = end_offsets(bus.bootstrap, [bus.events, bus.k8s, bus.alerts])
    doc = backtest(bus, "--since", "1h", "--processes", "1")
    new, base = per_copy
    assert counts(doc) == expected(new, base, NEW_COPIES)
    # the change as designed: the disabled rule is removed, the new one added, the others unchanged
    assert doc["per_rule"]["Peregrine: Package Management in Container"]["removed"] == NEW_COPIES
    assert doc["per_rule"]["Backtest: execve in a container"]["added"] > 0
    assert doc["rules_only_new"] == ["Backtest: execve in a container"]
    assert doc["rules_only_baseline"] == ["Peregrine: Package Management in Container"]
    assert doc["batches"] == NEW_COPIES and doc["events"] == NEW_COPIES * 268
    assert doc["undecodable_batches"] == 0 and doc["failed_batches"] == 0
    samples = doc["per_rule"]["Backtest: execve in a container"]["samples"]["added"]
    assert len(samples) == 3 and all(s["node"] == "demo-node" for s in samples)
    assert [(s["partition"], s["offset"], s["index"]) for s in samples] == sorted(
        (s["partition"], s["offset"], s["index"]) for s in samples
    )
    # read-only: nothing produced anywhere, no topic made, no group committed (or even known)
    assert end_offsets(bus.bootstrap, [bus.events, bus.k8s, bus.alerts]) == ends_before
    assert ends_before[(bus.alerts, 0)] == 0
    # (the broker makes its internal offsets topic at the first coordinator lookup of any consumer)
    assert set(admin.list_topics(timeout=10).topics) - {"__consumer_offsets"} == topics_before
    assert backtest_groups(bus.bootstrap) == []


def test_since_and_until_choose_the_generations(bus: Bus, per_copy: Any) -> None:
    new, base = per_copy
    both = backtest(bus, "--since", "4h", "--processes", "1")
    assert both["batches"] == OLD_COPIES + NEW_COPIES
    assert counts(both) == expected(new, base, OLD_COPIES + NEW_COPIES)
    old_only = backtest(bus, "--since", "4h", "--until", "1h", "--processes", "1")
    assert old_only["batches"] == OLD_COPIES
    assert counts(old_only) == expected(new, base, OLD_COPIES)


def test_two_processes_give_the_same_report_as_one(bus: Bus) -> None:
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 4 * 3600))  # one window for both
    one = backtest(bus, "--since", since, "--processes", "1", "--samples", "5")
    two = backtest(bus, "--since", since, "--processes", "2", "--samples", "5")
    assert two["run"]["processes"] == 2 and one["run"]["processes"] == 1
    del one["run"], two["run"]
    assert two == one


def test_without_a_baseline_every_alert_is_added(bus: Bus, per_copy: Any) -> None:
    new, _ = per_copy
    doc = backtest(bus, "--since", "1h", "--processes", "1", baseline=())
    assert counts(doc) == expected(new, Counter(), NEW_COPIES)
    assert doc["totals"]["removed"] == 0 and doc["totals"]["unchanged"] == 0


def test_events_are_enriched_from_the_k8s_topic(bus: Bus, tmp_path: Path) -> None:
    """A rule on the namespace fires only with the table's record for the capture's container; the
    expectation is the same rule on the container id, by `rules test` (which has no metadata)."""
    procs = decode_batch(_capture_batch()).procs
    cid = next(str(p[P_CONTAINER_ID]) for p in procs if p[P_CONTAINER_ID] != "host")
    meta = ContainerMeta(cid, "containerd", "app", "nginx:1", "nginx", "1", None, False, None, (),
                         "backtest-ns", "app-pod", "uid-1", {"app": "web"}, None, "demo-node")  # fmt: skip
    k8s = f"bt-k8s-enriched-{uuid.uuid4().hex[:8]}"
    _create(AdminClient({"bootstrap.servers": bus.bootstrap}),
            [NewTopic(k8s, 1, 1, config={"cleanup.policy": "compact"})])  # fmt: skip
    key, value = encode(meta)
    _produce(bus.bootstrap, k8s, [(None, key, value, int(time.time() * 1000))])
    rule = """- rule: In the namespace\n  desc: d\n  condition: evt.type = execve and evt.dir = < and {cond}
  output: "in %k8s.ns.name (%proc.cmdline)"\n  priority: WARNING\n"""
    by_ns, by_id = tmp_path / "ns.yaml", tmp_path / "id.yaml"
    by_ns.write_text(rule.format(cond="k8s.ns.name = backtest-ns"))
    by_id.write_text(rule.format(cond=f"container.id = {cid[:12]}"))
    doc = backtest(bus, "--since", "1h", "--processes", "1", rules=(str(by_ns),), baseline=(), k8s=k8s)
    per_batch = sum(rules_test_alerts((str(by_id),)).values())
    assert per_batch > 0
    assert doc["k8s"]["containers"] == 1
    assert counts(doc) == {"In the namespace": {"added": per_batch * NEW_COPIES, "removed": 0,
                                                "unchanged": 0}}  # fmt: skip
    sample = doc["per_rule"]["In the namespace"]["samples"]["added"][0]
    assert "in backtest-ns (" in sample["output"]


def test_a_missing_topic_is_an_error_naming_it(bus: Bus) -> None:
    missing = f"bt-missing-{uuid.uuid4().hex[:8]}"
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", "rules", "backtest", "--bootstrap-servers", bus.bootstrap,
         "--events-topic", missing, "--no-k8s", "--since", "1h", "--rules", str(PEREGRINE_RULES)],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 1
    assert missing in done.stderr


def test_the_text_report_has_a_line_per_rule_and_the_totals(bus: Bus, per_copy: Any) -> None:
    new, base = per_copy
    flags = ["--bootstrap-servers", bus.bootstrap, "--events-topic", bus.events, "--k8s-topic", bus.k8s,
             "--since", "1h", "--processes", "1", "--samples", "1"]  # fmt: skip
    for path in bus.new:
        flags += ["--rules", path]
    for path in bus.baseline:
        flags += ["--baseline", path]
    done = subprocess.run([sys.executable, "-m", "cli.main", "rules", "backtest", *flags], cwd=REPO,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    rows = {line.rsplit(None, 3)[0]: tuple(map(int, line.rsplit(None, 3)[1:]))
            for line in lines[1:] if not line.startswith(" ") and line.count(" ") > 3 and line[-1].isdigit()}
    want = expected(new, base, NEW_COPIES)
    assert rows == {rule: (c["added"], c["removed"], c["unchanged"]) for rule, c in want.items()}
    assert "    added p" in done.stdout and "    removed p" in done.stdout
    assert lines[-1].startswith(f"{NEW_COPIES * 268} events in {NEW_COPIES} batches")
