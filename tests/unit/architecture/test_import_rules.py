"""The package table of DESIGN.md, enforced: data flows one way and `rules` stays a pure library.

Each package may import only the Peregrine packages listed for it, and the heavy third-party
clients only where named, so that e.g. `peregrine rules` never loads Faust, bcc or Kafka clients.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
# The rooms, in the order data flows through them (probe -> batch -> Kafka -> decode -> enrich ->
# rules -> alert -> sink), then the doors every room shares and the tools that wire them.
PACKAGES = (
    "rules", "bus", "telemetry", "collectors", "enrichers", "alerts", "streams", "sinks", "cli", "devtools",
    "backtest",
)

# Peregrine modules each package may import (prefix match); its own package is always allowed.
ALLOWED_INTERNAL: dict[str, tuple[str, ...]] = {
    "rules": (),
    "bus": (),
    "telemetry": (),
    # a role answers its probes through telemetry.health (the Health that cli.main hands it)
    "collectors": ("rules", "bus", "telemetry.health"),
    "enrichers": ("rules.record", "rules.errors", "bus", "telemetry.health"),
    "alerts": ("rules",),
    "streams": ("rules", "collectors.wire", "collectors.stats", "enrichers", "bus", "alerts",
                "telemetry.health"),
    "sinks": ("bus", "alerts", "rules.priority", "telemetry.health"),
    # the CLI only routes: every role module is imported by name, at run time
    "cli": ("telemetry",),
    "devtools": ("rules", "collectors.wire", "enrichers.records", "bus", "alerts", "devtools"),
    # reads the bus as the worker does (decode, enrich, evaluate), writes nothing
    "backtest": ("rules", "collectors.wire", "enrichers.records", "enrichers.table", "enrichers.topic",
                 "enrichers.errors", "bus"),
}
# Third-party distributions each package may import at all.
ALLOWED_THIRD_PARTY: dict[str, frozenset[str]] = {
    "rules": frozenset({"yaml", "re2"}),  # re2: regex is RE2 itself, as in Falco
    "bus": frozenset({"confluent_kafka", "faust"}),  # each client library's settings (bus.faust_auth)
    "telemetry": frozenset({"opentelemetry", "prometheus_client"}),
    "collectors": frozenset({"bcc", "confluent_kafka", "msgpack", "opentelemetry"}),
    "enrichers": frozenset({"kubernetes", "confluent_kafka", "msgpack", "opentelemetry", "urllib3"}),
    "alerts": frozenset(),
    # cramjam: aiokafka's own codec library, called with a bound (streams.fetchbound)
    "streams": frozenset({"faust", "mode", "aiokafka", "cramjam", "msgpack", "opentelemetry",
                          "prometheus_client", "aiohttp", "yaml", "yarl"}),
    "sinks": frozenset({"confluent_kafka", "opentelemetry", "yaml"}),
    "cli": frozenset(),
    "devtools": frozenset({"confluent_kafka"}),
    "backtest": frozenset({"confluent_kafka", "msgpack"}),
}
# Edges of the graph that are command-line entry points rather than library code. `peregrine rules
# test --events FILE` reads capture files, whose format the collector owns; the import happens
# inside that subcommand only, so importing `rules` still loads neither (test_purity checks).
CLI_EXCEPTIONS: dict[str, tuple[str, ...]] = {
    "rules/cli.py": ("collectors.capture", "collectors.errors", "collectors.wire", "msgpack"),
}
STDLIB = frozenset(sys.stdlib_module_names) | {"__future__"}


def _modules() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (REPO / pkg).rglob("*.py"))


def test_every_top_level_package_is_in_the_table() -> None:
    on_disk = {p.parent.name for p in REPO.glob("*/__init__.py")} - {"benchmarks", "tests"}
    assert on_disk <= set(PACKAGES), f"packages missing from the import table: {on_disk - set(PACKAGES)}"


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # `from collectors import stats` imports collectors.stats: judge the full name
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(REPO)))
def test_module_imports_follow_the_package_table(path: Path) -> None:
    package = path.relative_to(REPO).parts[0]
    excepted = CLI_EXCEPTIONS.get(str(path.relative_to(REPO)), ())
    problems = []
    for line, name in _imports(path):
        top = name.split(".")[0]
        if top in STDLIB or any(name == e or name.startswith(e + ".") for e in excepted):
            continue
        if top in PACKAGES:
            if top == package:
                continue
            allowed = ALLOWED_INTERNAL[package]
            if not any(name == a or name.startswith(a + ".") for a in allowed):
                problems.append(f"line {line}: {package} may not import {name}")
        elif top not in ALLOWED_THIRD_PARTY[package]:
            problems.append(f"line {line}: {package} may not import third-party {name}")
    assert not problems, f"{path.relative_to(REPO)}:\n" + "\n".join(problems)
