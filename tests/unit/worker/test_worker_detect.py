"""The batch step without Kafka: decode errors, alerts keyed by container, gaps, rules reload."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from collectors.wire import WireError
from streams.detect import Detector, SeqTracker
from streams.metrics import worker_metrics
from streams.reload import LiveRules, RulesEngine

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "integration" / "worker"))
wb: Any = importlib.import_module("worker_batches")


def standin(tmp_path: Path, text: str = "# stand-in\n") -> LiveRules:
    rules = tmp_path / "rules.yaml"
    rules.write_text(text)
    return LiveRules(RulesEngine(wb.standin_load, wb.standin_alert), [rules], worker_metrics())


def test_gaps_count_skipped_batches_per_node_and_boot() -> None:
    t = SeqTracker()
    assert [t.observe("a", "b1", s) for s in (0, 1, 2, 5, 6)] == [0, 0, 0, 2, 0]
    assert t.observe("b", "b1", 9) == 0  # first batch seen of a node: no gap
    assert t.observe("a", "b1", 3) == 0  # redelivery, not a gap
    assert t.observe("a", "b2", 0) == 0  # the node rebooted: its count starts again
    assert t.observe("a", "b2", 2) == 1


def test_alerts_are_falco_json_keyed_by_container_id(tmp_path: Path) -> None:
    d = Detector(standin(tmp_path))
    batch, decode_s = d.decode(wb.make_batch("node-a", 0, 300, shell_every=100))
    found = d.evaluate(batch, decode_s)
    assert len(found.alerts) == 3
    for key, value in found.alerts:
        assert key == wb.container_id("node-a").encode()
        alert = json.loads(value)
        assert alert["hostname"] == "node-a" and alert["priority"] == "Notice"
    assert found.priorities == ["Notice"] * 3
    assert found.missing == 0


def test_undecodable_batch_raises_wire_error_with_a_short_reason(tmp_path: Path) -> None:
    with pytest.raises(WireError) as info:
        Detector(standin(tmp_path)).decode(b"\x93\x01\x02\x03")
    assert info.value.reason == "envelope is not a map"


def test_enrichment_is_one_call_per_batch_with_its_processes(tmp_path: Path) -> None:
    calls: list[int] = []
    d = Detector(standin(tmp_path), enrich=lambda procs: calls.append(len(list(procs))))
    d.decode(wb.make_batch("node-a", 0, 300))
    assert calls == [3]


async def test_reload_replaces_the_rules_and_a_bad_file_keeps_them(tmp_path: Path) -> None:
    live = standin(tmp_path)
    first = live.ruleset
    assert await live.reload()
    assert live.ruleset is not first and live.generation == 2
    kept = live.ruleset
    (tmp_path / "rules.yaml").write_text("invalid\n")
    assert not await live.reload()
    assert live.ruleset is kept and live.generation == 2


def test_a_bad_rules_file_at_start_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="invalid"):
        standin(tmp_path, "invalid\n")


def test_the_sequence_table_is_bounded_and_evicts_the_least_recently_seen_node() -> None:
    t = SeqTracker(max_nodes=3)
    for node in ("a", "b", "c"):
        t.observe(node, "b1", 5)
    t.observe("a", "b1", 6)  # a is now the most recent
    t.observe("d", "b1", 0)
    assert len(t) == 3
    assert t.observe("a", "b1", 8) == 1  # kept: its gap is still seen
    assert t.observe("b", "b1", 9) == 0  # evicted: starts afresh, as after a restart


@pytest.mark.parametrize(
    "node", ["", "n" * 254, "evil\nrules reloaded", "a b", "-lead", "trail.", "ünicode"]
)
def test_a_node_name_that_is_not_a_dns_name_is_refused(tmp_path: Path, node: str) -> None:
    with pytest.raises(WireError) as info:
        Detector(standin(tmp_path)).decode(wb.make_batch(node, 0, 10))
    assert info.value.reason in ("bad envelope field", "malformed msgpack")
    assert "\n" not in str(info.value) and len(str(info.value)) < 300


def test_a_boot_id_longer_than_a_uuid_is_refused(tmp_path: Path) -> None:
    with pytest.raises(WireError, match="boot_id"):
        Detector(standin(tmp_path)).decode(wb.make_batch("node-a", 0, 10, boot_id="b" * 65))


def test_the_alert_hostname_is_the_envelope_node_not_the_process_records(tmp_path: Path) -> None:
    d = Detector(standin(tmp_path))
    batch, decode_s = d.decode(wb.make_batch("node-a", 0, 100, shell_every=50, proc_node="made-up"))
    found = d.evaluate(batch, decode_s)
    assert {json.loads(value)["hostname"] for _, value in found.alerts} == {"node-a"}


def test_an_alert_key_is_bounded() -> None:
    from streams.detect import alert_key

    assert alert_key("a" * 64) == b"a" * 64
    assert len(alert_key("x" * 1_000_000)) == 64


def test_a_failed_reload_logs_one_bounded_line(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import asyncio

    live = standin(tmp_path)
    (tmp_path / "rules.yaml").write_text("invalid\nrules reloaded (generation 9)" + "x" * 100_000)

    def load(paths: list[str], **kwargs: Any) -> Any:
        raise ValueError(Path(paths[0]).read_text())

    live.engine = RulesEngine(load, wb.standin_alert)
    with caplog.at_level("ERROR", logger="peregrine.worker.rules"):
        assert asyncio.run(live.reload()) is False
    [line] = caplog.messages
    assert "\n" not in line and len(line) < 5000


def test_alert_ids_come_from_the_envelope_node_not_the_process_records(tmp_path: Path) -> None:
    """A node that writes another node's name into its process records gets neither that name nor
    that node's alert ids: the same events give the same ids whatever the records claim, and they
    differ from the ids the named node's own alerts of those events have."""

    def ids(node: str, proc_node: str) -> list[str]:
        d = Detector(standin(tmp_path))
        batch, decode_s = d.decode(wb.make_batch(node, 0, 100, shell_every=50, proc_node=proc_node))
        return [json.loads(value)["uuid"] for _, value in d.evaluate(batch, decode_s).alerts]

    honest = ids("node-a", "node-a")
    assert len(honest) == 2 and ids("node-a", "node-b") == honest
    assert not set(ids("node-b", "node-b")) & set(honest)


