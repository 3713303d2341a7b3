"""The alerts contract: encode/decode round trip, the size bound, the decoder under fuzz, the schema."""

from __future__ import annotations

import importlib
import json
import re
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import rules
from alerts import bound, wire
from alerts.errors import AlertDecodeError, AlertTooLargeError
from benchmarks.workload import rule_hitting_events
from rules.alert import INTERNAL_SOURCE, Alert
from rules.priority import Priority
from streams.detect import Detector
from streams.metrics import worker_metrics
from streams.reload import LiveRules, falco_engine

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "integration" / "worker"))
wb: Any = importlib.import_module("worker_batches")

VALIDATOR = jsonschema.Draft202012Validator(wire.schema())
SAMPLE = json.loads((Path(__file__).parents[1] / "sinks" / "alert_sample.json").read_text())
MARKER = re.compile(r"…\[truncated (\d+) bytes\]$")

# Text as attackers write it: any code point but lone surrogates (hypothesis' default), so
# control characters, quotes, backslashes, emoji and right-to-left marks all come up.
text = st.text(max_size=60)
finite = st.floats(allow_nan=False, allow_infinity=False)
scalar = st.none() | st.booleans() | st.integers(-(2**63), 2**64) | finite | text


@st.composite
def alerts(draw: st.DrawFn, big: st.SearchStrategy[str] = text) -> Alert:
    source = draw(st.sampled_from(["syscall", "k8s_audit", "aws_cloudtrail", INTERNAL_SOURCE]) | text)
    tags = () if source == INTERNAL_SOURCE else tuple(draw(st.lists(text, max_size=5)))
    return Alert(
        time_ns=draw(st.integers(0, 2**63 - 1)),
        rule=draw(text),
        priority=draw(st.sampled_from(Priority)),
        output=draw(big),
        output_fields=draw(st.dictionaries(text, scalar | big, max_size=8)),
        hostname=draw(text),
        source=source,
        tags=tags,
        uuid=draw(st.from_regex(r"[0-9A-Za-z._:-]{1,128}", fullmatch=True)),
        evidence=tuple(draw(st.lists(st.dictionaries(text, scalar, max_size=4), max_size=5))),
    )


