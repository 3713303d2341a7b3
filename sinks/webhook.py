"""Generic webhook: one JSON POST per alert (Falco's JSON alert plus uuid), custom headers.

Headers that are credentials come from the environment (``secret_headers_env: {Authorization:
VAR}``); the URL may too (``url_env``). Receivers can dedup on the ``uuid`` field or the
``X-Peregrine-Alert-Id`` header, which carries the same value.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sinks import escape
from sinks.alert import Alert
from sinks.base import ACCEPTED, Outcome
from sinks.http import HttpConfig, HttpSender, parse_http, read_url
from sinks.options import Options, Secret

ID_HEADER = "X-Peregrine-Alert-Id"


@dataclass(frozen=True, slots=True)
class WebhookConfig:
    http: HttpConfig
    headers: tuple[tuple[str, str], ...] = ()
    secret_headers: tuple[tuple[str, Secret], ...] = ()


def parse(options: Options) -> WebhookConfig:
    url = read_url(options)
    return WebhookConfig(
        http=parse_http(options, url),
        headers=tuple(options.string_map("headers").items()),
        secret_headers=tuple(options.secret_map("secret_headers").items()),
    )


def build_webhook(alert: Alert, limit: int) -> bytes:
    return escape.json_bytes(escape.clean_json(alert.to_json_dict(), limit))


class WebhookDestination:
    max_batch = 1  # one alert per request, as receivers of Falco's http_output expect

    def __init__(self, config: WebhookConfig, value_limit: int, max_batch: int = 1) -> None:
        self._limit = value_limit
        self._http = HttpSender(config.http, secrets=[s for _, s in config.secret_headers])
        self._headers = {
            "Content-Type": "application/json; charset=utf-8",
            **dict(config.headers),
            **{name: secret.reveal() for name, secret in config.secret_headers},
        }

    def build(self, alert: Alert) -> bytes:
        return build_webhook(alert, self._limit)

    def send(self, payloads: Sequence[bytes]) -> Outcome:
        for payload in payloads:
            alert_id = _uuid_of(payload)
            headers = {**self._headers, ID_HEADER: alert_id} if alert_id else self._headers
            response = self._http.post("", payload, headers)
            self._http.check(response, "webhook")
        return ACCEPTED

    def close(self) -> None:
        self._http.close()


def _uuid_of(payload: bytes) -> str:
    # build_webhook writes "uuid" first, so this is a prefix read, not a parse.
    prefix = b'{"uuid":"'
    if payload.startswith(prefix):
        end = payload.find(b'"', len(prefix))
        if end > 0:
            return payload[len(prefix) : end].decode("ascii", errors="replace")
    return ""