def test_a_batch_that_reports_losses_flags_its_alerts_and_no_other(tmp_path: Path) -> None:
    from alerts import wire
    from collectors.wire import Drops

    d = Detector(standin(tmp_path))
    drops = Drops(wb.T0, wb.T0 + 300, (40, 0, 0, 3, 500, 0))
    plain = d.evaluate(*d.decode(wb.make_batch("node-a", 0, 300, shell_every=100)))
    lossy = d.evaluate(*d.decode(wb.make_batch("node-a", 0, 300, shell_every=100, drops=drops)))
    other = d.evaluate(*d.decode(wb.make_batch("node-b", 0, 300, shell_every=100)))
    assert lossy.incomplete == 3 and plain.incomplete == 0 and other.incomplete == 0
    for (key, flagged_value), (plain_key, plain_value) in zip(lossy.alerts, plain.alerts, strict=True):
        flagged, unflagged = wire.decode(flagged_value), wire.decode(plain_value)
        assert key == plain_key and flagged.uuid == unflagged.uuid  # the same match, the same id
        assert wire.dropped(flagged) == 540 and wire.dropped(unflagged) is None
        assert {k: flagged.output_fields[k] for k in ("peregrine.drops.ring_full",
                "peregrine.drops.page_fault_reads", "peregrine.drops.userspace_queue_full",
                "peregrine.drops.first_ns", "peregrine.drops.last_ns")} == {
            "peregrine.drops.ring_full": 40, "peregrine.drops.page_fault_reads": 3,
            "peregrine.drops.userspace_queue_full": 500, "peregrine.drops.first_ns": wb.T0,
            "peregrine.drops.last_ns": wb.T0 + 300}  # fmt: skip
        assert {k: v for k, v in flagged.output_fields.items() if k not in wire.DROP_FIELDS} == (
            unflagged.output_fields)
        assert plain_value == wire.encode(unflagged), "unflagged alerts are byte for byte as before"
    assert all(wire.dropped(wire.decode(v)) is None for _, v in other.alerts)
