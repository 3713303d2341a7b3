"""`peregrine worker --rule-matching first|all` (Falco's ``rule_matching``) on the recorded attack
scenario gives exactly the alerts of `peregrine rules test` on the same capture, without and with
``--all-matches``: the same (rule, uuid) pairs, where the uuid names the event and the rule."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from worker_harness import REPO, WorkerProcs, consume_until, replay

pytestmark = pytest.mark.kafka

CAPTURE = REPO / "devtools" / "data" / "attack_scenario.cap"


@pytest.fixture
def rule_files(falco_rules_dir: Path) -> list[Path]:
    return [falco_rules_dir / "falco_rules.yaml", falco_rules_dir / "falco-incubating_rules.yaml",
            REPO / "rules" / "data" / "peregrine_rules.yaml"]


def rules_test(rule_files: list[Path], *, all_matches: bool) -> Counter[tuple[str, str]]:
    """(rule, uuid) of each alert `peregrine rules test` prints for the capture."""
    argv = [sys.executable, "-m", "cli.main", "rules", "test", "--events", str(CAPTURE),
            "--rules", *(str(f) for f in rule_files)]
    if all_matches:
        argv.append("--all-matches")
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    return Counter((d["rule"], d["uuid"]) for d in map(json.loads, done.stdout.splitlines()))


@pytest.mark.parametrize("mode", ["first", "all"])
def test_worker_alerts_equal_rules_test_on_the_same_capture(
    workers: WorkerProcs, rule_files: list[Path], mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    setup = workers.setup
    replay(setup, CAPTURE)
    monkeypatch.setenv("PEREGRINE_RULE_MATCHING", mode)  # the worker's environment, as the chart sets it
    # started before the oracle runs: both compile Falco's rules, and neither needs the other's
    workers.start(rule_files, standin=False)

    want = rules_test(rule_files, all_matches=mode == "all")
    if mode == "all":  # the capture has events more than one rule matches, or this proves nothing
        assert sum(want.values()) > sum(rules_test(rule_files, all_matches=False).values())
    assert max(want.values()) == 1, "uuids are unique per (event, rule)"
    n = sum(want.values())
    alerts = consume_until(setup.bootstrap, setup.topic("alerts"), lambda r: len(r) >= n, 120, settle=3,
                           on_timeout=workers.describe)
    got = Counter((d["rule"], d["uuid"]) for d in (a.json() for a in alerts))
    assert got == want
