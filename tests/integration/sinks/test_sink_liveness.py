"""A slow destination keeps its consumer in the group: no eviction, so nothing delivered twice.

Before: with a webhook receiver answering slowly, the runner spent longer than
``max.poll.interval.ms`` on one polled batch (one request per alert), the group evicted it, its
commit failed and the batch was delivered again (74 of 5,000 alerts twice). The interval is
shortened here (6 s, the broker's minimum session timeout) so the test takes seconds, not minutes.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from receivers import Receiver, Slow
from test_sink_kafka import Service, Topics, committed, docs, produce, service, topics, wait_until  # noqa: F401

from sinks import runner

pytestmark = pytest.mark.kafka
AlertDoc = Callable[..., dict[str, Any]]


def test_a_batch_slower_than_the_poll_interval_is_delivered_once(
    kafka_bootstrap: str,
    topics: Topics,  # noqa: F811
    service: Callable[..., Service],  # noqa: F811
    receiver: Callable[..., Receiver],
    alert_doc: AlertDoc,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(runner, "MIN_POLL_INTERVAL_MS", 6000)
    monkeypatch.setattr(runner, "POLL_MARGIN_S", 0.0)
    hook = receiver("webhook")
    hook.respond(*[Slow(0.4)] * 30)  # 30 requests of 0.4 s: 12 s for one polled batch
    sent = docs(alert_doc, 30)
    produce(kafka_bootstrap, topics.alerts, [json.dumps(d).encode() for d in sent])
    kafka = {
        "bootstrap_servers": kafka_bootstrap,
        "topic": topics.alerts,
        "dlq_topic": topics.dlq,
        "group_prefix": topics.group_prefix,
        "properties": {"session.timeout.ms": "6000", "heartbeat.interval.ms": "1000"},
    }
    # Retry-After capped low so that no retry budget stretches the interval either
    retry = {"max_attempts": 4, "initial_backoff_s": 0.05, "max_backoff_s": 0.2, "max_retry_after_s": 0.2}
    destination = {"name": "hook", "type": "webhook", "url": hook.url, "timeout_s": 2}
    svc = service([destination], kafka=kafka, retry=retry)
    group = f"{topics.group_prefix}-hook"
    assert wait_until(lambda: committed(kafka_bootstrap, group, topics.alerts) == 30, 60)
    assert svc.finish() == 0
    counts = Counter(hook.uuids())
    assert set(counts) == {d["uuid"] for d in sent}
    assert [u for u, n in counts.items() if n > 1] == []  # none delivered twice
