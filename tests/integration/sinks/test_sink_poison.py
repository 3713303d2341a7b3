"""Poison records on `peregrine.alerts` go to the DLQ with their reason while every destination flows.

A record that is not an alert as `alerts.wire` writes it (nested 100,000 deep, a 5,000-digit number,
an output field that is an array) once killed a runner thread with RecursionError and stopped the
whole sink service; restarted, it read the same record and died again. Here the real `peregrine
sink` process reads those records and then a good alert: the good alert reaches every destination,
each poison record is in the DLQ once per destination with the decoder's reason, and the process
is still running until SIGTERM ends it cleanly. A destination whose builder raises on one alert
dead-letters that alert and keeps delivering the next ones.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
import test_sink_kafka
from opentelemetry.sdk.metrics import MeterProvider
from receivers import Receiver
from test_sink_kafka import Topics, produce, read_all, wait_until

from sinks.alert import Alert
from sinks.base import ACCEPTED, Outcome
from sinks.config import parse_config
from sinks.metrics import create_metrics
from sinks.runner import Runner

pytestmark = pytest.mark.kafka
topics = test_sink_kafka.topics  # the fixture: test-named alerts and DLQ topics

GOOD_UUID = "00000000-0000-4000-8000-000000000001"


def poison(alert_doc: Callable[..., dict[str, Any]]) -> dict[bytes, str]:
    """Record value -> the words its DLQ detail must contain."""
    fields = json.dumps(alert_doc(uuid="poison-1", output_fields={"x": 0}))
    return {
        b"[" * 100_000 + b"]" * 100_000: "nested deeper than the JSON parser allows",
        fields.replace('"x": 0', '"x": ' + "9" * 5000).encode(): "not JSON",
        fields.replace('"x": 0', '"x": [[1]]').encode(): "output_fields['x'] is a list",
    }


def config_file(tmp_path: Path, bootstrap: str, topics: Topics, hook: Receiver, lines: Path) -> Path:
    path = tmp_path / "sink.yaml"
    doc = {
        "kafka": {"bootstrap_servers": bootstrap, "topic": topics.alerts, "dlq_topic": topics.dlq,
                  "group_prefix": topics.group_prefix},
        "batch": {"max_wait_s": 0.05},
        "destinations": [
            {"name": "hook", "type": "webhook", "url": hook.url + "/hook"},
            {"name": "file", "type": "file", "path": str(lines)},
        ],
    }
    path.write_text(json.dumps(doc))
    return path


def test_poison_records_are_dead_lettered_and_the_sink_process_keeps_delivering(
    kafka_bootstrap: str,
    topics: Topics,
    receiver: Callable[..., Receiver],
    alert_doc: Callable[..., dict[str, Any]],
    tmp_path: Path,
) -> None:
    hook, lines = receiver("webhook"), tmp_path / "alerts.jsonl"
    records = poison(alert_doc)
    produce(kafka_bootstrap, topics.alerts, list(records))
    produce(kafka_bootstrap, topics.alerts, [json.dumps(alert_doc(uuid=GOOD_UUID)).encode()])
    process = subprocess.Popen(
        [sys.executable, "-c", "import sys; from sinks.service import main; sys.exit(main(sys.argv[1:]))",
         "--config", str(config_file(tmp_path, kafka_bootstrap, topics, hook, lines))],
        env={**os.environ, "PEREGRINE_METRICS_PORT": "0"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        delivered = hook.wait_for(1, timeout=90) and wait_until(
            lambda: lines.exists() and len(lines.read_bytes().splitlines()) == 1, 60)
        dead = read_all(kafka_bootstrap, topics.dlq, 2 * len(records), timeout=60)
        alive = process.poll() is None
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
    log = output.decode("utf-8", errors="replace")
    assert delivered and alive and process.returncode == 0, log[-4000:]
    assert hook.uuids() == [GOOD_UUID] and json.loads(lines.read_bytes())["uuid"] == GOOD_UUID
    assert len(dead) == 2 * len(records)
    for message in dead:
        headers = dict(message.headers())
        assert headers["peregrine.dlq.reason"] == b"undecodable alert"
        assert records[message.value()] in headers["peregrine.dlq.detail"].decode()
        assert headers["peregrine.dlq.topic"] == topics.alerts.encode()
    destinations = sorted(dict(m.headers())["peregrine.dlq.destination"] for m in dead)
    assert destinations == [b"file"] * 3 + [b"hook"] * 3
    assert "Traceback" not in log and len(log) < 20_000  # bounded lines, not the records


class PickyDestination:
    """Raises in `build` for one alert (a builder defect), accepts the others."""

    max_batch = 10

    def __init__(self, bad_uuid: str) -> None:
        self.bad_uuid = bad_uuid
        self.sent: list[str] = []

    def build(self, alert: Alert) -> bytes:
        if alert.uuid == self.bad_uuid:
            raise KeyError("a field the builder did not expect")
        return alert.uuid.encode()

    def send(self, payloads: Sequence[bytes]) -> Outcome:
        self.sent += [p.decode() for p in payloads]
        return ACCEPTED

    def close(self) -> None:
        pass


def test_a_builder_failure_dead_letters_that_alert_and_the_runner_goes_on(
    kafka_bootstrap: str, topics: Topics, alert_doc: Callable[..., dict[str, Any]]
) -> None:
    uuids = [f"00000000-0000-4000-8000-{i:012d}" for i in range(6)]
    produce(kafka_bootstrap, topics.alerts, [json.dumps(alert_doc(uuid=u)).encode() for u in uuids])
    config = parse_config({
        "kafka": {"bootstrap_servers": kafka_bootstrap, "topic": topics.alerts, "dlq_topic": topics.dlq,
                  "group_prefix": topics.group_prefix},
        "batch": {"max_wait_s": 0.05},
        "destinations": [{"name": "picky", "type": "file", "path": "/dev/null"}],
    }, "test", {})
    destination, stop = PickyDestination(uuids[2]), threading.Event()
    runner = Runner(config.kafka, config.destinations[0], create_metrics(MeterProvider()), stop, destination)
    thread = threading.Thread(target=runner.run, name="picky-runner", daemon=True)
    thread.start()
    try:
        assert wait_until(lambda: len(destination.sent) == 5, 60)
        dead = read_all(kafka_bootstrap, topics.dlq, 1, timeout=30)
        assert thread.is_alive()
    finally:
        stop.set()
        thread.join(timeout=60)
    assert sorted(destination.sent) == sorted(set(uuids) - {uuids[2]})
    assert [dict(m.headers())["peregrine.dlq.reason"] for m in dead] == [b"build failed"]
    assert json.loads(dead[0].value())["uuid"] == uuids[2]
