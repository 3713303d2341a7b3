"""Grafana Loki push API: ``POST /loki/api/v1/push`` with JSON streams, batched.

Labels are few and bounded on purpose (source, priority, rule, namespace, hostname): Loki indexes
labels, and per-pod or per-command labels would explode its index. The log line is the alert's
JSON with the uuid, so LogQL ``| json`` gives every field. Each alert is one stream entry; Loki
accepts several entries with the same labels in one push. Tenant (``X-Scope-OrgID``) and basic
auth are optional; the password comes from the environment.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sinks import escape
from sinks.alert import Alert
from sinks.base import ACCEPTED, Outcome
from sinks.http import HttpConfig, HttpSender, parse_http, read_url
from sinks.options import Options, Secret

PUSH_PATH = "/loki/api/v1/push"
LABEL_LIMIT = 1024  # Loki's default max_label_value_length is 2048 bytes


@dataclass(frozen=True, slots=True)
class LokiConfig:
    http: HttpConfig
    tenant: str | None = None
    username: str | None = None
    password: Secret | None = None
    extra_labels: tuple[tuple[str, str], ...] = ()


def parse(options: Options) -> LokiConfig:
    url = read_url(options)
    config = LokiConfig(
        http=parse_http(options, url),
        tenant=options.optional_text("tenant"),
        username=options.optional_text("username"),
        password=options.optional_secret("password"),
        extra_labels=tuple(sorted(options.string_map("labels").items())),
    )
    if (config.username is None) != (config.password is None):
        raise options.error("username", "username and password_env go together")
    return config


def build_loki_stream(alert: Alert, config: LokiConfig, limit: int) -> dict[str, Any]:
    labels = {
        "source": alert.source,
        "priority": alert.priority.label,
        "rule": alert.rule,
        "hostname": alert.hostname,
        **({"k8s_ns_name": alert.namespace} if alert.namespace is not None else {}),
        **dict(config.extra_labels),
    }
    stream = {k: escape.clean(v, LABEL_LIMIT) for k, v in labels.items() if v}
    line = escape.json_bytes(escape.clean_json(alert.to_json_dict(), limit)).decode("utf-8")
    return {"stream": stream, "values": [[str(alert.time_ns), line]]}


class LokiDestination:
    def __init__(self, config: LokiConfig, value_limit: int, max_batch: int) -> None:
        self._config = config
        self._limit = value_limit
        self.max_batch = max_batch
        self._http = HttpSender(config.http, secrets=[config.password] if config.password else [])
        self._headers = {"Content-Type": "application/json"}
        if config.tenant:
            self._headers["X-Scope-OrgID"] = config.tenant
        if config.username is not None and config.password is not None:
            pair = f"{config.username}:{config.password.reveal()}".encode()
            self._headers["Authorization"] = f"Basic {base64.b64encode(pair).decode()}"

    def build(self, alert: Alert) -> bytes:
        return escape.json_bytes(build_loki_stream(alert, self._config, self._limit))

    def send(self, payloads: Sequence[bytes]) -> Outcome:
        body = b'{"streams":[' + b",".join(payloads) + b"]}"
        response = self._http.post(PUSH_PATH, body, self._headers)
        self._http.check(response, "loki push")
        return ACCEPTED

    def close(self) -> None:
        self._http.close()
