"""The running rule set, and replacing it without a restart.

``kill -HUP <worker>`` (in Kubernetes: after the rules ConfigMap changed, ``kubectl exec ... kill
-HUP 1`` or a reloader sidecar) makes the worker load its rules files again, from the same paths.
The new set is built completely (parsed, validated, compiled) before it replaces the running one,
in one reference assignment between two batches; if loading fails for any reason the running set
stays and the error (file, line, what is wrong) is logged. Loading runs in a thread so the event
loop keeps heartbeating while a large rules file compiles.

The rule engine is passed in as a `RulesEngine` (load + build_alert, and optionally a per-rule
profiler for the cost metrics) so this module and the agents do not depend on how rules are
compiled; `falco_engine` is the real one (`rules.load`, whose `rules.Ruleset` is a `RuleSet`), and
the worker tests pass a one-rule stand-in.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

from rules.alert import Alert
from rules.interest import TypeInterest
from rules.record import Event
from streams.logsafe import shown
from streams.metrics import WorkerMetrics

if TYPE_CHECKING:
    from rules import CompiledRule
    from rules.profile import RuleProfiler

log = logging.getLogger("peregrine.worker.rules")

Rule = TypeVar("Rule")
Rule_co = TypeVar("Rule_co", covariant=True)


class RuleSet(Protocol[Rule_co]):
    """What the worker uses of a compiled rule set."""

    @property
    def gated(self) -> bool:
        """Whether `evaluate` runs the C batch gate (without it rules run slower)."""

    def gate_counts(self) -> tuple[int, int]:
        """(events given to `evaluate`, events the gate passed on) so far."""

    def evaluate(self, events: list[Event]) -> Sequence[tuple[Event, Rule_co]]:
        """(event, rule) per match: one per event, or every matching rule with ``all_matches``."""

    @property
    def interest(self) -> Mapping[str, TypeInterest]:
        """Per event type, what an event needs for some rule to match it (`rules.interest`)."""


class Loader(Protocol[Rule_co]):
    def __call__(
        self, paths: list[str], *, all_matches: bool, ip_names: dict[str, str] | None
    ) -> RuleSet[Rule_co]: ...


class Profile(Protocol):
    def __call__(self, paths: list[str], *, ip_names: dict[str, str] | None) -> RuleProfiler: ...


@dataclass(frozen=True, slots=True)
class RulesEngine(Generic[Rule]):
    load: Loader[Rule]
    build_alert: Callable[[Rule, Event], Alert]
    profile: Profile | None = None  # None: no per-rule cost metrics (streams.rulecost)


def falco_engine() -> RulesEngine[CompiledRule]:
    import rules
    from rules.alert import rule_alert

    return RulesEngine(load=rules.load, build_alert=rule_alert, profile=_falco_profile)


def _falco_profile(paths: list[str], *, ip_names: dict[str, str] | None) -> RuleProfiler:
    from rules.collect import load_files
    from rules.profile import RuleProfiler

    return RuleProfiler(load_files(paths), ip_names=ip_names)


class LiveRules(Generic[Rule]):
    """Holds the running rule set in `ruleset`; read it once per batch.

    `all_matches` is Falco's ``rule_matching: all``: every matching rule of an event alerts, not only
    the first; reloads keep it."""

    def __init__(
        self,
        engine: RulesEngine[Rule],
        paths: Sequence[Path],
        metrics: WorkerMetrics,
        ip_names: dict[str, str] | None = None,
        *,
        all_matches: bool = False,
    ) -> None:
        self.engine = engine
        self.paths = tuple(paths)
        self.ip_names = ip_names
        self.all_matches = all_matches
        self._metrics = metrics
        self._lock = asyncio.Lock()
        # run in the loader's thread after each successful reload (streams.rulecost rebuilds there)
        self.after_reload: list[Callable[[], None]] = []
        # run in the event loop as soon as a reload replaced the set; must not block (streams.control
        # hands the new interest to its publisher)
        self.swapped: list[Callable[[], None]] = []
        # At start a bad rules file is fatal (raised to the caller): there is no old set to keep.
        self.ruleset = self._load()
        self.generation = 1
        if not self.ruleset.gated:
            log.warning("the rule engine's C batch gate is not built (no C compiler?): rules run slower")

    def _load(self) -> RuleSet[Rule]:
        paths = [str(p) for p in self.paths]
        return self.engine.load(paths, all_matches=self.all_matches, ip_names=self.ip_names)

    async def reload(self) -> bool:
        """Load the files again; True when the new set replaced the running one."""
        async with self._lock:
            loop = asyncio.get_running_loop()
            try:
                new = await loop.run_in_executor(None, self._load)
            except Exception as exc:  # any failure must leave the running rules in place
                self._metrics.rules_reloads.add(1, {"outcome": "failed"})
                # the loader's message quotes the rules file: one line, bounded, like every log value
                error = shown(exc, 2000)
                log.error(
                    "rules reload failed, keeping the running rules (generation %d): %s",
                    self.generation,
                    error,
                    extra={"paths": [str(p) for p in self.paths], "error": error},
                )
                return False
            self.ruleset = new
            self.generation += 1
            for swapped in self.swapped:
                swapped()
            for hook in self.after_reload:
                await loop.run_in_executor(None, hook)
            self._metrics.rules_reloads.add(1, {"outcome": "ok"})
            log.info(
                "rules reloaded (generation %d) from %s",
                self.generation,
                ", ".join(str(p) for p in self.paths),
            )
            return True

    def install_sighup(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(self.reload()))
