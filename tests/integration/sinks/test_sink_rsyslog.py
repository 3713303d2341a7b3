"""Syslog RFC 5424 to a real rsyslogd over TCP (octet counting) and TLS, compared field by field."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
from receivers import Rsyslog

from sinks import syslog
from sinks.alert import decode_alert
from sinks.errors import RetryableError

AlertDoc = Callable[..., dict[str, Any]]


def destination(rsyslog: Rsyslog, listener: str, fmt: str, **changes: Any) -> syslog.SyslogDestination:
    tls = listener == "tls"
    settings: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": rsyslog.tls_port if tls else rsyslog.tcp_port,
        "format": fmt,
        "tls": tls,
        "ca_file": str(rsyslog.ca_file),
        "server_name": "localhost",
    }
    config = syslog.SyslogConfig(**{**settings, **changes})
    return syslog.SyslogDestination(config, 8192, 100)


def parse_sd(text: str) -> tuple[str, dict[str, str]]:
    """Structured data ``[id k="v" ...]`` with RFC 5424 escapes undone."""
    assert text.startswith("[") and text.endswith("]")
    sd_id, _, rest = text[1:-1].partition(" ")
    params: dict[str, str] = {}
    i = 0
    while i < len(rest):
        eq = rest.index("=", i)
        name = rest[i:eq].strip()
        j, value = eq + 2, []
        while rest[j] != '"':
            if rest[j] == "\\" and rest[j + 1] in '"\\]':
                j += 1
            value.append(rest[j])
            j += 1
        params[name] = "".join(value)
        i = j + 1
    return sd_id, params


@pytest.mark.parametrize("listener", ["tcp", "tls"])
@pytest.mark.parametrize("fmt", ["json", "cef", "leef"])
def test_rsyslog_receives_every_field(rsyslog: Rsyslog, alert_doc: AlertDoc, listener: str, fmt: str) -> None:
    docs = [
        alert_doc(uuid=f"00000000-0000-4000-8000-{i:012d}", priority=p)
        for i, p in enumerate(["Critical", "Notice", "Debug"])
    ]
    alerts = [decode_alert(json.dumps(d).encode()) for d in docs]
    sink = destination(rsyslog, listener, fmt)
    sink.send([sink.build(a) for a in alerts])
    sink.close()
    received = rsyslog.wait_for(listener, len(alerts))
    assert len(received) == len(alerts)
    for alert, doc, (raw, fields) in zip(alerts, docs, received, strict=True):
        assert raw.encode() == syslog.build_syslog(alert, sink._config, 8192)  # noqa: SLF001 - config under test
        assert fields["pri"] == str(16 * 8 + int(alert.priority))
        assert fields["version"] == "1"
        assert datetime.fromisoformat(fields["timestamp"]) == datetime.fromisoformat(
            "2026-08-21T10:15:30.123456+00:00"
        )
        assert fields["hostname"] == "node-1"
        assert fields["app_name"] == "falco"
        assert fields["procid"] == "4242"
        assert fields["msgid"] == "falco.alert"
        sd_id, params = parse_sd(fields["structured_data"])
        assert sd_id == "falco@32473"
        assert params == {
            "rule": doc["rule"],
            "priority": doc["priority"],
            "uuid": doc["uuid"],
            "ns": "default",
            "pod": "mysql-db-7d9f",
            "container": "3fc8155f9d1a",
        }
        message = fields["msg"]
        if fmt == "json":
            assert json.loads(message) == doc
        elif fmt == "cef":
            assert message.startswith(
                "CEF:0|Falcosecurity|Falco|peregrine-0.1.0|terminal_shell_in_container|"
            )
            assert f"cs5Label=uuid cs5={doc['uuid']}" in message
        else:
            header, _, attributes = message.partition("|^|")
            assert header.startswith("LEEF:2.0|Falcosecurity|Falco|")
            assert dict(a.split("=", 1) for a in attributes.split("^"))["uuid"] == doc["uuid"]


def test_a_closed_connection_is_noticed_and_reopened(rsyslog: Rsyslog, alert_doc: AlertDoc) -> None:
    alert = decode_alert(json.dumps(alert_doc()).encode())
    sink = destination(rsyslog, "tcp", "json")
    sink.send([sink.build(alert)])
    sink._sock.shutdown(2)  # noqa: SLF001 - simulate the peer going away between batches
    sink.send([sink.build(alert)])
    sink.close()
    assert len(rsyslog.wait_for("tcp", 2)) == 2


def test_tls_verifies_the_receivers_certificate(rsyslog: Rsyslog, alert_doc: AlertDoc) -> None:
    alert = decode_alert(json.dumps(alert_doc()).encode())
    sink = destination(rsyslog, "tls", "json", server_name="not-the-server.example")
    with pytest.raises(RetryableError, match="CERTIFICATE_VERIFY_FAILED|certificate"):
        sink.send([sink.build(alert)])
    sink.close()
    assert rsyslog.messages("tls") == []