@st.composite
def long_text(draw: st.DrawFn) -> str:
    """Up to 600k characters built from pieces (escapes take 6 bytes, emoji 4)."""
    piece = draw(st.sampled_from(["a", "é", "\x00", "\n", '"', "😀", "ab\\c"]))
    return piece * draw(st.integers(0, 600_000 // len(piece)))


def record(**changes: Any) -> bytes:
    doc = dict(SAMPLE)
    doc.update(changes)
    return json.dumps({k: v for k, v in doc.items() if v is not ...}).encode()


# --- round trip and schema ------------------------------------------------------------------
@given(alerts())
def test_decode_gives_back_the_encoded_alert(alert: Alert) -> None:
    data = wire.encode(alert)
    assert wire.decode(data) == alert
    assert wire.encode(wire.decode(data)) == data


@given(alerts())
def test_every_encoded_alert_validates_against_the_published_schema(alert: Alert) -> None:
    VALIDATOR.validate(json.loads(wire.encode(alert)))


def test_the_sample_alert_decodes_and_encodes_byte_for_byte_uuid_first_then_falcos_order() -> None:
    doc = {"uuid": SAMPLE["uuid"], **dict(sorted(SAMPLE.items()))}
    data = json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()
    assert data.startswith(b'{"uuid":"6e9ec703-572d-45b6-9df9-3fdd7af70a97","hostname":"node-1",')
    alert = wire.decode(data)
    assert (alert.priority, alert.time_ns) == (Priority.NOTICE, 1787307330123456789)
    assert wire.encode(alert) == data


def falco_alerts(falco_rules_dir: Path) -> list[bytes]:
    files = [falco_rules_dir / f for f in ("falco_rules.yaml", "falco-incubating_rules.yaml")]
    ruleset = rules.load(files, all_matches=True)
    literals = sorted(set(re.findall(r"'([^'\\]{1,60})'", ruleset.source())))
    matches = ruleset.evaluate(rule_hitting_events(literals, 3000, seed=5))
    return [wire.encode(wire.from_json_dict(rules.build_alert(rule, ev))) for ev, rule in matches]


def test_alerts_of_falcos_rules_validate_and_round_trip(falco_rules_dir: Path) -> None:
    records = falco_alerts(falco_rules_dir)
    assert len({json.loads(r)["rule"] for r in records}) >= 10  # many rules, not one
    for data in records:
        VALIDATOR.validate(json.loads(data))
        assert wire.encode(wire.decode(data)) == data


def test_the_detection_path_writes_schema_valid_alerts(falco_rules_dir: Path) -> None:
    live = LiveRules(falco_engine(), [falco_rules_dir / "falco_rules.yaml"], worker_metrics())
    detector = Detector(live)
    batch, decode_s = detector.decode(wb.make_batch("node-a", 0, 300, shell_every=100))
    found = detector.evaluate(batch, decode_s)
    assert len(found.alerts) == 3 and found.priorities == ["Notice"] * 3
    for _, data in found.alerts:
        VALIDATOR.validate(json.loads(data))
        assert wire.decode(data).rule == "Terminal shell in container"


@pytest.mark.parametrize(
    "doc",
    [
        {**SAMPLE, "source": "internal"},  # an internal alert has no tags
        {k: v for k, v in SAMPLE.items() if k != "uuid"},
        {**SAMPLE, "priority": "notice"},
        {**SAMPLE, "time": "2026-08-21T10:15:30Z"},
        {**SAMPLE, "extra": 1},
        {**SAMPLE, "output_fields": {"a": [1]}},
        {**SAMPLE, "evidence": {"evt.type": "open"}},
        {**SAMPLE, "evidence": [{"a": {"b": 1}}]},
        {**SAMPLE, "evidence": [{}] * 65},
    ],
    ids=["internal-with-tags", "no-uuid", "priority-case", "time-form", "unknown-key", "nested-field",
         "evidence-object", "evidence-nested", "evidence-too-long"],
)
def test_decoder_and_schema_reject_the_same_documents(doc: dict[str, Any]) -> None:
    assert not VALIDATOR.is_valid(doc)
    with pytest.raises(AlertDecodeError):
        wire.decode(json.dumps(doc).encode())


def test_schema_ships_as_package_data() -> None:
    assert wire.schema()["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    pyproject = (Path(__file__).parents[3] / "pyproject.toml").read_text()
    assert 'alerts = ["schema.json"]' in pyproject


# --- the size bound -----------------------------------------------------------------------------
BIG_FIELDS: dict[str, Any] = {"a": "\x00" * 50_000, "b": '"' * 90_000, "c": 7, "d": "x"}
BIG = Alert(1, "r", Priority.ERROR, "😀" * 200_000, BIG_FIELDS, "h", "syscall", ("t",), "u")


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(alerts(big=long_text()))
@example(alert=BIG)
def test_encoded_alerts_never_exceed_the_bound_and_cut_only_what_they_must(alert: Alert) -> None:
    data = wire.encode(alert)
    assert len(data) <= wire.MAX_ALERT_BYTES
    VALIDATOR.validate(json.loads(data))
    back = wire.decode(data)
    assert (back.uuid, back.rule, back.time_ns, back.tags, back.hostname) == (
        alert.uuid, alert.rule, alert.time_ns, alert.tags, alert.hostname)
    assert back.output_fields.keys() == alert.output_fields.keys()
    pairs = [(back.output, alert.output)]
    pairs += [(back.output_fields[k], v) for k, v in alert.output_fields.items()]
    for got, original in pairs:
        if got == original:
            continue
        assert isinstance(got, str) and isinstance(original, str)
        cut = MARKER.search(got)
        assert cut is not None, "a changed value ends with the marker"
        kept = got[: cut.start()]
        assert original.startswith(kept)
        assert int(cut.group(1)) == len(original.encode()) - len(kept.encode())


def test_the_largest_value_is_cut_first_and_small_ones_stay() -> None:
    alert = wire.from_json_dict({**SAMPLE, "output": "x" * 300_000})
    back = wire.decode(wire.encode(alert))
    assert back.output_fields == alert.output_fields
    assert back.output.startswith("x" * 200_000) and back.output.endswith(" bytes]")


def test_escaped_control_characters_count_at_their_encoded_size() -> None:
    fields = {f"f{i}": "\x01" * 20_000 for i in range(10)}  # 1.2 MB once escaped as \u0001
    data = wire.encode(wire.from_json_dict({**SAMPLE, "output_fields": fields}))
    assert wire.MAX_ALERT_BYTES - 200 < len(data) <= wire.MAX_ALERT_BYTES


def test_an_alert_whose_fixed_parts_exceed_the_bound_is_an_error() -> None:
    alert = wire.from_json_dict({**SAMPLE, "rule": "r" * wire.MAX_ALERT_BYTES})
    with pytest.raises(AlertTooLargeError, match="every text field cut"):
        wire.encode(alert)


def test_the_bound_leaves_room_under_kafkas_default_record_limit() -> None:
    assert bound.MAX_ALERT_BYTES * 3 < 1_000_000 and wire.MAX_RECORD_BYTES == 1024 * 1024


def test_lone_surrogates_become_replacement_characters_and_non_finite_floats_null() -> None:
    alert = wire.from_json_dict({**SAMPLE, "output": "a\udcffb", "output_fields": {"x": float("inf")}})
    back = wire.decode(wire.encode(alert))
    assert back.output == "a\ufffdb" and back.output_fields == {"x": None}


# --- the decoder under fuzz: AlertDecodeError and nothing else ----------------------------------
def decodes_or_rejects(data: bytes) -> None:
    try:
        alert = wire.decode(data)
    except AlertDecodeError as exc:
        assert exc.reason and len(str(exc)) < 600  # bounded: never the whole record
        return
    VALIDATOR.validate(json.loads(wire.encode(alert)))


@given(st.binary(max_size=2000))
def test_random_bytes(data: bytes) -> None:
    decodes_or_rejects(data)


@given(st.data())
def test_flipped_inserted_and_deleted_bytes_of_a_real_record(data: st.DataObject) -> None:
    raw = bytearray(record())
    for _ in range(data.draw(st.integers(1, 8))):
        at = data.draw(st.integers(0, len(raw) - 1))
        op = data.draw(st.sampled_from(["flip", "insert", "delete"]))
        if op == "flip":
            raw[at] ^= 1 << data.draw(st.integers(0, 7))
        elif op == "insert":
            raw[at:at] = data.draw(st.binary(min_size=1, max_size=4))
        elif len(raw) > 1:
            del raw[at]
    decodes_or_rejects(bytes(raw))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(st.sampled_from(sorted(SAMPLE)), json_values)
def test_any_value_of_the_wrong_type_under_any_key(key: str, value: object) -> None:
    decodes_or_rejects(record(**{key: value}))


@given(json_values | st.lists(json_values, max_size=70))
def test_any_evidence(value: object) -> None:
    decodes_or_rejects(record(evidence=value))


@given(st.dictionaries(st.text(), json_values, max_size=6))
def test_arbitrary_objects(doc: dict[str, object]) -> None:
    decodes_or_rejects(json.dumps(doc).encode())


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"[" * 100_000 + b"]" * 100_000, "not an alert"),
        (b'{"a":' * 100_000 + b"1" + b"}" * 100_000, "not an alert"),
        (record(output_fields={"x": "PLACEHOLDER"}).replace(b'"PLACEHOLDER"', b"[" * 50_000), "not"),
        (record(output_fields={"x": 0}).replace(b'"x": 0', b'"x": ' + b"9" * 5000), "not JSON"),
        (record(output_fields={"x": 0}).replace(b'"x": 0', b'"x": 1e999'), "not JSON"),
        (record(output_fields={"x": 0}).replace(b'"x": 0', b'"x": NaN'), "not JSON"),
        (record().replace(b'{"uuid"', b'{"rule": "other", "uuid"'), "not JSON"),
        (b'{"a": 1, "a": 2}', "not JSON"),
        (b" " * (wire.MAX_RECORD_BYTES + 1), "too large"),
        (b"", "not JSON"),
        (b"\xef\xbb\xbf{}", "not JSON"),
        (record(output_fields=[]), "not an alert"),
        (record(tags="shell"), "not an alert"),
        (record(time=None), "not an alert"),
        (record(time="9999-12-31T23:59:60.000000000Z"), "not an alert"),
        (record(uuid="x\r\nSet-Cookie: a"), "not an alert"),
        (record(uuid=...), "not an alert"),
    ],
    ids=["deep-array", "deep-object", "deep-field", "huge-int", "huge-float", "nan", "duplicate-key",
         "duplicate-any", "oversized", "empty", "bom", "fields-array", "tags-string", "time-null",
         "leap-second", "uuid-header", "no-uuid"],
)
def test_poison_records_are_rejected_with_a_reason(data: bytes, reason: str) -> None:
    with pytest.raises(AlertDecodeError) as info:
        wire.decode(data)
    assert info.value.reason.startswith(reason)


