"""Slack incoming webhook: Block Kit inside a coloured attachment, one message per alert.

The webhook URL is the credential, so it only comes from the environment (``webhook_url_env``).
Every attacker-controlled string (command lines, file names, pod labels: everything but the rule
name and our own labels) is rendered inert: it goes into ``plain_text`` objects, where Slack applies
no ``*_~``` formatting, through `escape.slack`, which disarms ``<!channel>``, ``<!here>``,
``<@U..>`` and ``<http://x|y>`` links and makes line breaks visible (a crafted value cannot show a
forged line), and through `escape.defang` (``hxxp://``), so no URL becomes a link; `escape.clean`
has already made control, bidi and invisible characters visible. ``unfurl_*`` is off. Mentions
appear only when configured, and only for alerts at least as severe as ``mention_min_priority``.
Limits honoured: 150 characters per header, 3000 per section text, 2000 per field, 10 fields,
plain-text fallback for notifications.

An alert raised while its node was losing events (`alerts.wire.with_drops`) gets one more section
under the output, in the same words in the notification text: "events were dropped on this node
around this alert: N", so a responder reads at once that the picture may be incomplete; the counts
by cause stay in the SIEM formats, which carry the fields whole. Our own text and integers only.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from alerts.wire import drop_field, dropped
from rules.priority import Priority
from sinks import escape
from sinks.alert import Alert
from sinks.base import ACCEPTED, Outcome
from sinks.http import HttpConfig, HttpSender, parse_http
from sinks.options import Options

# Falcosidekick's palette, which Falco users already read at a glance.
COLOURS = {
    Priority.EMERGENCY: "#e20b0b",
    Priority.ALERT: "#ff5400",
    Priority.CRITICAL: "#ff5400",
    Priority.ERROR: "#e20b0b",
    Priority.WARNING: "#ffc700",
    Priority.NOTICE: "#5bffb5",
    Priority.INFORMATIONAL: "#68c2ff",
    Priority.DEBUG: "#ccfff2",
}
DEFAULT_FIELDS = (
    "k8s.ns.name",
    "k8s.pod.name",
    "container.id",
    "container.image.repository",
    "user.name",
    "proc.name",
    "proc.cmdline",
    "proc.pname",
    "fd.name",
)
_MENTION = re.compile(r"<(!here|!channel|!everyone|@[UW][A-Z0-9]+|!subteam\^[A-Z0-9]+)>")
HEADER_LIMIT = 150
SECTION_LIMIT = 3000
FIELD_LIMIT = 2000
MAX_FIELDS = 10
EVIDENCE_SHOWN = 5  # evidence steps in the message; the whole list goes to the SIEM destinations


@dataclass(frozen=True, slots=True)
class SlackConfig:
    http: HttpConfig
    fields: tuple[str, ...] = DEFAULT_FIELDS
    mention: str = ""  # trusted text from the config file, e.g. "<!here>" or "<@U024BE7LH>"
    mention_min_priority: Priority = Priority.CRITICAL
    username: str | None = None


def parse(options: Options) -> SlackConfig:
    url = options.secret("webhook_url")
    if urlsplit(url.reveal()).scheme not in ("http", "https"):
        raise options.error("webhook_url_env", "must name a variable holding an http(s) URL")
    mention = options.text("mention", "")
    if mention and not all(_MENTION.fullmatch(m) for m in mention.split()):
        raise options.error("mention", "must be Slack mention tokens such as <!here> or <@U024BE7LH>")
    try:
        mention_min = Priority.parse(options.text("mention_min_priority", "critical"))
    except ValueError as exc:
        raise options.error("mention_min_priority", str(exc)) from None
    return SlackConfig(
        http=parse_http(options, url),
        fields=options.texts("fields") or DEFAULT_FIELDS,
        mention=mention,
        mention_min_priority=mention_min,
        username=options.optional_text("username"),
    )


def build_slack(alert: Alert, config: SlackConfig, limit: int) -> dict[str, Any]:
    rule = escape.clean(alert.rule, limit)
    title = escape.fit(f"{alert.priority.label}: {rule}", SECTION_LIMIT, escape.slack)
    mention = config.mention if config.mention and alert.priority <= config.mention_min_priority else ""
    output = escape.clean(alert.output, limit) or rule  # Slack refuses an empty section text
    fields = [_field("rule", rule), _field("priority", alert.priority.label)]
    if alert.hostname:
        fields.append(_field("hostname", escape.clean(alert.hostname, limit)))
    for key in config.fields:
        value = alert.output_fields.get(key)
        if value is not None and len(fields) < MAX_FIELDS:
            fields.append(_field(key, escape.clean(str(value), limit)))
    context = f"{alert.time} · {alert.source} · {', '.join(alert.tags)} · {alert.uuid}"
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": _plain(escape.fit(title, HEADER_LIMIT, escape.slack))},
        {"type": "section", "text": _plain(_inert(output, SECTION_LIMIT))},
        {"type": "section", "fields": fields},
    ]
    if alert.evidence:
        line = _evidence_line(alert.evidence)
        blocks.append({"type": "section", "text": _plain(_inert(escape.clean(line, limit), SECTION_LIMIT))})
    footer = _plain(_inert(escape.clean(context, limit), SECTION_LIMIT))
    blocks.append({"type": "context", "elements": [footer]})
    text = f"{mention} {title}" if mention else title
    incomplete = drops_line(alert)
    if incomplete is not None:
        blocks.insert(2, {"type": "section", "text": _plain(incomplete)})
        text = f"{text} ({incomplete})"
    payload: dict[str, Any] = {
        "text": text,
        "attachments": [{"color": COLOURS[alert.priority], "blocks": blocks}],
        "unfurl_links": False,
        "unfurl_media": False,
    }
    if config.username:
        payload["username"] = config.username
    return payload


def _evidence_line(evidence: Sequence[Mapping[str, object]]) -> str:
    """The last few evidence events, one short step each: a responder reads the lead-up at a glance;
    the SIEM destinations carry the whole list."""
    shown = evidence[-EVIDENCE_SHOWN:]
    steps = []
    for entry in shown:
        what = entry.get("fd.name") or entry.get("proc.cmdline") or ""
        steps.append(" ".join(str(v) for v in (entry.get("evt.type"), entry.get("proc.name"), what) if v))
    more = f", the last {len(shown)}" if len(shown) < len(evidence) else ""
    return f"Before it ({len(evidence)} events of the process and its ancestors{more}): " + " · ".join(steps)


def drops_line(alert: Alert) -> str | None:
    """The visible line of an alert raised while its node lost events; None for any other alert."""
    lost = dropped(alert)
    if lost is None:
        return None
    if lost == 0:  # only page-fault reads: events are all there, some of their fields empty
        faults = alert.output_fields.get(drop_field("page_fault_reads"))
        return f"⚠ event fields could not be read on this node around this alert: {faults:,}"
    return f"⚠ events were dropped on this node around this alert: {lost:,}"


def _inert(text: str, limit_chars: int) -> str:
    return escape.fit(escape.defang(text), limit_chars, escape.slack)


def _plain(text: str) -> dict[str, Any]:
    return {"type": "plain_text", "text": text, "emoji": False}


def _field(name: str, value: str) -> dict[str, Any]:
    label = escape.slack(escape.clean(name, 100))
    return _plain(f"{label}\n{_inert(value, FIELD_LIMIT - len(label) - 1)}")


class SlackDestination:
    max_batch = 1  # one message per request: Slack webhooks take no batches

    def __init__(self, config: SlackConfig, value_limit: int, max_batch: int = 1) -> None:
        self._config = config
        self._limit = value_limit
        self._http = HttpSender(config.http)

    def build(self, alert: Alert) -> bytes:
        return escape.json_bytes(build_slack(alert, self._config, self._limit))

    def send(self, payloads: Sequence[bytes]) -> Outcome:
        for payload in payloads:
            response = self._http.post("", payload, {"Content-Type": "application/json; charset=utf-8"})
            self._http.check(response, "slack webhook")
        return ACCEPTED

    def close(self) -> None:
        self._http.close()
