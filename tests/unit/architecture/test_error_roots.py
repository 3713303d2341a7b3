"""Every package raises errors from one root, so a caller can catch a whole stage with one clause.

Imports every module of each package and checks that each exception class defined there derives
from its package's root (`bus/` and `alerts/` are checked with their own packages). A package
without a root (None) must define no exception classes: its first error needs a root first.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from types import ModuleType

import pytest

from alerts.errors import AlertError
from backtest.errors import BacktestError
from bus.errors import BusError
from collectors.errors import CollectorError
from devtools.errors import DevtoolsError
from enrichers.errors import EnricherError
from rules.errors import RulesError
from sinks.errors import SinkError
from streams.errors import WorkerError

ROOTS: dict[str, type[Exception] | None] = {
    "rules": RulesError,
    "bus": BusError,
    "alerts": AlertError,
    "backtest": BacktestError,
    "collectors": CollectorError,
    "enrichers": EnricherError,
    "streams": WorkerError,
    "sinks": SinkError,
    "devtools": DevtoolsError,
    "telemetry": None,
    "cli": None,
}

# Deliberately outside the error trees.
NOT_ERRORS = {
    # a control-flow signal: shutdown during a retry wait unwinds the sink runner's batch loop
    "sinks.delivery.Stopped",
}


def modules(package: str) -> list[ModuleType]:
    root = importlib.import_module(package)
    names = [info.name for info in pkgutil.walk_packages(root.__path__, f"{package}.")]
    return [root, *(importlib.import_module(name) for name in names)]


def exception_classes(module: ModuleType) -> list[type[BaseException]]:
    return [
        cls for _, cls in inspect.getmembers(module, inspect.isclass)
        if issubclass(cls, BaseException) and cls.__module__ == module.__name__
    ]


@pytest.mark.parametrize("package", sorted(ROOTS))
def test_every_error_of_a_package_derives_from_its_root(package: str) -> None:
    root = ROOTS[package]
    found = [cls for module in modules(package) for cls in exception_classes(module)]
    names = {cls: f"{cls.__module__}.{cls.__qualname__}" for cls in found}
    strays = [
        name for cls, name in names.items()
        if (root is None or not issubclass(cls, root)) and name not in NOT_ERRORS
    ]
    wanted = "a root of their own" if root is None else root.__name__
    assert not strays, f"{package}: derive these from {wanted} (or justify them in NOT_ERRORS): {strays}"
    assert root is None or root in found, f"{root} is not defined in {package}"


def test_the_allow_list_names_classes_that_exist() -> None:
    for dotted in NOT_ERRORS:
        module, _, name = dotted.rpartition(".")
        assert isinstance(getattr(importlib.import_module(module), name), type), dotted


def test_every_package_of_the_import_table_has_a_root_entry() -> None:
    from test_import_rules import PACKAGES

    assert set(PACKAGES) <= set(ROOTS), f"add to ROOTS: {set(PACKAGES) - set(ROOTS)}"