def test_invalid_utf8_is_replaced_once() -> None:
    raw = record(output="PLACEHOLDER").replace(b"PLACEHOLDER", b"bad \xff\xfe\xc3 bytes")
    assert wire.decode(raw).output == "bad \ufffd\ufffd\ufffd bytes"


def test_error_messages_quote_at_most_a_bounded_piece_of_the_value() -> None:
    with pytest.raises(AlertDecodeError) as info:
        wire.decode(record(priority="P" * 100_000))
    assert "unknown priority" in str(info.value) and len(str(info.value)) < 300


# --- alerts raised while events were dropped ----------------------------------------------------
DROPS = {"ring_full": 7, "page_fault_reads": 2, "userspace_queue_full": 500}


def flagged(alert: Alert) -> Alert:
    return wire.with_drops(alert, 10, 20, DROPS, lost=507)


def test_a_flagged_alert_carries_every_drop_field_and_round_trips() -> None:
    plain = wire.from_json_dict(SAMPLE)
    alert = flagged(plain)
    doc = json.loads(wire.encode(alert))
    VALIDATOR.validate(doc)
    fields = doc["output_fields"]
    assert {k: fields[k] for k in wire.DROP_FIELDS} == {
        "peregrine.drops.incomplete": True, "peregrine.drops.lost": 507,
        "peregrine.drops.ring_full": 7, "peregrine.drops.inflight_full": 0, "peregrine.drops.bug": 0,
        "peregrine.drops.page_fault_reads": 2, "peregrine.drops.userspace_queue_full": 500,
        "peregrine.drops.delivery_failed": 0,
        "peregrine.drops.first_ns": 10, "peregrine.drops.last_ns": 20,
    }
    assert list(fields)[: len(plain.output_fields)] == list(plain.output_fields)  # the rule's come first
    assert wire.decode(wire.encode(alert)) == alert
    assert wire.dropped(alert) == 507 and wire.dropped(plain) is None
    assert (alert.uuid, alert.output) == (plain.uuid, plain.output)
    assert wire.encode(plain) == wire.encode(wire.from_json_dict(SAMPLE)), "unflagged: as before"
    huge = wire.with_drops(plain, 2**63 - 1, 2**63 - 1, dict.fromkeys(wire.DROP_CAUSES, 10**12), 5 * 10**12)
    assert len(wire.encode(huge)) - len(wire.encode(plain)) <= wire.DROP_FIELDS_MAX_BYTES


