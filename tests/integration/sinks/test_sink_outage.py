"""Outage: one destination down while 10,000 alerts flow through real Kafka.

The Splunk HEC stand-in answers 503 for the whole outage; Elasticsearch, Loki and file stand-ins
stay up. While the outage is still on, the healthy destinations must have received every alert
(observed at the receivers, not timed); after recovery the HEC stand-in must hold every alert
exactly once, and so must Loki and the file. Only Elasticsearch could absorb duplicates (409 on
the same ``_id``), so it is checked for completeness by document id.

The default run keeps the outage at 5 s; the 60 s outage of issue 7 runs with ``-m e2e`` (conftest
generates that case only then, rather than skipping it, so required-marker runs stay green).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from receivers import Receiver
from test_sink_kafka import (
    PARTITIONS,
    Service,
    Topics,
    committed,
    produce,
    read_all,
    service,
    topics,
    wait_until,
)

__all__ = ["service", "topics"]  # fixtures shared with test_sink_kafka

pytestmark = pytest.mark.kafka
ALERTS = 10_000


def test_one_destination_down_delays_no_other_and_loses_nothing(
    kafka_bootstrap: str,
    topics: Topics,
    service: Callable[..., Service],
    receiver: Callable[..., Receiver],
    alert_doc: Callable[..., dict[str, Any]],
    tmp_path: Path,
    outage_s: float,
) -> None:
    hec, es, loki = receiver("splunk"), receiver("elasticsearch"), receiver("loki")
    lines = tmp_path / "alerts.jsonl"
    uuids = [f"00000000-0000-4000-8000-{i:012d}" for i in range(ALERTS)]
    hec.down.set()
    outage_started = time.monotonic()
    svc = service(
        [
            {"name": "hec", "type": "splunk", "url": hec.url, "token_env": "HEC_TOKEN"},
            {"name": "es", "type": "elasticsearch", "url": es.url},
            {"name": "loki", "type": "loki", "url": loki.url},
            {"name": "file", "type": "file", "path": str(lines), "fsync": "always"},
        ],
        retry={"max_attempts": 100_000, "initial_backoff_s": 0.05, "max_backoff_s": 1.0},
        batch={"max_alerts": 500, "max_wait_s": 0.05},
    )
    produce(kafka_bootstrap, topics.alerts, [json.dumps(alert_doc(uuid=u)).encode() for u in uuids])

    def file_count() -> int:
        return len(lines.read_bytes().splitlines()) if lines.exists() else 0

    healthy_done = wait_until(
        lambda: len(es.documents) == ALERTS and len(loki.alerts) == ALERTS and file_count() == ALERTS, 300
    )
    # Observed while the outage is on: the healthy destinations already hold every alert, HEC none.
    assert healthy_done, (len(es.documents), len(loki.alerts), file_count())
    assert hec.down.is_set() and hec.alerts == []
    assert committed(kafka_bootstrap, f"{topics.group_prefix}-hec", topics.alerts) == 0

    time.sleep(max(0.0, outage_started + outage_s - time.monotonic()))
    hec.down.clear()
    assert hec.wait_for(ALERTS, timeout=300), len(hec.alerts)
    groups = ("hec", "es", "loki", "file")
    assert wait_until(
        lambda: all(
            committed(kafka_bootstrap, f"{topics.group_prefix}-{g}", topics.alerts) == ALERTS for g in groups
        ),
        60,
    )
    assert svc.finish() == 0

    assert sorted(hec.uuids()) == uuids  # exactly once: no loss, no duplicate
    assert sorted(loki.uuids()) == uuids
    assert sorted(json.loads(line)["uuid"] for line in lines.read_bytes().splitlines()) == uuids
    assert sorted(es.documents) == uuids  # dedups by _id; duplicates would have answered 409
    assert hec.problems == es.problems == loki.problems == []
    assert svc.counter("delivered") == dict.fromkeys(groups, ALERTS)
    assert svc.counter("dlq") == {}
    assert svc.counter("retried").get("hec", 0) > 0 and set(svc.counter("retried")) == {"hec"}
    assert read_all(kafka_bootstrap, topics.dlq, 1, timeout=2) == []
    assert PARTITIONS > 1  # the alerts were spread over several partitions
