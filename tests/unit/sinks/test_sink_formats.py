"""Pure payload builders of every destination, against the documented shapes."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from sinks import elastic, file, loki, slack, splunk, syslog, webhook
from sinks.alert import Alert, decode_alert
from sinks.http import HttpConfig
from sinks.options import Secret

LIMIT = 8192


@pytest.fixture
def alert(alert_doc: Callable[..., dict[str, Any]]) -> Callable[..., Alert]:
    def make(**changes: Any) -> Alert:
        return decode_alert(json.dumps(alert_doc(**changes)).encode())

    return make


def slack_config(**changes: Any) -> slack.SlackConfig:
    return slack.SlackConfig(http=HttpConfig(url=Secret("https://hooks.slack.test/x")), **changes)


def test_slack_block_kit_with_colour_fields_and_no_mention_by_default(alert: Callable[..., Alert]) -> None:
    payload = slack.build_slack(alert(), slack_config(), LIMIT)
    attachment = payload["attachments"][0]
    assert attachment["color"] == "#5bffb5"  # Notice
    assert payload["text"] == "Notice: Terminal shell in container"
    blocks = attachment["blocks"]
    assert [b["type"] for b in blocks] == ["header", "section", "section", "context"]
    fields = [f["text"] for f in blocks[2]["fields"]]
    assert "k8s.ns.name\ndefault" in fields and "proc.cmdline\nbash -il" in fields
    assert {f["type"] for f in blocks[2]["fields"]} == {"plain_text"}
    assert len(fields) <= 10
    assert payload["unfurl_links"] is False
    assert "<!" not in json.dumps(payload)


def test_slack_mentions_only_when_configured_and_severe_enough(alert: Callable[..., Alert]) -> None:
    config = slack_config(mention="<!here>")
    assert slack.build_slack(alert(priority="Critical"), config, LIMIT)["text"].startswith("<!here> ")
    assert "<!here>" not in slack.build_slack(alert(priority="Warning"), config, LIMIT)["text"]


def test_splunk_envelope(alert: Callable[..., Alert]) -> None:
    config = splunk.SplunkConfig(http=HttpConfig(url="http://hec"), token=Secret("t"), index="security")
    envelope = splunk.build_hec(alert(), config, LIMIT)
    assert envelope["time"] == 1787307330.123
    assert envelope["host"] == "node-1" and envelope["index"] == "security"
    assert envelope["sourcetype"] == "falco:alert"
    assert envelope["event"]["rule"] == "Terminal shell in container"
    assert envelope["fields"] == {"alert_id": "6e9ec703-572d-45b6-9df9-3fdd7af70a97",
                                  "rule": "Terminal shell in container", "priority": "Notice",
                                  "k8s_namespace": "default"}


def test_elastic_bulk_item_is_two_ndjson_lines_with_uuid_id_and_ecs(alert: Callable[..., Alert]) -> None:
    item = elastic.build_bulk_item(alert(), "logs-falco.alerts-default", LIMIT)
    action, source, end = item.split(b"\n")
    assert end == b""
    assert json.loads(action) == {"create": {"_index": "logs-falco.alerts-default",
                                             "_id": "6e9ec703-572d-45b6-9df9-3fdd7af70a97"}}
    doc = json.loads(source)
    assert doc["@timestamp"] == "2026-08-21T10:15:30.123Z"
    assert doc["event"]["kind"] == "alert" and doc["event"]["severity"] == 2  # Notice
    assert doc["event"]["type"] == ["start"]  # execve
    assert doc["process"] == {"name": "bash", "command_line": "bash -il", "pid": 4242,
                              "parent": {"name": "runc"}, "user": {"name": "root", "id": "0"}}
    assert doc["orchestrator"] == {"type": "kubernetes", "namespace": "default",
                                   "resource": {"type": "pod", "name": "mysql-db-7d9f"}}
    assert doc["container"] == {"id": "3fc8155f9d1a", "image": {"name": "mysql"}}
    assert doc["threat"] == {"technique": {"id": ["T1059"]}}
    assert doc["falco"]["output_fields"]["proc_cmdline"] == "bash -il"


@pytest.mark.parametrize(
    ("priority", "severity"),
    [("Emergency", 7), ("Alert", 6), ("Critical", 5), ("Error", 4), ("Warning", 3), ("Notice", 2),
     ("Informational", 1), ("Debug", 0)],
)
def test_elastic_severity_follows_elastics_falco_pipeline(alert: Callable[..., Alert], priority: str,
                                                          severity: int) -> None:
    assert elastic.build_ecs(alert(priority=priority), LIMIT)["event"]["severity"] == severity


def test_syslog_rfc5424_header_and_octet_counting(alert: Callable[..., Alert]) -> None:
    config = syslog.SyslogConfig(host="h", port=1)
    framed = syslog.frame(syslog.build_syslog(alert(), config, LIMIT))
    length, _, message = framed.partition(b" ")
    assert int(length) == len(message)
    assert message.startswith(
        b"<133>1 2026-08-21T10:15:30.123456Z node-1 falco 4242 falco.alert [falco@32473 "
        b'rule="Terminal shell in container" priority="Notice" uuid="6e9ec703-572d-45b6-9df9-3fdd7af70a97" '
        b'ns="default" pod="mysql-db-7d9f" container="3fc8155f9d1a"] {"uuid":'
    )


def test_cef_message(alert: Callable[..., Alert]) -> None:
    text = syslog.build_cef_message(alert(), LIMIT)
    assert text.startswith("CEF:0|Falcosecurity|Falco|peregrine-0.1.0|terminal_shell_in_container|"
                           "Terminal shell in container|4|rt=1787307330123 dvchost=node-1 suser=root "
                           "sproc=bash ")
    assert "cs1Label=k8sNamespace cs1=default" in text
    assert "msg=10:15:30.123456789: Notice A shell was spawned" in text
    assert "(user\\=root user_loginuid\\=-1" in text


def test_leef_message(alert: Callable[..., Alert]) -> None:
    text = syslog.build_leef_message(alert(), LIMIT)
    header, _, attributes = text.partition("|^|")
    assert header == "LEEF:2.0|Falcosecurity|Falco|peregrine-0.1.0|Terminal shell in container"
    pairs = dict(a.split("=", 1) for a in attributes.split("^"))
    assert pairs["devTime"] == "2026-08-21T10:15:30.123+0000"
    assert pairs["sev"] == "4" and pairs["usrName"] == "root" and pairs["k8sNamespace"] == "default"


def test_oversized_syslog_messages_shrink_to_the_limit(alert: Callable[..., Alert]) -> None:
    config = syslog.SyslogConfig(host="h", port=1, format="cef", max_message_bytes=2048)
    message = syslog.build_syslog(alert(output="x" * 1_000_000), config, LIMIT)
    assert len(message) <= 2048 and b"...[truncated " in message


def test_loki_stream_has_bounded_labels_and_the_alert_json_line(alert: Callable[..., Alert]) -> None:
    stream = loki.build_loki_stream(alert(), loki.LokiConfig(http=HttpConfig(url="http://loki")), LIMIT)
    assert stream["stream"] == {"source": "syscall", "priority": "Notice",
                                "rule": "Terminal shell in container", "hostname": "node-1",
                                "k8s_ns_name": "default"}
    [[stamp, line]] = stream["values"]
    assert stamp == "1787307330123456789"
    assert json.loads(line)["uuid"] == "6e9ec703-572d-45b6-9df9-3fdd7af70a97"


def test_webhook_and_file_carry_falco_json_with_uuid_first(alert: Callable[..., Alert],
                                                           alert_doc: Callable[..., dict[str, Any]]) -> None:
    body = webhook.build_webhook(alert(), LIMIT)
    assert body.startswith(b'{"uuid":"6e9ec703-572d-45b6-9df9-3fdd7af70a97"')
    assert json.loads(body) == alert_doc()
    line = file.build_json_line(alert(), LIMIT)
    assert line.endswith(b"\n") and line.count(b"\n") == 1


def test_slack_renders_attacker_text_inert(alert: Callable[..., Alert]) -> None:
    forged = "ls\n*all clear* _ok_ ~x~ `y` https://evil.example/x \u200eRLM\u200fLRM"
    payload = slack.build_slack(alert(output=forged), slack_config(), LIMIT)
    body = payload["attachments"][0]["blocks"][1]["text"]
    assert body["type"] == "plain_text" and body["emoji"] is False  # no *_~` formatting applies
    assert "\n" not in body["text"] and "ls\\n*all clear*" in body["text"]  # no forged line
    assert "hxxps://evil.example/x" in body["text"] and "https" not in body["text"]
    assert "\\u200eRLM\\u200fLRM" in body["text"]  # bidi marks shown, not obeyed


def test_syslog_without_certificate_verification_says_so(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger="peregrine.sink"):
        config = syslog.SyslogConfig(host="siem", port=6514, tls=True, verify=False)
        syslog.SyslogDestination(config, 8192, 10)
    assert "verification is OFF for syslog siem:6514" in caplog.text


EVIDENCE = [
    {"evt.type": "execve", "proc.name": "bash", "proc.cmdline": "bash -il", "evt.num": 1},
    {"evt.type": "connect", "proc.name": "curl", "fd.name": "10.0.0.1:443 <!channel> http://evil.test"},
    {"evt.type": "openat", "proc.name": "cat", "fd.name": "/etc/shadow", "proc.pid": 9},
]


def test_slack_shows_the_evidence_as_one_inert_line(alert: Callable[..., Alert]) -> None:
    blocks = slack.build_slack(alert(evidence=EVIDENCE), slack_config(), LIMIT)["attachments"][0]["blocks"]
    assert [b["type"] for b in blocks] == ["header", "section", "section", "section", "context"]
    line = blocks[3]["text"]
    assert line["type"] == "plain_text"
    assert line["text"].startswith("Before it (3 events of the process and its ancestors): execve bash bash")
    assert "openat cat /etc/shadow" in line["text"]
    assert "<!channel>" not in line["text"] and "http://" not in line["text"]
    without = slack.build_slack(alert(), slack_config(), LIMIT)["attachments"][0]["blocks"]
    assert len(without) == 4  # no evidence, no line


def test_siem_formats_carry_the_evidence_whole(alert: Callable[..., Alert]) -> None:
    a = alert(evidence=EVIDENCE)
    assert json.loads(webhook.build_webhook(a, LIMIT))["evidence"] == EVIDENCE
    assert json.loads(file.build_json_line(a, LIMIT))["evidence"] == EVIDENCE
    hec = splunk.SplunkConfig(http=HttpConfig(url="http://hec"), token=Secret("t"), index="security")
    assert splunk.build_hec(a, hec, LIMIT)["event"]["evidence"] == EVIDENCE
    ecs = elastic.build_ecs(a, LIMIT)["falco"]["evidence"]
    assert ecs[2] == {"evt_type": "openat", "proc_name": "cat", "fd_name": "/etc/shadow", "proc_pid": 9}
    assert "evidence" not in elastic.build_ecs(alert(), LIMIT)["falco"]


# --- alerts raised while their node lost events (alerts.wire.with_drops) ------------------------
DROPS = {"ring_full": 1200, "page_fault_reads": 3, "userspace_queue_full": 34}


@pytest.fixture
def lossy(alert: Callable[..., Alert]) -> Callable[..., Alert]:
    from alerts import wire

    def make(lost: int = 1234, **changes: Any) -> Alert:
        return decode_alert(wire.encode(wire.with_drops(alert(**changes), 5, 9, DROPS, lost)))

    return make


def test_slack_says_events_were_dropped_in_a_visible_line(lossy: Callable[..., Alert],
                                                          alert: Callable[..., Alert]) -> None:
    payload = slack.build_slack(lossy(), slack_config(), LIMIT)
    blocks = payload["attachments"][0]["blocks"]
    assert [b["type"] for b in blocks] == ["header", "section", "section", "section", "context"]
    line = "⚠ events were dropped on this node around this alert: 1,234"
    assert blocks[2]["text"] == {"type": "plain_text", "text": line, "emoji": False}
    assert payload["text"] == f"Notice: Terminal shell in container ({line})"
    only_faults = slack.build_slack(lossy(lost=0), slack_config(), LIMIT)["attachments"][0]["blocks"][2]
    assert only_faults["text"]["text"] == "⚠ event fields could not be read on this node around this alert: 3"
    assert slack.build_slack(alert(), slack_config(), LIMIT) == slack.build_slack(
        decode_alert(json.dumps(json.loads(webhook.build_webhook(alert(), LIMIT))).encode()),
        slack_config(), LIMIT)  # fmt: skip


def test_siem_formats_carry_the_drop_fields_whole(lossy: Callable[..., Alert],
                                                  alert: Callable[..., Alert]) -> None:
    from alerts.wire import DROP_FIELDS

    alert_ = lossy()
    expected = {k: alert_.output_fields[k] for k in DROP_FIELDS}
    assert expected["peregrine.drops.ring_full"] == 1200 and expected["peregrine.drops.first_ns"] == 5
    for body in (webhook.build_webhook(alert_, LIMIT), file.build_json_line(alert_, LIMIT),
                 syslog.build_json_message(alert_, LIMIT).encode()):  # fmt: skip
        fields = json.loads(body)["output_fields"]
        assert {k: fields[k] for k in DROP_FIELDS} == expected
    loki_config = loki.LokiConfig(http=HttpConfig(url="http://l"))
    [[_, line]] = loki.build_loki_stream(alert_, loki_config, LIMIT)["values"]
    assert {k: json.loads(line)["output_fields"][k] for k in DROP_FIELDS} == expected
    hec_config = splunk.SplunkConfig(http=HttpConfig(url="http://s"), token=Secret("t"))
    hec = splunk.build_hec(alert_, hec_config, LIMIT)
    assert {k: hec["event"]["output_fields"][k] for k in DROP_FIELDS} == expected
    assert hec["fields"]["dropped_events"] == "1234"
    ecs = elastic.build_ecs(alert_, LIMIT)["falco"]["output_fields"]
    assert {k: ecs[k.replace(".", "_")] for k in DROP_FIELDS} == expected
    cef = syslog.build_cef_message(alert_, LIMIT)
    assert "cn1Label=droppedEvents cn1=1234 " in cef
    assert ("Label=peregrineDrops cs6=ring_full\\=1200 inflight_full\\=0 bug\\=0 page_fault_reads\\=3 "
            "userspace_queue_full\\=34 delivery_failed\\=0 first_ns\\=5 last_ns\\=9 ") in cef
    _, _, attributes = syslog.build_leef_message(alert_, LIMIT).partition("|^|")
    pairs = dict(a.split("=", 1) for a in attributes.split("^"))
    assert pairs["droppedEvents"] == "1234" and pairs["peregrineDropsRingFull"] == "1200"
    assert pairs["peregrineDropsFirstNs"] == "5" and pairs["peregrineDropsPageFaultReads"] == "3"
    plain = alert()
    assert "droppedEvents" not in syslog.build_cef_message(plain, LIMIT)
    assert "droppedEvents" not in syslog.build_leef_message(plain, LIMIT)
    assert "dropped_events" not in splunk.build_hec(plain, hec_config, LIMIT)["fields"]