def test_drop_causes_are_the_batch_causes() -> None:
    from collectors.wire import DROP_CAUSES

    assert wire.DROP_CAUSES == DROP_CAUSES


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(alerts(big=long_text()))
@example(alert=BIG)
def test_the_bound_holds_for_flagged_alerts_and_never_cuts_the_counts(alert: Alert) -> None:
    data = wire.encode(flagged(alert))
    assert len(data) <= wire.MAX_ALERT_BYTES
    back = wire.decode(data)
    assert wire.dropped(back) == 507 and back.output_fields["peregrine.drops.ring_full"] == 7


drop_values = st.none() | st.booleans() | st.integers(-5, 2**64) | st.floats(allow_nan=False) | text


@given(st.dictionaries(st.sampled_from(wire.DROP_FIELDS), drop_values, min_size=1))
@settings(max_examples=400)
def test_decoder_and_schema_agree_on_any_drop_fields(drops: dict[str, object]) -> None:
    doc = {**SAMPLE, "output_fields": {**SAMPLE["output_fields"], **drops}}
    try:
        data = json.dumps(doc, allow_nan=False).encode()
    except ValueError:
        return
    valid = VALIDATOR.is_valid(json.loads(data))
    try:
        wire.decode(data)
    except AlertDecodeError:
        assert not valid
    else:
        assert valid


@pytest.mark.parametrize(
    "drops",
    [
        {"peregrine.drops.incomplete": True},
        {k: 1 for k in wire.DROP_FIELDS},
        {**{k: 1 for k in wire.DROP_FIELDS}, "peregrine.drops.incomplete": True, "peregrine.drops.lost": -1},
        {**{k: 1 for k in wire.DROP_FIELDS}, "peregrine.drops.incomplete": True, "peregrine.drops.bug": "1"},
    ],
    ids=["flag-alone", "flag-not-true", "negative", "string-count"],
)
def test_partial_or_mistyped_drop_fields_are_refused_by_both(drops: dict[str, object]) -> None:
    doc = {**SAMPLE, "output_fields": {**SAMPLE["output_fields"], **drops}}
    assert not VALIDATOR.is_valid(doc)
    with pytest.raises(AlertDecodeError):
        wire.decode(json.dumps(doc).encode())
