"""Where the benchmarks find Falco's rules files: shared/ beside the repository, as in the tests."""

from __future__ import annotations

import os
from pathlib import Path

FALCO_RULES_DIR = Path(
    os.environ.get("PEREGRINE_FALCO_RULES", Path(__file__).resolve().parents[2] / "shared" / "falco-rules")
)
# What the budgets are stated for: Falco's stable and incubating files, in load order.
STABLE_AND_INCUBATING = (
    FALCO_RULES_DIR / "falco_rules.yaml",
    FALCO_RULES_DIR / "falco-incubating_rules.yaml",
)
