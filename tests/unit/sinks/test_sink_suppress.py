"""Suppressions: what they match, their control topic records, the file's entries, the CLI's durations."""

from __future__ import annotations

import pytest

from rules.priority import Priority
from sinks.alert import Alert
from sinks.config import parse_config
from sinks.errors import ConfigError
from sinks.service import parse_duration
from sinks.suppress import Suppression, Suppressions, decode_record, encode_record

NOW = 1_800_000_000 * 10**9


def alert(pod: str = "web-1", rule: str = "Terminal shell in container") -> Alert:
    return Alert(time_ns=NOW, rule=rule, priority=Priority.NOTICE, output="o",
                 output_fields={"k8s.pod.name": pod}, hostname="node-1", source="syscall", tags=(),
                 uuid="00000000-0000-4000-8000-000000000001")


def test_a_suppression_matches_every_glob_until_it_expires_on_the_destinations_it_names() -> None:
    s = Suppression((("k8s.pod.name", "web-*"), ("rule", "Terminal*")), NOW + 10, ("slack",))
    assert s.applies(alert(), "slack", NOW)
    assert not s.applies(alert(), "siem", NOW)  # another destination
    assert not s.applies(alert(pod="db-1"), "slack", NOW)  # one glob fails
    assert not s.applies(alert(), "slack", NOW + 10)  # expired
    everywhere = Suppression((("hostname", "node-*"),), NOW + 10)
    assert everywhere.applies(alert(), "siem", NOW)


def test_records_round_trip_and_a_later_record_with_the_same_id_replaces_the_first() -> None:
    s = Suppression((("rule", "x*"),), NOW + 10, ("slack",), "noisy")
    key, value = encode_record(s)
    assert key.decode() == s.id and decode_record(value) == s
    lifted = Suppression(s.match, NOW, s.destinations)
    assert lifted.id == s.id  # --for 0 on the same match replaces it
    table = Suppressions()
    table.put(s.id, s)
    assert table.matches(alert(rule="xyz"), "slack", NOW)
    table.put(lifted.id, lifted)
    assert not table.matches(alert(rule="xyz"), "slack", NOW)
    table.put(s.id, None)  # a tombstone
    with pytest.raises(ConfigError, match="suppression record"):
        decode_record(b'{"match": {}, "until_ns": 1}')


def test_the_files_suppressions_are_parsed_and_checked() -> None:
    doc = {"kafka": {"bootstrap_servers": "k:9092"},
           "destinations": [{"name": "f", "type": "file", "path": "/tmp/x"}],
           "suppress": [{"match": {"rule": "Terminal*"}, "until": "2027-01-01T00:00:00Z",
                         "destinations": ["f"]}]}
    (s,) = parse_config(doc, "t", {}).suppress
    assert s.match == (("rule", "Terminal*"),) and s.destinations == ("f",)
    assert s.until_ns == 1_798_761_600 * 10**9
    for entry, message in [
        ({"match": {}, "until": "2027-01-01T00:00:00Z"}, "suppress[0].match: at least one"),
        ({"match": {"rule": "x"}, "until": "2027-01-01"}, "suppress[0].until: not an RFC 3339 time"),
        ({"match": {"rule": "x"}, "until": "2027-01-01T00:00:00Z", "destinations": ["g"]},
         "suppress[0].destinations: no destination named g"),
    ]:
        with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
            parse_config({**doc, "suppress": [entry]}, "t", {})


def test_durations() -> None:
    assert [parse_duration(t) for t in ("90", "90s", "15m", "2h", "1d", "0")] == [90, 90, 900, 7200, 86400, 0]
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration("2 hours")
