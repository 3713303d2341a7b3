"""`peregrine replay`: the shipped capture goes to Kafka byte for byte, no root needed."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from confluent_kafka import Consumer

from collectors.capture import read_capture

CAPTURE = Path(__file__).resolve().parents[2] / "devtools" / "data" / "attack_scenario.cap"
REPO = Path(__file__).resolve().parents[2]


@pytest.mark.kafka
def test_replay_publishes_the_capture_byte_for_byte(kafka_bootstrap: str,
                                                    unique_topic: Callable[[str], str]) -> None:
    events_topic, stats_topic = unique_topic("replay-events"), unique_topic("replay-stats")
    out = subprocess.run(
        [sys.executable, "-m", "collectors.service", "replay", str(CAPTURE), "--bootstrap", kafka_bootstrap,
         "--events-topic", events_topic, "--stats-topic", stats_topic, "--max-rate"],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=True,
    )
    frames = list(read_capture(str(CAPTURE)))
    want = [f.value for f in frames if f.kind == "events"]
    assert f'"events": {len(want)}' in out.stdout and '"undelivered": 0' in out.stdout
    c = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": f"t-{uuid.uuid4().hex[:8]}",
                  "auto.offset.reset": "earliest"})
    c.subscribe([events_topic])
    got: list[bytes] = []
    deadline = time.monotonic() + 60
    try:
        while len(got) < len(want) and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is not None and not m.error():
                got.append(m.value())
                assert m.key() == frames[0].key
    finally:
        c.close()
    assert got == want
