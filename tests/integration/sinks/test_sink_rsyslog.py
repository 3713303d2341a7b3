"""Syslog RFC 5424 to a real rsyslogd over TCP (octet counting) and TLS, compared field by field."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
from receivers import Rsyslog

from sinks import syslog
from sinks.alert import decode_alert
from sinks.errors import RetryableError
from sinks.syslog import SyslogDestination

AlertDoc = Callable[..., dict[str, Any]]


def destination(rsyslog: Rsyslog, listener: str, fmt: str, **changes: Any) -> syslog.SyslogDestination:
    tls = listener == "tls"
    ports = {"tcp": rsyslog.tcp_port, "tls": rsyslog.tls_port, "relp": rsyslog.relp_port}
    settings: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": ports[listener],
        "format": fmt,
        "protocol": "relp" if listener == "relp" else "tcp",
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


@pytest.mark.parametrize("listener", ["tcp", "tls", "relp"])
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
    # the first alert is sent again on the new connection: TCP cannot tell whether it was read
    assert len(rsyslog.wait_for("tcp", 3)) == 3


def test_tls_verifies_the_receivers_certificate(rsyslog: Rsyslog, alert_doc: AlertDoc) -> None:
    alert = decode_alert(json.dumps(alert_doc()).encode())
    sink = destination(rsyslog, "tls", "json", server_name="not-the-server.example")
    with pytest.raises(RetryableError, match="CERTIFICATE_VERIFY_FAILED|certificate"):
        sink.send([sink.build(alert)])
    sink.close()
    assert rsyslog.messages("tls") == []


def _send_with_retries(sink: SyslogDestination, batches: list[list[bytes]]) -> int:
    """Deliver every batch as the sink runner does: a failed batch is sent again. Returns failures."""
    failures = 0
    for batch in batches:
        for _ in range(100):
            try:
                sink.send(batch)
                break
            except RetryableError:
                failures += 1
                time.sleep(0.1)
        else:
            raise AssertionError("a batch was never delivered")
    return failures


def _uuids(rsyslog: Rsyslog, listener: str) -> set[str]:
    return {parse_sd(fields["structured_data"])[1]["uuid"] for _, fields in rsyslog.messages(listener)}


def _batches(
    alert_doc: AlertDoc, sink: SyslogDestination, count: int, size: int
) -> tuple[list[list[bytes]], set[str]]:
    docs = [alert_doc(uuid=f"00000000-0000-4000-8000-{i:012d}") for i in range(count * size)]
    frames = [sink.build(decode_alert(json.dumps(d).encode())) for d in docs]
    return [frames[i : i + size] for i in range(0, len(frames), size)], {d["uuid"] for d in docs}


def test_relp_loses_nothing_when_rsyslogd_is_killed_mid_stream(rsyslog: Rsyslog, alert_doc: AlertDoc) -> None:
    sink = destination(rsyslog, "relp", "json", timeout_s=2.0)
    batches, sent = _batches(alert_doc, sink, 40, 50)
    failures: list[int] = []
    sender = threading.Thread(target=lambda: failures.append(_send_with_retries(sink, batches)))
    sender.start()
    rsyslog.wait_for("relp", 500)
    rsyslog.kill()
    time.sleep(0.5)
    rsyslog.start()
    sender.join(timeout=120)
    sink.close()
    assert failures and failures[0] >= 1  # the kill was felt mid-stream, and retried
    received = rsyslog.wait_for("relp", len(sent))
    assert _uuids(rsyslog, "relp") == sent, f"{len(sent - _uuids(rsyslog, 'relp'))} lost of {len(received)}"


def test_tcp_resends_what_a_receiver_killed_with_it_unread_had_taken(
    rsyslog: Rsyslog, alert_doc: AlertDoc
) -> None:
    sink = destination(rsyslog, "tcp", "json", timeout_s=1.0)
    batches, sent = _batches(alert_doc, sink, 40, 5)
    _send_with_retries(sink, batches[:1])
    assert rsyslog.process is not None
    os.kill(rsyslog.process.pid, signal.SIGSTOP)  # stops reading: its kernel still takes our bytes
    accepted = 1
    for batch in batches[1:]:  # accepted while they fit the receiver's socket buffer, then refused
        try:
            sink.send(batch)
        except RetryableError:
            break
        accepted += 1
    assert 1 < accepted < len(batches)
    rsyslog.kill()  # dies with them unread
    rsyslog.start()
    _send_with_retries(sink, batches[accepted:])  # finds the connection gone: resends what was in flight
    sink.close()
    rsyslog.wait_for("tcp", len(sent))
    assert _uuids(rsyslog, "tcp") == sent


def test_relp_refuses_a_receiver_that_is_not_relp(rsyslog: Rsyslog, alert_doc: AlertDoc) -> None:
    sink = destination(rsyslog, "tcp", "json", protocol="relp", timeout_s=1.0)
    with pytest.raises(RetryableError, match="RELP"):
        sink.send([sink.build(decode_alert(json.dumps(alert_doc()).encode()))])
    sink.close()
