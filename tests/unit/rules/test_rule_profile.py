"""Per-rule cost (`rules.profile`, `peregrine rules profile`): counts checked against the tree-walking
reference evaluator on the shipped attack capture, which shares no code with the compiled rules."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rules import reference
from rules.cli import main
from rules.collect import load_files
from rules.profile import RuleProfiler
from rules.record import EVENT_TYPES, Event

ROOT = Path(__file__).resolve().parents[3]
CAPTURE = ROOT / "devtools" / "data" / "attack_scenario.cap"
OURS = ROOT / "rules" / "data" / "peregrine_rules.yaml"
IP_NAMES = {"10.96.0.1": "kubernetes.default.svc.cluster.local"}


def _events() -> list[list[Event]]:
    from rules.cli import _capture_events

    return list(_capture_events(str(CAPTURE)))


def test_matches_and_event_counts_agree_with_the_reference_evaluator(falco_rules_dir: Path) -> None:
    result = load_files([falco_rules_dir / "falco_rules.yaml", OURS])
    batches = _events()
    profiler = RuleProfiler(result, ip_names=IP_NAMES)
    for batch in batches:
        profiler.feed(batch)
    costs = {row.rule: row for row in profiler.costs()}
    enabled = [rule for rule in result.rules if rule.enabled]
    assert set(costs) == {rule.name for rule in enabled}
    events = [ev for batch in batches for ev in batch]
    for rule in enabled:
        expected = sum(reference.evaluate(rule.condition, ev, ip_names=IP_NAMES) for ev in events)
        row = costs[rule.name]
        assert row.matches == expected, rule.name
        assert row.matches <= row.evaluations <= row.events <= len(events), rule.name
    assert sum(row.matches for row in costs.values()) > 0  # the capture is an attack: something fires


def test_a_rule_is_fed_only_its_event_types(tmp_path: Path) -> None:
    path = tmp_path / "one.yaml"
    condition = "evt.type = execve and proc.name = bash"
    path.write_text(f"- rule: r\n  desc: d\n  condition: {condition}\n  output: o\n  priority: INFO\n")
    profiler = RuleProfiler(load_files([path]))
    batches = _events()
    for batch in batches:
        profiler.feed(batch)
    (row,) = profiler.costs()
    execs = sum(EVENT_TYPES[ev[0]] == "execve" for batch in batches for ev in batch)
    assert row.events == execs
    assert row.evaluations <= row.events


def test_costs_are_sorted_most_expensive_first(falco_rules_dir: Path) -> None:
    profiler = RuleProfiler(load_files([falco_rules_dir / "falco_rules.yaml"]))
    for batch in _events():
        profiler.feed(batch)
    cpu = [row.cpu_ns for row in profiler.costs()]
    assert cpu == sorted(cpu, reverse=True)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_json_rows_and_repeat(capsys: pytest.CaptureFixture[str]) -> None:
    api_server = "10.96.0.1=kubernetes.default.svc.cluster.local"
    args = ("profile", "--events", str(CAPTURE), "--ip-name", api_server)
    code, out, err = run(capsys, *args, "--json", "--repeat", "1")
    assert code == 0, err
    once = {row["rule"]: row for row in map(json.loads, out.splitlines())}
    code, out, _ = run(capsys, *args, "--json", "--repeat", "2")
    twice = {row["rule"]: row for row in map(json.loads, out.splitlines())}
    assert set(once) == set(twice) and once
    for name, row in once.items():
        assert twice[name]["events"] == 2 * row["events"]
        assert twice[name]["matches"] == 2 * row["matches"]
    assert once["Peregrine: Terminal Shell in Container"]["matches"] > 0
    assert "events x 1" in err


def test_cli_table_top_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "profile", "--events", str(CAPTURE), "--top", "2")
    lines = out.splitlines()
    assert code == 0 and lines[0].split()[:2] == ["cpu", "ms"] and len(lines) == 3
    code, _, err = run(capsys, "profile", "--events", str(CAPTURE), "--repeat", "0")
    assert code == 2 and "positive" in err
    bad = tmp_path / "bad.cap"
    bad.write_bytes(b"not a capture")
    code, _, err = run(capsys, "profile", "--events", str(bad))
    assert code == 1 and "bad capture" in err

