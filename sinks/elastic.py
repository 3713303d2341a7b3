"""Elasticsearch / OpenSearch ``_bulk``: NDJSON, ECS field mapping, the alert uuid as ``_id``.

Each alert is a ``create`` action with ``_id`` = uuid, so a redelivered alert answers 409 and is
counted as delivered: retries never duplicate documents. Items answering 429 or 5xx are retried
alone; other item errors (mapping conflicts) go to the dead-letter topic with ES's reason.

The ECS mapping follows Elastic's own Falco integration (elastic/integrations,
packages/falco/data_stream/alerts/elasticsearch/ingest_pipeline/default.yml): event.kind=alert,
event.severity 7 (Emergency) .. 0 (Debug), process.*, container.*, orchestrator.*, file.*,
source/destination from fd.*, threat.technique from MITRE tags. The original alert stays under
``falco.*`` with dots in output field names replaced by ``_`` so no name is both leaf and object.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sinks import escape
from sinks.alert import Alert
from sinks.base import ACCEPTED, Outcome
from sinks.errors import RetryableError
from sinks.http import HttpConfig, HttpSender, parse_http, read_url
from sinks.options import Options, Secret

ECS_VERSION = "8.11.0"
_EVENT_TYPES = {
    "execve": "start", "execveat": "start", "clone": "start", "fork": "start",
    "open": "access", "openat": "access", "openat2": "access",
    "connect": "connection", "accept": "connection", "accept4": "connection",
    "unlink": "deletion", "unlinkat": "deletion", "rename": "change", "renameat": "change",
    "renameat2": "change", "mkdir": "creation", "mkdirat": "creation", "setns": "change",
}
_TECHNIQUE = re.compile(r"T\d{4}(\.\d{3})?")


@dataclass(frozen=True, slots=True)
class ElasticConfig:
    http: HttpConfig
    index: str = "logs-falco.alerts-default"
    api_key: Secret | None = None
    username: str | None = None
    password: Secret | None = None
    pipeline: str | None = None


def parse(options: Options) -> ElasticConfig:
    url = read_url(options)
    config = ElasticConfig(
        http=parse_http(options, url),
        index=options.text("index", "logs-falco.alerts-default"),
        api_key=options.optional_secret("api_key"),
        username=options.optional_text("username"),
        password=options.optional_secret("password"),
        pipeline=options.optional_text("pipeline"),
    )
    if (config.username is None) != (config.password is None):
        raise options.error("username", "username and password_env go together")
    return config


def build_ecs(alert: Alert, limit: int) -> dict[str, Any]:
    """The ECS document for one alert."""
    fields = escape.clean_json(alert.output_fields, limit)
    get = fields.get
    stamp = datetime.fromtimestamp(alert.time_ns // 1_000_000_000, UTC)
    millis = (alert.time_ns // 1_000_000) % 1000
    syscall = get("evt.type")
    doc: dict[str, Any] = {
        "@timestamp": f"{stamp:%Y-%m-%dT%H:%M:%S}.{millis:03d}Z",
        "event": {
            "kind": "alert",
            "id": alert.uuid,
            "category": [get("evt.category") or "process"],
            "type": [_EVENT_TYPES.get(syscall, "info") if isinstance(syscall, str) else "info"],
            "severity": 7 - int(alert.priority),
            "provider": escape.clean(alert.source, limit),
            "module": "falco",
        },
        "rule": {"name": escape.clean(alert.rule, limit)},
        "message": escape.clean(alert.output, limit),
        "observer": {"vendor": "sysdig", "product": "falco", "type": "sensor"},
        "tags": [escape.clean(t, limit) for t in alert.tags],
        "ecs": {"version": ECS_VERSION},
    }
    if alert.hostname:
        hostname = escape.clean(alert.hostname, limit)
        doc["observer"]["hostname"] = hostname
        doc["host"] = {"name": hostname}
    _put(doc, "process", {
        "name": get("proc.name"), "executable": get("proc.exepath"), "command_line": get("proc.cmdline"),
        "pid": get("proc.pid"), "working_directory": get("proc.cwd"),
        "parent": _compact({"name": get("proc.pname"), "pid": get("proc.ppid")}),
        "user": _compact({"name": get("user.name"), "id": _text(get("user.uid"))}),
    })
    _put(doc, "container", {
        "id": get("container.id"), "name": get("container.name"), "runtime": get("container.type"),
        "image": _compact({"name": get("container.image.repository")}),
    })
    if get("k8s.ns.name") or get("k8s.pod.name"):
        doc["orchestrator"] = _compact({
            "type": "kubernetes", "namespace": get("k8s.ns.name"),
            "resource": _compact({"type": "pod", "name": get("k8s.pod.name")}),
        })
    path = get("fd.name")
    if isinstance(path, str) and path.startswith("/"):
        directory, _, name = path.rpartition("/")
        doc["file"] = {"path": path, "name": name, "directory": directory or "/"}
    _put(doc, "source", {"ip": get("fd.sip"), "port": get("fd.sport")})
    _put(doc, "destination", {"ip": get("fd.dip"), "port": get("fd.dport")})
    techniques = [t.upper() for t in alert.tags if _TECHNIQUE.fullmatch(t.upper())]
    if techniques:
        doc["threat"] = {"technique": {"id": [t for t in techniques if "." not in t] or [techniques[0][:5]]}}
        subs = [t for t in techniques if "." in t]
        if subs:
            doc["threat"]["technique"]["subtechnique"] = {"id": subs}
    doc["falco"] = {
        "uuid": alert.uuid,
        "time": alert.time,
        "rule": doc["rule"]["name"],
        "priority": alert.priority.label,
        "output": doc["message"],
        "output_fields": {k.replace(".", "_"): v for k, v in fields.items()},
        "hostname": doc.get("host", {}).get("name", ""),
        "source": doc["event"]["provider"],
        "tags": doc["tags"],
    }
    if alert.evidence:
        entries = (escape.clean_json(entry, limit) for entry in alert.evidence)
        doc["falco"]["evidence"] = [{k.replace(".", "_"): v for k, v in e.items()} for e in entries]
    return doc


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _compact(mapping: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in mapping.items() if v is not None and v != {}}


def _put(doc: dict[str, Any], key: str, mapping: dict[str, Any]) -> None:
    compact = _compact(mapping)
    if compact:
        doc[key] = compact


def build_bulk_item(alert: Alert, index: str, limit: int) -> bytes:
    """The two NDJSON lines of one ``create`` action, each ending in a newline."""
    action = escape.json_bytes({"create": {"_index": index, "_id": alert.uuid}})
    return action + b"\n" + escape.json_bytes(build_ecs(alert, limit)) + b"\n"


class ElasticDestination:
    def __init__(self, config: ElasticConfig, value_limit: int, max_batch: int) -> None:
        self._config = config
        self._limit = value_limit
        self.max_batch = max_batch
        secrets = [s for s in (config.api_key, config.password) if s is not None]
        self._http = HttpSender(config.http, secrets=secrets)
        self._headers = {"Content-Type": "application/x-ndjson"}
        if config.api_key is not None:
            self._headers["Authorization"] = f"ApiKey {config.api_key.reveal()}"
        elif config.username is not None and config.password is not None:
            pair = f"{config.username}:{config.password.reveal()}".encode()
            self._headers["Authorization"] = f"Basic {base64.b64encode(pair).decode()}"
        self._path = "/_bulk" + (f"?pipeline={config.pipeline}" if config.pipeline else "")

    def build(self, alert: Alert) -> bytes:
        return build_bulk_item(alert, self._config.index, self._limit)

    def send(self, payloads: Sequence[bytes]) -> Outcome:
        response = self._http.post(self._path, b"".join(payloads), self._headers)
        self._http.check(response, "elasticsearch bulk")
        try:
            reply = json.loads(response.body)
        except ValueError:
            raise RetryableError("elasticsearch bulk: response is not JSON") from None
        if not isinstance(reply, dict):
            raise RetryableError("elasticsearch bulk: response is not a JSON object")
        if reply.get("errors") is False:
            return ACCEPTED
        items = reply.get("items")
        if not isinstance(items, list) or len(items) != len(payloads):
            raise RetryableError("elasticsearch bulk: response items do not match the request")
        return _item_outcome(items)

    def close(self) -> None:
        self._http.close()


def _item_outcome(items: list[Any]) -> Outcome:
    retry: list[int] = []
    rejected: list[tuple[int, str]] = []
    reasons: list[str] = []
    for i, item in enumerate(items):
        result: Any = next(iter(item.values()), {}) if isinstance(item, dict) and item else {}
        status = result.get("status", 0) if isinstance(result, dict) else 0
        if status in (200, 201, 409):  # 409: this uuid is already indexed, a redelivery
            continue
        error = result.get("error", {}) if isinstance(result, dict) else {}
        if isinstance(error, dict):
            detail = f"{error.get('type', '')}: {error.get('reason', '')}"
        else:
            detail = str(error)
        reason = f"elasticsearch item status {status}: {detail}"
        if status == 429 or status >= 500 or status == 0:
            retry.append(i)
            reasons.append(reason)
        else:
            rejected.append((i, reason))
    return Outcome(retry=tuple(retry), reason=reasons[0] if reasons else "", rejected=tuple(rejected))
