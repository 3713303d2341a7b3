"""The whole pipeline as real processes, and what its receivers got.

`Pipeline` starts `python -m cli.main collect|worker|sink|k8s-meta|replay` as subprocesses on
test-unique topics (``peregrine.<name>-<tag>``), consumer groups and app ids, logs each to a file
in the test's tmp directory, and kills whatever still runs at teardown (SIGTERM, then SIGKILL).
Topics are created up front, so a sink or worker never subscribes to a topic that is not there.

`Arrivals` polls the Slack stand-in and rsyslogd's files and notes, per alert uuid, the wall-clock
time the alert was first seen there: polling every 5 ms, so receipt times are late by up to that.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient, NewTopic
from receivers import SLACK_PATH, Receiver, Rsyslog
from worker_harness import WorkerProcs, WorkerSetup, produce

from enrichers.records import Meta, encode
from sinks.alert import parse_time_ns

REPO = Path(__file__).resolve().parents[2]
FALCO_RULE_FILES = ("falco_rules.yaml", "falco-incubating_rules.yaml")
PEREGRINE_RULES = REPO / "rules" / "data" / "peregrine_rules.yaml"
ATTACK_CAPTURE = REPO / "devtools" / "data" / "attack_scenario.cap"
COLLECTOR_READY = "peregrine collector ready"
SLACK_URL_ENV = "E2E_SLACK_WEBHOOK_URL"
_SD_UUID = re.compile(r'uuid="([0-9a-f-]+)"')


def rule_files(falco_rules_dir: Path) -> list[Path]:
    """Falco's stable and incubating rules, then Peregrine's own: the shipped default set."""
    return [*(falco_rules_dir / name for name in FALCO_RULE_FILES), PEREGRINE_RULES]


@dataclass
class Service:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for_line(self, needle: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if needle in self.text():
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"{self.name} never logged {needle!r} (exit {self.proc.poll()}):\n{self.tail()}")

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.text().splitlines()[-lines:])


@dataclass
class Pipeline:
    bootstrap: str
    tmp: Path
    services: list[Service] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.setup = WorkerSetup(self.bootstrap, self.tmp, partitions=2)
        self.setup.create_topics()
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        for future in admin.create_topics([NewTopic(self.topic("alerts-dlq"), 1, 1)]).values():
            future.result(30)
        self.workers = WorkerProcs(self.setup)

    def topic(self, name: str) -> str:
        return self.setup.topic(name)

    @property
    def sink_group_prefix(self) -> str:
        return f"peregrine-sink-{self.setup.tag}"

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        return {**os.environ, "PEREGRINE_METRICS_PORT": "0", "PYTHONPATH": str(REPO), **(extra or {})}

    def start(self, name: str, role_argv: Sequence[str], env: dict[str, str] | None = None) -> Service:
        log = self.tmp / f"{name}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "cli.main", *role_argv],
                stdout=out, stderr=subprocess.STDOUT, env=self.env(env), cwd=REPO,
            )
        service = Service(name, proc, log)
        self.services.append(service)
        return service

    def start_worker(self, rules: Iterable[Path]) -> None:
        self.workers.start(rules, standin=False)

    def start_sink(self, destinations: list[dict[str, Any]], env: dict[str, str] | None = None) -> Service:
        config = {
            "kafka": {
                "bootstrap_servers": self.bootstrap,
                "topic": self.topic("alerts"),
                "dlq_topic": self.topic("alerts-dlq"),
                "group_prefix": self.sink_group_prefix,
            },
            "batch": {"max_alerts": 100, "max_wait_s": 0.02},
            "retry": {"max_attempts": 5, "initial_backoff_s": 0.1, "max_backoff_s": 1.0},
            "destinations": destinations,
        }
        path = self.tmp / "sink.yaml"
        path.write_text(yaml.safe_dump(config))
        return self.start("sink", ["sink", "--config", str(path)], env)

    def start_k8s_meta(self, kubeconfig: Path) -> Service:
        return self.start("k8s-meta", [
            "k8s-meta", "--kubeconfig", str(kubeconfig), "--bootstrap-servers", self.bootstrap,
            "--topic", self.topic("k8s"), "--tombstone-grace", "60",
        ])

    def start_collector(self, node: str, rules: Iterable[Path], *extra: str, timeout: float = 180) -> Service:
        argv = ["collect", "--bootstrap", self.bootstrap, "--node", node,
                "--events-topic", self.topic("events"), "--stats-topic", self.topic("stats"), *extra]
        for r in rules:
            argv += ["--rules", str(r)]
        service = self.start(f"collector-{node}", argv)
        service.wait_for_line(COLLECTOR_READY, timeout)
        return service

    def publish_k8s(self, records: Iterable[Meta]) -> None:
        """Records in k8s-meta's own format, for tests that have no API server."""
        produce(self.bootstrap, self.topic("k8s"), [encode(m) for m in records])

    def replay(self, capture: Path = ATTACK_CAPTURE) -> dict[str, Any]:
        done = subprocess.run(
            [sys.executable, "-m", "cli.main", "replay", str(capture), "--max-rate",
             "--bootstrap", self.bootstrap,
             "--events-topic", self.topic("events"), "--stats-topic", self.topic("stats")],
            capture_output=True, text=True, env=self.env(), cwd=REPO, timeout=120,
        )
        assert done.returncode == 0, f"replay failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
        summary: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        return summary

    def wait_groups_stable(self, timeout: float = 120) -> None:
        """Wait until the worker's group and every sink group have members holding partitions,
        so that what a test measures afterwards is the pipeline, not its start-up."""
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        groups = [self.setup.app_id]
        groups += [f"{self.sink_group_prefix}-{n}" for n in self.sink_destinations()]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            described = admin.describe_consumer_groups(groups)
            ready = 0
            for future in described.values():
                try:
                    group = future.result(10)
                except Exception:  # not known to the coordinator yet
                    continue
                assigned = [m for m in group.members if m.assignment and m.assignment.topic_partitions]
                ready += bool(str(group.state).endswith("STABLE") and assigned)
            if ready == len(groups):
                return
            time.sleep(0.5)
        raise AssertionError(f"consumer groups {groups} not stable after {timeout:.0f} s\n{self.describe()}")

    def sink_destinations(self) -> list[str]:
        path = self.tmp / "sink.yaml"
        if not path.exists():
            return []
        return [d["name"] for d in yaml.safe_load(path.read_text())["destinations"]]

    def check_alive(self) -> None:
        dead = [s for s in self.services if s.proc.poll() is not None]
        dead_workers = [p for p in self.workers.procs if p.poll() is not None]
        if dead or dead_workers:
            raise AssertionError(f"a pipeline process exited\n{self.describe()}")

    def describe(self) -> str:
        parts = [self.workers.describe()]
        for s in self.services:
            parts.append(f"--- {s.name} (exit {s.proc.poll()}) log tail:\n{s.tail()}")
        return "\n".join(parts)

    def stop_all(self) -> None:
        self.workers.stop_all()
        for s in self.services:
            if s.proc.poll() is None:
                s.proc.send_signal(signal.SIGTERM)
        for s in self.services:
            try:
                s.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                s.proc.kill()
                s.proc.wait(timeout=10)


