"""Running worker subprocesses against the real broker, and reading what they produced.

Every worker is a real process (`peregrine worker`, or the stand-in engine's entry point in
`worker_batches.py`) with its own app id and topics; `WorkerProcs` kills whatever is still running
at teardown. Reads use a read_committed confluent-kafka consumer, like any downstream consumer.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
PYTHON = sys.executable
TOPICS = ("events", "stats", "alerts", "dlq", "k8s", "control")  # the worker's --<name>-topic flags


@dataclass
class WorkerSetup:
    bootstrap: str
    tmp: Path
    partitions: int = 4
    guarantee: str = "exactly_once"
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    # topic-level configs by short name ("alerts": {"max.message.bytes": "16384"}), at creation
    topic_configs: dict[str, dict[str, str]] = field(default_factory=dict)

    def topic(self, name: str) -> str:
        return f"peregrine.{name}-{self.tag}"

    @property
    def app_id(self) -> str:
        return f"peregrine-worker-{self.tag}"

    def flags(self, rules: Iterable[Path], index: int) -> list[str]:
        out = [
            "--bootstrap", self.bootstrap,
            "--app-id", self.app_id,
            "--partitions", str(self.partitions),
            "--replication", "1",
            "--guarantee", self.guarantee,
            "--session-timeout", "6",
            "--heartbeat-interval", "1",
            "--commit-interval", "0.5",
            "--datadir", str(self.tmp / f"worker-{index}"),
            "--k8s-wait", "10",
            "--log-level", "info",
        ]
        for name in TOPICS:
            out += [f"--{name}-topic", self.topic(name)]
        for r in rules:
            out += ["--rules", str(r)]
        return out

    def create_topics(self) -> None:
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        configs = {"k8s": {"cleanup.policy": "compact"}, "control": {"cleanup.policy": "compact"}}
        configs = {n: {**configs.get(n, {}), **self.topic_configs.get(n, {})} for n in TOPICS}
        new = [NewTopic(self.topic(n), 1 if n == "control" else self.partitions, 1, config=c)
               for n, c in configs.items()]  # fmt: skip
        futures = admin.create_topics(new)
        for f in futures.values():
            f.result(30)


class WorkerProcs:
    """Started workers; `stop_all` (fixture teardown) kills every one still alive."""

    def __init__(self, setup: WorkerSetup) -> None:
        self.setup = setup
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: list[Path] = []

    def start(self, rules: Iterable[Path], *, standin: bool = True) -> subprocess.Popen[bytes]:
        index = len(self.procs)
        if standin:
            cmd = [PYTHON, str(HERE / "worker_batches.py")]
        else:
            cmd = [PYTHON, "-m", "cli.main", "worker"]
        log = self.setup.tmp / f"worker-{index}.log"
        env = {**os.environ, "PEREGRINE_METRICS_PORT": "0", "PYTHONPATH": str(REPO)}
        with log.open("wb") as out:
            argv = [*cmd, *self.setup.flags(rules, index)]
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO)
        self.procs.append(proc)
        self.logs.append(log)
        return proc

    def log_text(self, index: int) -> str:
        return self.logs[index].read_text(errors="replace")

    def describe(self) -> str:
        parts = []
        for i, p in enumerate(self.procs):
            tail = "\n".join(self.log_text(i).splitlines()[-25:])
            parts.append(f"--- worker {i} (exit {p.poll()}) log tail:\n{tail}")
        return "\n".join(parts)

    def stop_all(self) -> None:
        """SIGKILL: every check is made before teardown, on the test's own topics, and Faust's clean
        stop (commit, leave the group) cost 1-2 s per test that nothing here checked (a stop that hung
        was killed after 15 s all the same). Workers stopped by SIGTERM mid-stream are
        tests/cluster/test_upgrade.py's: the helm upgrade rolls them and counts every alert."""
        for p in self.procs:
            if p.poll() is None:
                p.kill()
        for p in self.procs:
            p.wait(timeout=10)


def replay(setup: WorkerSetup, capture: Path) -> None:
    """`peregrine replay` of a capture onto the setup's events and stats topics, as fast as it goes."""
    done = subprocess.run(
        [PYTHON, "-m", "cli.main", "replay", str(capture), "--max-rate",
         "--bootstrap", setup.bootstrap, "--events-topic", setup.topic("events"),
         "--stats-topic", setup.topic("stats")],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr


def open_producer(bootstrap: str) -> Producer:
    """An idempotent producer configured as the collector's; reuse it across sends, since each new
    one connects and fetches an idempotence id first (a tenth of a second or more on this machine)."""
    return Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "compression.type": "lz4",
                     "enable.idempotence": True, "message.max.bytes": 8_000_000})


def send(p: Producer, topic: str, records: Iterable[tuple[bytes, bytes]]) -> int:
    """Queue records on `p` (waiting while its queue is full) without flushing; returns how many."""
    n = 0
    for key, value in records:
        while True:
            try:
                p.produce(topic, value, key)
                break
            except BufferError:
                p.poll(0.1)
        p.poll(0)
        n += 1
    return n


def produce(bootstrap: str, topic: str, records: Iterable[tuple[bytes, bytes]]) -> int:
    p = open_producer(bootstrap)
    n = send(p, topic, records)
    left = p.flush(60)
    assert left == 0, f"{left} messages not delivered to {topic}"
    return n


@dataclass
class Record:
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]
    partition: int

    def json(self) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(self.value)
        return result


def consume_until(
    bootstrap: str,
    topic: str,
    done: Callable[[list[Record]], bool],
    timeout: float,
    settle: float = 0.0,
    on_timeout: Callable[[], str] = lambda: "",
) -> list[Record]:
    """Read `topic` from the start (read_committed) until `done(records)`, then `settle` seconds more
    (to catch duplicates that arrive late); AssertionError with `on_timeout()` after `timeout`."""
    c = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"check-{uuid.uuid4().hex[:8]}",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "isolation.level": "read_committed",
    })
    c.subscribe([topic])
    records: list[Record] = []
    deadline = time.monotonic() + timeout
    settle_until: float | None = None
    try:
        while True:
            now = time.monotonic()
            if settle_until is None and done(records):
                settle_until = now + settle
            if settle_until is not None and now >= settle_until:
                return records
            if now > deadline:
                raise AssertionError(
                    f"{topic}: not done after {timeout:.0f} s with {len(records)} records\n{on_timeout()}"
                )
            for m in c.consume(500, 0.5):
                if m.error():
                    if m.error().code() == -191:  # partition EOF
                        continue
                    raise KafkaException(m.error())
                records.append(Record(m.key(), m.value() or b"", list(m.headers() or []), m.partition()))
    finally:
        c.close()
