"""The rules tests' shared compile of Falco's files (falco_compiled.py says why)."""

from __future__ import annotations

from pathlib import Path

import pytest
from falco_compiled import FalcoCompiled, falco_compiler


@pytest.fixture(scope="session")
def falco_compiled(falco_rules_dir: Path) -> FalcoCompiled:
    return falco_compiler(falco_rules_dir)