def slack_destination(receiver: Receiver) -> tuple[dict[str, Any], dict[str, str]]:
    """The Slack destination entry and the environment holding its webhook URL (the secret)."""
    entry = {"name": "slack", "type": "slack", "webhook_url_env": SLACK_URL_ENV}
    return entry, {SLACK_URL_ENV: receiver.url + SLACK_PATH}


def syslog_destination(rsyslog: Rsyslog) -> dict[str, Any]:
    return {"name": "siem-syslog", "type": "syslog", "host": "127.0.0.1", "port": rsyslog.tcp_port,
            "format": "cef"}


@dataclass
class Delivered:
    """One alert as a receiver got it, and when it was first seen there (epoch ns)."""

    uuid: str
    seen_ns: int
    event_ns: int
    rule: str
    hostname: str
    text: str  # the alert's output as the destination carries it (Slack mrkdwn, CEF msg)
    raw: Any


def _slack_delivered(record: dict[str, Any], seen_ns: int) -> Delivered:
    payload = record["payload"]
    blocks = payload["attachments"][0]["blocks"]
    footer = blocks[-1]["elements"][0]["text"]
    fields = dict(f["text"].split("\n", 1) for f in blocks[2]["fields"])
    return Delivered(record["uuid"], seen_ns, parse_time_ns(footer.split(" · ", 1)[0]), fields["rule"],
                     fields.get("hostname", ""), _slack_plain(blocks[1]["text"]["text"]), payload)


def _slack_plain(text: str) -> str:
    """The alert output back from Slack's inert rendering (`sinks.slack`): entities, visible line
    breaks and defanged URL schemes undone (a literal "hxxp" in an output would read as "http")."""
    text = re.sub(r"(?i)\b(h)xx(ps?:)", r"\1tt\2", text)
    text = re.sub(r"(?i)\b(f)x(p:)", r"\1t\2", text)
    text = text.replace("\\n", "\n").replace("\\r", "\r")
    return text.replace("&gt;", ">").replace("&lt;", "<").replace("&amp;", "&")


