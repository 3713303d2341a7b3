"""The sink's consumer settings: bounded fetch buffers, and a poll interval from the real work."""

from __future__ import annotations

from typing import Any

from sinks import runner
from sinks.config import parse_config


def _config(destination: dict[str, Any], **kafka: Any) -> Any:
    doc = {"kafka": {"bootstrap_servers": "127.0.0.1:9092", **kafka}, "destinations": [destination]}
    return parse_config(doc, "sinks.yaml", {"HEC_TOKEN": "t"})


def test_fetch_buffers_are_bounded_unless_the_file_tunes_them() -> None:
    config = _config({"name": "f", "type": "file", "path": "alerts.jsonl"})
    props = runner.consumer_properties(config.kafka, config.destinations[0])
    assert props["queued.max.messages.kbytes"] == 8192 and props["fetch.max.bytes"] == 4 * 1024 * 1024
    assert props["queued.min.messages"] == 2 * config.destinations[0].batch.max_alerts
    tuned = _config({"name": "f", "type": "file", "path": "a"}, properties={"fetch.max.bytes": "1048576"})
    assert runner.consumer_properties(tuned.kafka, tuned.destinations[0])["fetch.max.bytes"] == "1048576"


def test_the_poll_interval_covers_one_attempt_of_the_destination_not_a_guess() -> None:
    slow = _config({"name": "hec", "type": "splunk", "url": "http://hec", "token_env": "HEC_TOKEN",
                    "timeout_s": 200, "ack": True, "ack_timeout_s": 100})
    destination = slow.destinations[0]
    assert runner.attempt_limit_s(destination.settings) == 300
    interval = runner.consumer_properties(slow.kafka, destination)["max.poll.interval.ms"]
    assert interval == (2 * 300 + runner.POLL_MARGIN_S) * 1000
    quick = _config({"name": "f", "type": "file", "path": "a"})
    assert runner.consumer_properties(quick.kafka, quick.destinations[0])["max.poll.interval.ms"] == 300_000
