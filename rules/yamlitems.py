"""The items of a rules file, as `rules.yamlfile` reads them: each kind of top-level entry (list,
macro, rule and its append/override/enable forms, required engine and plugin versions) with its
decoded values and where it is in the file. `rules.collect` folds them into the loaded rules.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypeAlias

from rules.errors import Location
from rules.priority import Priority


@dataclass(frozen=True, slots=True)
class Entry:
    """An exception's `fields`, `comps` or one of its `values`: a string or a list of entries."""

    item: str = ""
    items: tuple[Entry, ...] = ()
    is_list: bool = False

    @property
    def is_valid(self) -> bool:
        return bool(self.items) if self.is_list else bool(self.item)


@dataclass(frozen=True, slots=True)
class ExceptionInfo:
    name: str
    fields: Entry
    comps: Entry
    values: tuple[Entry, ...]
    location: Location


@dataclass(frozen=True, slots=True)
class EngineVersionItem:
    version: tuple[int, int, int]
    location: Location


@dataclass(frozen=True, slots=True)
class PluginRequirement:
    name: str
    version: str


@dataclass(frozen=True, slots=True)
class PluginVersionsItem:
    """One entry of `required_plugin_versions`: the plugin or any of its alternatives will do."""

    alternatives: tuple[PluginRequirement, ...]
    location: Location


@dataclass(frozen=True, slots=True)
class ListItem:
    name: str
    items: tuple[str, ...]
    append: bool
    location: Location


@dataclass(frozen=True, slots=True)
class MacroItem:
    name: str
    condition: str
    append: bool
    location: Location


@dataclass(frozen=True, slots=True)
class RuleItem:
    """A full rule definition."""

    name: str
    condition: str
    output: str
    desc: str
    priority: Priority
    source: str
    enabled: bool
    tags: frozenset[str]
    exceptions: tuple[ExceptionInfo, ...]
    warn_evttypes: bool
    skip_if_unknown_filter: bool
    capture: bool
    capture_duration: int
    location: Location


@dataclass(frozen=True, slots=True)
class RuleUpdate:
    """`append: true`, or the append or the replace half of an `override` (in that order)."""

    name: str
    mode: Literal["append", "replace"]
    source: str
    location: Location
    condition: str | None = None
    output: str | None = None
    desc: str | None = None
    tags: frozenset[str] | None = None
    exceptions: tuple[ExceptionInfo, ...] | None = None
    priority: Priority | None = None
    enabled: bool | None = None
    warn_evttypes: bool | None = None
    skip_if_unknown_filter: bool | None = None
    capture: bool | None = None
    capture_duration: int | None = None

    def has_any_value(self) -> bool:
        return any(
            v is not None
            for v in (
                self.condition, self.output, self.desc, self.tags, self.exceptions, self.priority,
                self.enabled, self.warn_evttypes, self.skip_if_unknown_filter, self.capture,
                self.capture_duration,
            )
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class RuleEnable:
    """The deprecated standalone form `- rule: x` + `enabled: b`."""

    name: str
    enabled: bool
    location: Location


Item: TypeAlias = (
    "EngineVersionItem | PluginVersionsItem | ListItem | MacroItem | RuleItem | RuleUpdate | RuleEnable"
)
