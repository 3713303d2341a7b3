"""Hostile alert text through every format: the receiver parses exactly one well-formed alert.

The alert carries what an attacker controls in a container: command lines and file names with
newlines, CEF/LEEF/syslog delimiters, Slack mentions and links, ANSI escapes, NUL, invalid UTF-8
(raw bytes on the Kafka record) and a 1 MB value.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from receivers import HEC_TOKEN, SLACK_PATH, Receiver, Rsyslog

from sinks import elastic, file, loki, slack, splunk, syslog, webhook
from sinks.alert import Alert, decode_alert
from sinks.base import Destination
from sinks.config import RetryConfig
from sinks.delivery import deliver
from sinks.http import HttpConfig
from sinks.metrics import create_metrics
from sinks.options import Secret

AlertDoc = Callable[..., dict[str, Any]]
MakeReceiver = Callable[..., Receiver]
LIMIT = 8192
HOSTILE = (
    'line1\nline2\r\nFAKE: <131>1 2026-01-01T00:00:00Z forged - - - - injected | a=b \\ c=d ] " ^ \t'
    " <!channel> <!here> <@U024BE7LH> <http://evil.example|click me> & \x1b[2J\x1b[31mred\x1b[0m nul:\x00: "
    "INVALID_UTF8"
)
BIG = "A" * 1_000_000


def hostile_record(alert_doc: AlertDoc) -> bytes:
    doc = alert_doc(
        rule='Shell | rule = x \\ y\nz ] " ^',
        output=HOSTILE,
        hostname="evil host\nname",
        tags=["<!channel>", "a|b", "T1059"],
    )
    doc["output_fields"].update(
        {"proc.cmdline": HOSTILE, "fd.name": "/tmp/" + BIG, "k8s.ns.name": "ns\n<!here>"}
    )
    raw = json.dumps(doc).encode()
    return raw.replace(b"INVALID_UTF8", b"bad:\xff\xfe\xc3:")


def expected_output(alert: Alert) -> str:
    """What every format must carry for ``output`` once its own escaping is undone."""
    return (
        HOSTILE.replace("\x1b", "\\x1b")
        .replace("\x00", "\\x00")
        .replace("INVALID_UTF8", "bad:\ufffd\ufffd\ufffd:")
    )


def assert_clean(text: str) -> None:
    assert "\x00" not in text and "\x1b" not in text and "\ufffd" in text


def run(destination: Destination, alert: Alert) -> None:
    report = deliver(
        destination,
        [destination.build(alert)],
        RetryConfig(max_attempts=1),
        lambda _: True,
        random.Random(1),
        create_metrics(MeterProvider()),
        {"destination": "t"},
    )
    assert report.dead == [] and report.accepted == [0]


def test_decoded_alert_is_what_every_format_starts_from(alert_doc: AlertDoc) -> None:
    alert = decode_alert(hostile_record(alert_doc))
    assert "bad:\ufffd\ufffd\ufffd:" in alert.output and len(alert.output_fields["fd.name"]) > 1_000_000


@pytest.mark.parametrize("kind", ["splunk", "elasticsearch", "loki", "webhook"])
def test_json_http_formats(receiver: MakeReceiver, alert_doc: AlertDoc, kind: str) -> None:
    r = receiver(kind)
    alert = decode_alert(hostile_record(alert_doc))
    http = HttpConfig(url=r.url)
    destinations: dict[str, Destination] = {
        "splunk": splunk.SplunkDestination(
            splunk.SplunkConfig(http=http, token=Secret(HEC_TOKEN)), LIMIT, 10
        ),
        "elasticsearch": elastic.ElasticDestination(elastic.ElasticConfig(http=http), LIMIT, 10),
        "loki": loki.LokiDestination(loki.LokiConfig(http=http), LIMIT, 10),
        "webhook": webhook.WebhookDestination(webhook.WebhookConfig(http=http), LIMIT),
    }
    run(destinations[kind], alert)
    assert r.problems == [] and len(r.alerts) == 1
    received = r.alerts[0]
    assert received["output"] == expected_output(alert)
    assert received["rule"] == 'Shell | rule = x \\ y\nz ] " ^'
    cut = received["output_fields"].get("fd.name") or received["output_fields"]["fd_name"]
    assert len(cut.encode()) <= LIMIT and cut.endswith("bytes]") and "...[truncated " in cut
    assert_clean(json.dumps(received, ensure_ascii=False))


def test_slack(receiver: MakeReceiver, alert_doc: AlertDoc) -> None:
    r = receiver("slack")
    alert = decode_alert(hostile_record(alert_doc))
    config = slack.SlackConfig(http=HttpConfig(url=Secret(r.url + SLACK_PATH)))
    run(slack.SlackDestination(config, LIMIT), alert)
    assert r.problems == [] and len(r.alerts) == 1
    payload = r.alerts[0]["payload"]
    texts = [payload["text"]]
    for block in payload["attachments"][0]["blocks"]:
        texts += [block.get("text", {}).get("text", "")]
        texts += [f["text"] for f in block.get("fields", []) + block.get("elements", [])]
    joined = "\n".join(texts)
    assert "<" not in joined and ">" not in joined  # no mention, channel ping or link can form
    assert "&lt;!channel&gt;" in joined and "&lt;hxxp://evil.example|click me&gt;" in joined
    assert "http" not in joined.replace("hxxp", "")  # no bare URL a client could linkify
    assert_clean(joined)
    assert all(len(t) <= 3000 for t in texts)
    blocks = payload["attachments"][0]["blocks"]
    body = blocks[1]["text"]
    assert body["type"] == "plain_text"  # mrkdwn has no escape for *_~`: no formatting applies here
    assert "\n" not in body["text"] and "line1\\nline2\\r\\nFAKE" in body["text"]  # no forged line
    for f in blocks[2]["fields"]:
        assert f["type"] == "plain_text" and f["text"].count("\n") == 1  # label, then the value


def test_file(tmp_path: Path, alert_doc: AlertDoc) -> None:
    path = tmp_path / "alerts.jsonl"
    alert = decode_alert(hostile_record(alert_doc))
    run(file.FileDestination(file.FileConfig(path=str(path)), LIMIT, 10), alert)
    lines = path.read_bytes().splitlines()
    assert len(lines) == 1
    assert json.loads(lines[0])["output"] == expected_output(alert)


def unescape_cef(value: str) -> str:
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "r": "\r", "t": "\t"}.get(m.group(1), m.group(1)), value)


def parse_cef(message: str) -> tuple[list[str], dict[str, str]]:
    """Seven ``|``-terminated header fields (escapes ``\\|`` and ``\\\\``), then ``key=value`` pairs."""
    fields, pos = [], 0
    field_re = re.compile(r"((?:[^|\\]|\\.)*)\|")
    for _ in range(7):  # CEF:0, vendor, product, version, class id, name, severity
        match = field_re.match(message, pos)
        assert match is not None, message[pos:]
        fields.append(match.group(1))
        pos = match.end()
    extension = message[pos:]
    keys = list(re.finditer(r"(?:^| )(\w+)=", extension))
    pairs = {}
    for i, key in enumerate(keys):
        end = keys[i + 1].start() if i + 1 < len(keys) else len(extension)
        pairs[key.group(1)] = unescape_cef(extension[key.end() : end])
    return [unescape_cef(f) for f in fields], pairs


@pytest.mark.parametrize("fmt", ["json", "cef", "leef"])
def test_syslog_formats_reach_rsyslog_as_one_message(rsyslog: Rsyslog, alert_doc: AlertDoc, fmt: str) -> None:
    alert = decode_alert(hostile_record(alert_doc))
    config = syslog.SyslogConfig(host="127.0.0.1", port=rsyslog.tcp_port, format=fmt)
    sink = syslog.SyslogDestination(config, LIMIT, 10)
    run(sink, alert)
    sink.close()
    received = rsyslog.wait_for("tcp", 1)
    assert len(received) == 1
    raw, fields = received[0]
    assert len(raw.encode()) <= config.max_message_bytes
    assert fields["hostname"] == "evil_host_name" and fields["app_name"] == "falco"
    assert fields["structured_data"].startswith('[falco@32473 rule="Shell | rule = x \\\\ y\\nz \\] \\" ^"')
    assert_clean(raw)
    message = fields["msg"]
    if fmt == "json":
        assert json.loads(message)["output"].startswith(expected_output(alert)[:200])
    elif fmt == "cef":
        header, pairs = parse_cef(message)
        assert header[0] == "CEF:0" and header[5] == 'Shell | rule = x \\ y z ] " ^'
        assert pairs["msg"].startswith(expected_output(alert)[:200])
        assert pairs["cs1"] == "ns\n<!here>"
    else:
        head, _, attributes = message.partition("|^|")
        assert head == 'LEEF:2.0|Falcosecurity|Falco|peregrine-0.1.0|Shell \\| rule = x \\\\ y z ] " ^'
        pairs = dict(a.split("=", 1) for a in attributes.split("^"))
        assert pairs["msg"].startswith("line1\\nline2\\r\\nFAKE: <131>1")
        assert "\\x5e" in pairs["msg"] and "\\t" in pairs["msg"]
