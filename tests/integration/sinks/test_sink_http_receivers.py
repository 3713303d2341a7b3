"""HTTP destinations against stand-in receivers that check the documented request shapes.

Retries are driven through `delivery.deliver` with a recording wait function, so the tests check
which delay was chosen (Retry-After honoured) without sleeping or measuring time.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from receivers import HEC_TOKEN, SLACK_PATH, Broken, Receiver, Slow, Status

from alerts.wire import encode, with_drops
from sinks import elastic, loki, slack, splunk, webhook
from sinks.alert import decode_alert
from sinks.base import Destination
from sinks.config import RetryConfig
from sinks.delivery import EXHAUSTED, REJECTED, DeliveryReport, deliver
from sinks.http import HttpConfig
from sinks.metrics import create_metrics
from sinks.options import Secret

LIMIT = 8192
AlertDoc = Callable[..., dict[str, Any]]
MakeReceiver = Callable[..., Receiver]
RETRY = RetryConfig(max_attempts=5, initial_backoff_s=0.01, max_backoff_s=0.05, max_retry_after_s=120)


def make_destination(kind: str, r: Receiver, timeout_s: float = 5.0, **options: Any) -> Destination:
    if kind == "slack":
        url = Secret(r.url + SLACK_PATH)
        return slack.SlackDestination(slack.SlackConfig(http=HttpConfig(url=url, timeout_s=timeout_s)), LIMIT)
    http = HttpConfig(url=r.url, timeout_s=timeout_s)
    if kind == "splunk":
        config = splunk.SplunkConfig(http=http, token=Secret(HEC_TOKEN), **options)
        return splunk.SplunkDestination(config, LIMIT, 100)
    if kind == "elasticsearch":
        return elastic.ElasticDestination(elastic.ElasticConfig(http=http), LIMIT, 100)
    if kind == "loki":
        return loki.LokiDestination(loki.LokiConfig(http=http), LIMIT, 100)
    return webhook.WebhookDestination(webhook.WebhookConfig(http=HttpConfig(url=r.url + "/hook")), LIMIT)


class Waits(list[float]):
    def __call__(self, delay: float) -> bool:
        self.append(delay)
        return True


def send(destination: Destination, docs: list[dict[str, Any]], waits: Waits | None = None) -> DeliveryReport:
    payloads = [destination.build(decode_alert(json.dumps(d).encode())) for d in docs]
    metrics = create_metrics(MeterProvider())
    return deliver(
        destination,
        payloads,
        RETRY,
        waits if waits is not None else Waits(),
        random.Random(1),
        metrics,
        {"destination": "test"},
    )


def batch(alert_doc: AlertDoc, n: int) -> list[dict[str, Any]]:
    return [alert_doc(uuid=f"00000000-0000-4000-8000-{i:012d}") for i in range(n)]


KINDS = ["slack", "splunk", "elasticsearch", "loki", "webhook"]


@pytest.mark.parametrize("kind", KINDS)
def test_each_destination_sends_the_documented_shape(
    receiver: MakeReceiver, alert_doc: AlertDoc, kind: str
) -> None:
    r = receiver(kind)
    docs = batch(alert_doc, 5)
    report = send(make_destination(kind, r), docs)
    assert r.problems == []
    assert report.dead == [] and sorted(report.accepted) == list(range(5))
    assert r.uuids() == [d["uuid"] for d in docs]
    if kind in ("splunk", "loki", "webhook"):
        assert r.alerts == docs


@pytest.mark.parametrize("kind", KINDS)
def test_429_with_retry_after_is_honoured_then_delivered(
    receiver: MakeReceiver, alert_doc: AlertDoc, kind: str
) -> None:
    r = receiver(kind)
    r.respond(Status(429, {"Retry-After": "7"}, b"rate limited"))
    waits = Waits()
    report = send(make_destination(kind, r), batch(alert_doc, 1), waits)
    assert waits == [7.0]
    assert report.dead == [] and len(r.uuids()) == 1


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("failure", [Status(503), Status(500), Broken()], ids=["503", "500", "broken"])
def test_server_errors_and_broken_connections_are_retried(
    receiver: MakeReceiver, alert_doc: AlertDoc, kind: str, failure: Any
) -> None:
    r = receiver(kind)
    r.respond(failure, failure)
    waits = Waits()
    report = send(make_destination(kind, r), batch(alert_doc, 1), waits)
    assert len(waits) == 2 and report.dead == []
    assert len(r.uuids()) == 1


def test_a_slow_receiver_times_out_and_elasticsearch_dedups_the_retry(
    receiver: MakeReceiver, alert_doc: AlertDoc
) -> None:
    r = receiver("elasticsearch")
    r.respond(Slow(1.0))  # handled after the client gave up: the first copy is indexed anyway
    docs = batch(alert_doc, 3)
    report = send(make_destination("elasticsearch", r, timeout_s=0.3), docs)
    assert report.dead == [] and sorted(report.accepted) == [0, 1, 2]
    assert sorted(r.documents) == sorted(d["uuid"] for d in docs)


def test_permanent_4xx_goes_to_the_dead_letter_path(receiver: MakeReceiver, alert_doc: AlertDoc) -> None:
    r = receiver("slack")
    r.respond(Status(400, {}, b"invalid_payload"))
    report = send(make_destination("slack", r), batch(alert_doc, 1))
    assert [(d.reason, d.detail) for d in report.dead] == [
        (REJECTED, "slack webhook: HTTP 400: invalid_payload")
    ]


def test_bounded_attempts_then_dead(receiver: MakeReceiver, alert_doc: AlertDoc) -> None:
    r = receiver("loki")
    r.down.set()
    report = send(make_destination("loki", r), batch(alert_doc, 2))
    assert [(d.reason, d.attempts) for d in report.dead] == [(EXHAUSTED, 5), (EXHAUSTED, 5)]
    assert len(r.requests) == 0 or r.uuids() == []


def test_splunk_indexer_acknowledgement_uses_a_channel(receiver: MakeReceiver, alert_doc: AlertDoc) -> None:
    r = receiver("splunk", hec_ack=True)
    report = send(make_destination("splunk", r, ack=True, ack_poll_s=0.01), batch(alert_doc, 3))
    assert report.dead == [] and r.problems == []
    paths = [q.path for q in r.requests]
    assert paths == ["/services/collector/event", "/services/collector/ack"]
    channels = {q.headers["x-splunk-request-channel"] for q in r.requests}
    assert len(channels) == 1


def test_splunk_invalid_event_is_rejected_alone(receiver: MakeReceiver, alert_doc: AlertDoc) -> None:
    r = receiver("splunk")
    r.respond(
        Status(
            400,
            {"Content-Type": "application/json"},
            b'{"text":"Invalid data format","code":6,"invalid-event-number":1}',
        )
    )
    report = send(make_destination("splunk", r), batch(alert_doc, 3))
    assert [d.index for d in report.dead] == [1]
    assert sorted(r.uuids()) == [
        "00000000-0000-4000-8000-000000000000",
        "00000000-0000-4000-8000-000000000002",
    ]


def test_wrong_hec_token_is_permanent_and_the_token_is_not_in_the_reason(
    receiver: MakeReceiver, alert_doc: AlertDoc
) -> None:
    r = receiver("splunk")
    config = splunk.SplunkConfig(http=HttpConfig(url=r.url), token=Secret("wrong-SECRET-token"))
    report = send(splunk.SplunkDestination(config, LIMIT, 100), batch(alert_doc, 1))
    assert report.dead[0].reason == REJECTED
    assert "wrong-SECRET-token" not in report.dead[0].detail and "401" in report.dead[0].detail


def test_slack_webhook_url_never_appears_in_errors(receiver: MakeReceiver, alert_doc: AlertDoc) -> None:
    r = receiver("slack")
    r.respond(Status(404, {}, ("no_service for " + SLACK_PATH).encode()))
    report = send(make_destination("slack", r), batch(alert_doc, 1))
    assert SLACK_PATH not in report.dead[0].detail and "***" in report.dead[0].detail


def test_an_alert_raised_while_events_were_lost_shows_it_at_the_slack_receiver(
    receiver: MakeReceiver, alert_doc: AlertDoc
) -> None:
    """The drop line is a visible section of the message the stand-in accepts, not only a unit format."""
    r = receiver("slack")
    flagged, plain = batch(alert_doc, 2)
    lossy = with_drops(decode_alert(json.dumps(flagged).encode()), 1, 2, {"ring_full": 1234}, 1234)
    flagged = json.loads(encode(lossy))
    report = send(make_destination("slack", r), [flagged, plain])
    assert r.problems == [] and report.dead == []
    by_uuid = {a["uuid"]: a["payload"] for a in r.alerts}
    line = "⚠ events were dropped on this node around this alert: 1,234"
    blocks = by_uuid[flagged["uuid"]]["attachments"][0]["blocks"]
    sections = [b["text"]["text"] for b in blocks if "text" in b]
    assert line in sections and line in by_uuid[flagged["uuid"]]["text"]
    assert "dropped" not in json.dumps(by_uuid[plain["uuid"]])
