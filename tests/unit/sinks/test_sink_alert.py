"""Decoding records of `peregrine.alerts` in the sink: the contract's decoder and type (`alerts.wire`)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from alerts.errors import AlertDecodeError
from rules.alert import Alert as ContractAlert
from rules.priority import Priority
from sinks.alert import Alert, decode_alert, parse_time_ns

AlertDoc = Callable[..., dict[str, Any]]


def test_decodes_falco_json(alert_doc: AlertDoc) -> None:
    alert = decode_alert(json.dumps(alert_doc()).encode())
    assert alert.rule == "Terminal shell in container"
    assert alert.priority is Priority.NOTICE
    assert alert.time_ns == 1787307330123456789
    assert alert.namespace == "default"
    assert alert.tags[0] == "container"
    assert alert.to_json_dict()["priority"] == "Notice"


def test_invalid_utf8_is_replaced_not_rejected(alert_doc: AlertDoc) -> None:
    raw = json.dumps(alert_doc(output="PLACEHOLDER")).encode().replace(b"PLACEHOLDER", b"bad \xff\xfe bytes")
    assert decode_alert(raw).output == "bad \ufffd\ufffd bytes"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (b"not json", "not JSON"),
        (b"[1]", "expected a JSON object"),
        (b'{"time": "2026-08-21T10:15:30Z"}', "missing key(s): 'hostname', 'output', 'output_fields'"),
        (b"[" * 100_000, "nested deeper than the JSON parser allows"),
    ],
)
def test_poison_records_are_rejected_with_the_reason(value: bytes, message: str) -> None:
    with pytest.raises(AlertDecodeError, match=message.replace("(", r"\(").replace(")", r"\)")):
        decode_alert(value)


def test_unknown_priority_is_poison(alert_doc: AlertDoc) -> None:
    with pytest.raises(AlertDecodeError, match="unknown priority"):
        decode_alert(json.dumps(alert_doc(priority="Urgent")).encode())


def test_uuid_with_header_breaking_characters_is_poison(alert_doc: AlertDoc) -> None:
    with pytest.raises(AlertDecodeError, match="uuid"):
        decode_alert(json.dumps(alert_doc(uuid="x\r\nSet-Cookie: a")).encode())


def test_a_record_without_uuid_is_not_an_alert_we_wrote(alert_doc: AlertDoc) -> None:
    doc = alert_doc()
    del doc["uuid"]
    with pytest.raises(AlertDecodeError, match="missing key\\(s\\): 'uuid'"):
        decode_alert(json.dumps(doc).encode())


def test_the_sinks_alert_is_the_contracts_one_definition() -> None:
    assert Alert is ContractAlert


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-08-21T10:15:30.123456789Z", 1787307330123456789),
        ("2026-08-21T10:15:30Z", 1787307330000000000),
        ("2026-08-21T12:15:30.5+02:00", 1787307330500000000),
    ],
)
def test_time_parsing_keeps_nanoseconds(text: str, expected: int) -> None:
    assert parse_time_ns(text) == expected
