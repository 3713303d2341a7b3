"""Fixtures of the sink unit tests: a realistic Falco alert (the DESIGN.md shell-in-container one)."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

SAMPLE = json.loads((Path(__file__).parent / "alert_sample.json").read_text())


@pytest.fixture
def alert_doc() -> Callable[..., dict[str, Any]]:
    """``alert_doc(rule=..., output_fields={...})``: the sample alert with fields replaced."""

    def make(**changes: Any) -> dict[str, Any]:
        doc = copy.deepcopy(SAMPLE)
        doc.update(changes)
        return doc

    return make
