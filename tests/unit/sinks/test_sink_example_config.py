"""The example the README points at stays a valid configuration."""

from __future__ import annotations

from pathlib import Path

from sinks.config import load_config

EXAMPLE = Path(__file__).resolve().parents[3] / "sinks" / "sinks.example.yaml"


def test_example_config_loads_without_secrets() -> None:
    config = load_config(EXAMPLE, {})
    assert [d.name for d in config.destinations] == ["terminal", "archive"]


def test_example_file_destinations_do_not_write_under_a_world_writable_directory() -> None:
    import os

    import yaml

    for d in yaml.safe_load(EXAMPLE.read_text())["destinations"]:
        if d["type"] == "file":
            parent = Path(d["path"]).parent
            if parent.is_absolute():
                assert not os.stat(parent).st_mode & 0o002, f"{d['name']}: {parent} is world-writable"
