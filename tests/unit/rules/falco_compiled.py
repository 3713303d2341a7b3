"""Falco's three rules files compiled once per session and mode (the `falco_compiled` fixture,
conftest.py), for the tests that only run events through them: a compile of the three is seconds
of CPU, and test_gate, test_compiler_differential and test_compiler made seven of the same two.
Tests about compiling itself (warnings, live name tables, the reference's own names) still compile
their own."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from pathlib import Path

from rules.collect import load_files
from rules.loaded import LoadResult
from rules.ruleset import Ruleset, compile_rules

FALCO_FILES = ("falco_rules.yaml", "falco-incubating_rules.yaml", "falco-sandbox_rules.yaml")
# the API server's service, as k8s-meta would publish it; nothing changes it after the compile
API_SERVER_NAMES = {"10.96.0.1": "kubernetes.default.svc.cluster.local"}

FalcoCompiled = Callable[[bool], tuple[LoadResult, Ruleset]]


def falco_compiler(rules_dir: Path) -> FalcoCompiled:
    """``compiled(all_matches)``: Falco's three files loaded, and compiled in that mode with
    `API_SERVER_NAMES`; the same objects at every call."""

    @cache
    def compiled(all_matches: bool) -> tuple[LoadResult, Ruleset]:
        result = load_files([rules_dir / f for f in FALCO_FILES])
        return result, compile_rules(result, all_matches=all_matches, ip_names=API_SERVER_NAMES)

    return compiled