def _syslog_delivered(raw: str, parsed: dict[str, str], seen_ns: int) -> Delivered:
    found = _SD_UUID.search(parsed["structured_data"])
    assert found, parsed
    rule = re.search(r'rule="((?:[^"\\]|\\.)*)"', parsed["structured_data"])
    msg = parsed["msg"].split(" msg=", 1)[1] if " msg=" in parsed["msg"] else ""
    text = msg.replace("\\=", "=").replace("\\\\", "\\")
    event_ns = parse_time_ns(parsed["timestamp"])  # RFC 5424 TIMESTAMP: the event's time, in microseconds
    return Delivered(found.group(1), seen_ns, event_ns, rule.group(1) if rule else "",
                     parsed["hostname"], text, (raw, parsed))


@dataclass
class Arrivals:
    slack: Receiver
    rsyslog: Rsyslog
    at_slack: dict[str, Delivered] = field(default_factory=dict)
    at_syslog: dict[str, Delivered] = field(default_factory=dict)
    _slack_read: int = 0
    _syslog_offsets: list[int] = field(default_factory=lambda: [0, 0])

    def poll(self) -> None:
        now = time.time_ns()
        with self.slack.lock:
            records = self.slack.alerts[self._slack_read:]
        self._slack_read += len(records)
        for r in records:
            self.at_slack.setdefault(r["uuid"], _slack_delivered(r, now))
        for raw, parsed in self._new_syslog_messages():
            d = _syslog_delivered(raw, parsed, now)
            self.at_syslog.setdefault(d.uuid, d)

    def _new_syslog_messages(self) -> list[tuple[str, dict[str, Any]]]:
        """Lines rsyslogd appended to both of its files since the last poll: reading only what is
        new keeps the poll cheap when the host's own activity floods the SIEM with alerts."""
        chunks = []
        for i, ext in enumerate(("raw", "jsonl")):
            path = self.rsyslog.directory / f"tcp.{ext}"
            if not path.exists():
                return []
            with path.open("rb") as f:
                f.seek(self._syslog_offsets[i])
                chunks.append(f.read().split(b"\n")[:-1])  # complete lines only
        n = min(len(c) for c in chunks)
        for i in range(2):
            self._syslog_offsets[i] += sum(len(line) + 1 for line in chunks[i][:n])
        return [(chunks[0][j].decode(), json.loads(chunks[1][j])) for j in range(n)]

    def wait(self, done: Callable[[Arrivals], bool], timeout: float, describe: Callable[[], str]) -> None:
        deadline = time.monotonic() + timeout
        while True:
            self.poll()
            if done(self):
                return
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"receivers not done after {timeout:.0f} s: slack {self.summary(self.at_slack)}, "
                    f"syslog {self.summary(self.at_syslog)}\n{describe()}"
                )
            time.sleep(0.005)

    def settle(self, seconds: float) -> None:
        """Keep polling a while, so a duplicate or an unexpected alert arriving late is seen."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.poll()
            time.sleep(0.05)

    @staticmethod
    def summary(found: dict[str, Delivered]) -> str:
        counts = Counter(d.rule for d in found.values())
        return f"{len(found)} alerts, most common {counts.most_common(8)}"


def kafka_time_ns(bootstrap: str, topic: str, needle: bytes, timeout: float = 60.0) -> int:
    """The Kafka timestamp (the producer's create time) of the first committed record of `topic`
    whose value contains `needle`: where an alert's latency went, hop by hop."""
    consumer = Consumer({
        "bootstrap.servers": bootstrap, "group.id": f"e2e-probe-{uuid.uuid4().hex[:8]}",
        "auto.offset.reset": "earliest", "enable.auto.commit": False, "isolation.level": "read_committed",
    })
    consumer.subscribe([topic])
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            for m in consumer.consume(1000, 0.5):
                if m.error() is None and needle in (m.value() or b""):
                    return int(m.timestamp()[1]) * 1_000_000
    finally:
        consumer.close()
    raise AssertionError(f"{topic}: no record holding {needle!r} within {timeout:.0f} s")


class TopicTail:
    """A read_committed consumer in a thread noting when each record became visible (epoch ns):
    the moment a downstream consumer such as the sink could first have read it."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.seen: list[tuple[int, bytes]] = []
        self._stop = threading.Event()
        self._consumer = Consumer({
            "bootstrap.servers": bootstrap, "group.id": f"e2e-tail-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest", "enable.auto.commit": False,
            "isolation.level": "read_committed", "fetch.wait.max.ms": 10,
        })
        self._consumer.subscribe([topic])
        self._thread = threading.Thread(target=self._run, name=f"tail-{topic}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for m in self._consumer.consume(1000, 0.05):
                if m.error() is None:
                    self.seen.append((time.time_ns(), m.value() or b""))
        self._consumer.close()

    def first(self, needle: bytes) -> int:
        return next(t for t, value in self.seen if needle in value)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
