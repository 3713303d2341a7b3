"""Splunk HTTP Event Collector: batched JSON envelopes on ``/services/collector/event``.

A batch is envelopes concatenated with no separator (HEC's batch format). ``Authorization:
Splunk <token>``, token from the environment. ``fields.alert_id`` carries the alert uuid so
searches can drop the duplicates that at-least-once delivery allows (HEC itself does not dedup).

With ``ack: true`` every request carries ``X-Splunk-Request-Channel`` and the batch counts as
delivered only when ``/services/collector/ack`` reports its ackId indexed; an ack that does not
come within ``ack_timeout_s`` makes the batch retryable (it may then be indexed twice).
HEC codes: 9 (server busy) is retryable; 6 with ``invalid-event-number`` rejects that event and
retries the others; other 4xx are permanent.

The event is the alert's JSON whole, ``peregrine.drops.*`` included when its node lost events around
it; ``fields.dropped_events`` then indexes how many, for searches.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from alerts.wire import dropped
from sinks import escape
from sinks.alert import Alert
from sinks.base import ACCEPTED, Outcome
from sinks.errors import PermanentError, RetryableError
from sinks.http import HttpConfig, HttpSender, Response, parse_http, parse_retry_after, read_url
from sinks.options import Options, Secret

EVENT_PATH = "/services/collector/event"
ACK_PATH = "/services/collector/ack"


@dataclass(frozen=True, slots=True)
class SplunkConfig:
    http: HttpConfig
    token: Secret
    index: str | None = None
    source: str = "falco"
    sourcetype: str = "falco:alert"
    ack: bool = False
    ack_timeout_s: float = 30.0
    ack_poll_s: float = 0.5


def parse(options: Options) -> SplunkConfig:
    url = read_url(options)
    return SplunkConfig(
        http=parse_http(options, url),
        token=options.secret("token"),
        index=options.optional_text("index"),
        source=options.text("source", "falco"),
        sourcetype=options.text("sourcetype", "falco:alert"),
        ack=options.flag("ack", False),
        ack_timeout_s=options.number("ack_timeout_s", 30.0, minimum=0.1),
        ack_poll_s=options.number("ack_poll_s", 0.5, minimum=0.01),
    )


def build_hec(alert: Alert, config: SplunkConfig, limit: int) -> dict[str, Any]:
    fields = {
        "alert_id": alert.uuid,
        "rule": escape.clean(alert.rule, limit),
        "priority": alert.priority.label,
    }
    if alert.namespace is not None:
        fields["k8s_namespace"] = escape.clean(alert.namespace, limit)
    lost = dropped(alert)
    if lost is not None:  # indexed, to search for alerts raised while their node lost events
        fields["dropped_events"] = str(lost)
    envelope: dict[str, Any] = {
        "time": round(alert.time_ns / 1e9, 3),  # HEC reads epoch seconds with milliseconds
        "host": escape.clean(alert.hostname, 255) or "unknown",
        "source": config.source,
        "sourcetype": config.sourcetype,
        "event": escape.clean_json(alert.to_json_dict(), limit),
        "fields": fields,
    }
    if config.index:
        envelope["index"] = config.index
    return envelope


class SplunkDestination:
    def __init__(self, config: SplunkConfig, value_limit: int, max_batch: int) -> None:
        self._config = config
        self._limit = value_limit
        self.max_batch = max_batch
        self._http = HttpSender(config.http, secrets=(config.token,))
        self._headers = {
            "Authorization": f"Splunk {config.token.reveal()}",
            "Content-Type": "application/json; charset=utf-8",
        }
        if config.ack:
            self._headers["X-Splunk-Request-Channel"] = str(uuid.uuid4())

    def build(self, alert: Alert) -> bytes:
        return escape.json_bytes(build_hec(alert, self._config, self._limit))

    def send(self, payloads: Sequence[bytes]) -> Outcome:
        response = self._http.post(EVENT_PATH, b"".join(payloads), self._headers)
        reply = _json(response)
        if response.status != 200 or reply.get("code", 0) != 0:
            return self._failure(response, reply, len(payloads))
        if self._config.ack:
            ack_id = reply.get("ackId")
            if not isinstance(ack_id, int):
                raise RetryableError("HEC acknowledgement enabled but the response has no ackId")
            self._await_ack(ack_id)
        return ACCEPTED

    def _failure(self, response: Response, reply: dict[str, Any], count: int) -> Outcome:
        code, text = reply.get("code"), self._http.redact(str(reply.get("text", "")))
        bad = reply.get("invalid-event-number")
        if code == 6 and isinstance(bad, int) and 0 <= bad < count:
            reason = f"HEC code 6: {text} (event {bad})"
            others = tuple(i for i in range(count) if i != bad)
            return Outcome(retry=others, reason="batch had an invalid event", rejected=((bad, reason),))
        if code == 9:
            wait = parse_retry_after(response.headers.get("retry-after"))
            raise RetryableError(f"HEC code 9: {text}", wait)
        what = "HEC" if code is None else f"HEC code {code}"
        self._http.check(response, what)
        raise PermanentError(f"{what}: {text}")

    def _await_ack(self, ack_id: int) -> None:
        body = json.dumps({"acks": [ack_id]}).encode()
        deadline = time.monotonic() + self._config.ack_timeout_s
        while True:
            response = self._http.post(ACK_PATH, body, self._headers)
            self._http.check(response, "HEC ack")
            acks = _json(response).get("acks")
            if isinstance(acks, dict) and acks.get(str(ack_id)) is True:
                return
            if time.monotonic() >= deadline:
                timeout = self._config.ack_timeout_s
                raise RetryableError(f"HEC ackId {ack_id} not acknowledged within {timeout}s")
            time.sleep(self._config.ack_poll_s)

    def close(self) -> None:
        self._http.close()


def _json(response: Response) -> dict[str, Any]:
    try:
        value = json.loads(response.body or b"{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
