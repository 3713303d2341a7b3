"""`peregrine sink --config FILE` as a process: delivers, stops cleanly on SIGTERM, never logs secrets."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from receivers import Receiver, Status
from test_sink_kafka import Topics, produce, topics, wait_until

from sinks.service import main

__all__ = ["topics"]  # fixture shared with test_sink_kafka

HEC_SECRET = "0d5d7c1e-SECRET-HEC-TOKEN"
SLACK_SECRET_PATH = "/services/T0SECRET/B0SECRET/SECRETSECRETSECRET"


def test_an_invalid_config_exits_2_without_the_secret(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "sink.yaml"
    path.write_text(
        "kafka: {bootstrap_servers: k}\ndestinations: [{name: s, type: splunk, url: x, token_env: T}]\n"
    )
    monkeypatch.setenv("T", HEC_SECRET)
    assert main(["--config", str(path)]) == 2
    assert "destinations[0].url: must be an http" in caplog.text and HEC_SECRET not in caplog.text


@pytest.mark.kafka
def test_the_process_delivers_stops_on_sigterm_and_keeps_secrets_out_of_its_logs(
    kafka_bootstrap: str,
    topics: Topics,
    receiver: Callable[..., Receiver],
    alert_doc: Callable[..., dict[str, Any]],
    tmp_path: Path,
) -> None:
    hec, slack = receiver("splunk", hec_token=HEC_SECRET), receiver("slack", slack_path=SLACK_SECRET_PATH)
    hec.respond(Status(503, {}, HEC_SECRET.encode()))  # a receiver echoing the token in an error
    slack.respond(Status(500, {}, f"upstream error for {SLACK_SECRET_PATH}".encode()))
    lines = tmp_path / "alerts.jsonl"
    config = tmp_path / "sink.yaml"
    config.write_text(
        json.dumps(
            {
                "kafka": {
                    "bootstrap_servers": kafka_bootstrap,
                    "topic": topics.alerts,
                    "dlq_topic": topics.dlq,
                    "group_prefix": topics.group_prefix,
                },
                "retry": {"initial_backoff_s": 0.05, "max_backoff_s": 0.2},
                "batch": {"max_wait_s": 0.05},
                "destinations": [
                    {"name": "hec", "type": "splunk", "url": hec.url, "token_env": "HEC_TOKEN"},
                    # unpaced: Slack's default 1 message/s made 15 s of this test's 21 requests
                    {"name": "slack", "type": "slack", "webhook_url_env": "SLACK_URL", "pace": {"per_s": 0}},
                    {"name": "file", "type": "file", "path": str(lines)},
                ],
            }
        )
    )
    slack_url = slack.url + SLACK_SECRET_PATH
    env = {**os.environ, "HEC_TOKEN": HEC_SECRET, "SLACK_URL": slack_url, "PEREGRINE_METRICS_PORT": "0"}
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from sinks.service import main; sys.exit(main(sys.argv[1:]))",
            "--config",
            str(config),
            "--log-level",
            "DEBUG",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    uuids = [f"00000000-0000-4000-8000-{i:012d}" for i in range(20)]
    try:
        values = [json.dumps(alert_doc(uuid=u, priority="Critical")).encode() for u in uuids]
        produce(kafka_bootstrap, topics.alerts, values)
        delivered = (
            hec.wait_for(20, timeout=90)
            and slack.wait_for(20, timeout=60)
            and wait_until(lambda: lines.exists() and len(lines.read_bytes().splitlines()) == 20, 60)
        )
        time.sleep(0.5)
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
    log = output.decode("utf-8", errors="replace")
    assert delivered and process.returncode == 0, log
    assert "retrying" in log  # the failures were logged...
    for secret in (HEC_SECRET, SLACK_SECRET_PATH, "SECRETSECRETSECRET", slack_url):
        assert secret not in log  # ...without the secrets they carried
    assert sorted(hec.uuids()) == uuids and sorted(slack.uuids()) == uuids
