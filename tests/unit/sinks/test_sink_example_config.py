"""The example the README points at stays a valid configuration."""

from __future__ import annotations

from pathlib import Path

from sinks.config import load_config

EXAMPLE = Path(__file__).resolve().parents[3] / "sinks" / "sinks.example.yaml"


def test_example_config_loads_without_secrets() -> None:
    config = load_config(EXAMPLE, {})
    assert [d.name for d in config.destinations] == ["terminal", "archive"]
