"""`peregrine demo` against the session's broker: the attack scenario's five alerts on stdout, the
same ones as Falco JSON in ``--out``, and nothing left running."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from e2e_pipeline import REPO
from test_e2e_replay_attack import EXPECTED_RULES

pytestmark = [pytest.mark.e2e, pytest.mark.kafka]


def test_demo_prints_the_attack_scenarios_alerts_and_keeps_them(
    kafka_bootstrap: str, falco_rules_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "alerts.jsonl"
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", "demo", "--bootstrap", kafka_bootstrap, "--out", str(out),
         "--quiet", "3"],
        capture_output=True, text=True, cwd=REPO, timeout=400,
        env={"PEREGRINE_FALCO_RULES": str(falco_rules_dir), "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    docs = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted((d["rule"], d["priority"]) for d in docs) == sorted(EXPECTED_RULES.elements())
    printed = done.stdout.splitlines()
    assert printed == [f"{d['output']}  [{d['rule']}]" for d in docs]
    assert all("k8s_pod_name=mysql-db-7d9f8b6c5d-x2x4k k8s_ns_name=default" in d["output"] for d in docs)
    assert "5 alert(s); everything stopped" in done.stderr
