"""Rules file text -> typed items, each with its file and line, read the way Falco's reader does.

Falco reads YAML with yaml-cpp, where every scalar is text until a key asks for a type. We do the
same: PyYAML only composes nodes (keeping their start marks); nothing is converted by YAML 1.1
rules, so ``items: [80, 0x10]`` stays the texts ``80`` and ``0x10``, and ``enabled: yes`` is decoded
by the ``enabled`` key as yaml-cpp's bool would decode it.

The checks and messages follow falco ``userspace/engine/rule_loader_reader.cpp`` (``read``,
``read_item``, ``decode_val``, ``decode_seq``, ``decode_overrides``, ``read_rule_exceptions``).
Unknown keys and unknown top-level items are warnings there, and are warnings here. The item
types are `rules.yamlitems`; this module is the reader.
Items are yielded one by one, because Falco hands each item to the collector as soon as it is
read: the first error in file order wins, whether it comes from reading or from collecting.

Limits: no JSON-schema validation pass (Falco's only produces warnings); duplicate keys in one
mapping are an error here (yaml-cpp would silently keep both).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal, TypeAlias

import yaml

from rules.errors import LoadError, Location
from rules.loaded import LoadWarning
from rules.priority import Priority
from rules.yamlitems import (
    EngineVersionItem,
    Entry,
    ExceptionInfo,
    Item,
    ListItem,
    MacroItem,
    PluginRequirement,
    PluginVersionsItem,
    RuleEnable,
    RuleItem,
    RuleUpdate,
)

_NULL_TAG = "tag:yaml.org,2002:null"

try:  # libyaml keeps marks too and composes the three Falco files several times faster
    _Base: type[yaml.SafeLoader] = yaml.CSafeLoader  # type: ignore[assignment]
except AttributeError:  # pragma: no cover - PyYAML built without libyaml
    _Base = yaml.SafeLoader


class _Loader(_Base):  # type: ignore[valid-type,misc]
    """Composes only: the one implicit type kept is null, which yaml-cpp also tells apart."""

    yaml_implicit_resolvers = {
        first: [(tag, rx) for tag, rx in resolvers if tag == _NULL_TAG]
        for first, resolvers in _Base.yaml_implicit_resolvers.items()
    }

# yaml-cpp's convert<bool> spellings (lower, Capitalised and UPPER forms of each).
_TRUE = {v for w in ("y", "yes", "true", "on") for v in (w, w.capitalize(), w.upper())}
_FALSE = {v for w in ("n", "no", "false", "off") for v in (w, w.capitalize(), w.upper())}

# falco rule_loader_reader.cpp: RGX_IDENTIFIER and RGX_BARESTR, used only to warn on odd names.
_MACRO_NAME = re.compile(r"[a-zA-Z]+[a-zA-Z0-9_]*")
_LIST_NAME = re.compile(r"[^()\"'\s=,]+")
_UINT = re.compile(r"\+?[0-9]+")
# libs sinsp_version: sscanf("%u.%u.%u") == 3, so anything may follow the third number.
SEMVER = re.compile(r"\s*\+?([0-9]+)\.\s*\+?([0-9]+)\.\s*\+?([0-9]+)")

WARNING_APPEND = (
    "'append' key is deprecated. Add an 'append' entry (e.g. 'condition: append') under 'override' instead."
)
WARNING_ENABLED = (
    "The standalone 'enabled' key usage is deprecated. The correct approach requires also a 'replace' "
    "entry under the 'override' key (i.e. 'enabled: replace')."
)
ERROR_OVERRIDE_APPEND = (
    "Keys 'override' and 'append: true' cannot be used together. Add an 'append' entry "
    "(e.g. 'condition: append') under 'override' instead."
)


# --- YAML nodes ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Scalar:
    text: str
    line: int
    null: bool = False  # `~`, `null` or nothing: yaml-cpp's Null, which is not a scalar


@dataclass(frozen=True, slots=True)
class Seq:
    items: tuple[Node, ...]
    line: int


@dataclass(frozen=True, slots=True)
class Mapping:
    entries: dict[str, Node]
    line: int


Node: TypeAlias = "Scalar | Seq | Mapping"


def _is_scalar(node: Node | None) -> bool:
    return isinstance(node, Scalar) and not node.null


def _convert(node: yaml.Node, file: str) -> Node:
    line = node.start_mark.line + 1
    if isinstance(node, yaml.ScalarNode):
        if node.tag == _NULL_TAG:
            return Scalar("", line, null=True)
        return Scalar(str(node.value), line)
    if isinstance(node, yaml.SequenceNode):
        return Seq(tuple(_convert(child, file) for child in node.value), line)
    assert isinstance(node, yaml.MappingNode)
    entries: dict[str, Node] = {}
    for key_node, value_node in node.value:
        if not isinstance(key_node, yaml.ScalarNode):
            raise LoadError("mapping keys must be scalars", Location(file, key_node.start_mark.line + 1))
        key = str(key_node.value)
        if key in entries:
            raise LoadError(f"duplicate key '{key}'", Location(file, key_node.start_mark.line + 1))
        entries[key] = _convert(value_node, file)
    return Mapping(entries, line)


_RULE_APPENDABLE = ("condition", "output", "desc", "tags", "exceptions")
_RULE_REPLACEABLE = (
    "condition", "output", "desc", "priority", "capture", "capture_duration", "tags", "exceptions",
    "enabled", "warn_evttypes", "skip-if-unknown-filter",
)  # fmt: skip
_RULE_KEYS = frozenset(
    ("rule", "source", "override", "append") + _RULE_REPLACEABLE
)
_LIST_KEYS = frozenset(("list", "items", "append", "override"))
_MACRO_KEYS = frozenset(("macro", "condition", "append", "override"))


# --- decoding one item --------------------------------------------------------------------------


@dataclass(slots=True)
class _Reader:
    """Decodes the items of one file; `warnings` collects what Falco would warn about."""

    file: str
    warnings: list[LoadWarning] = field(default_factory=list)

    def warn(self, code: str, message: str, loc: Location) -> None:
        self.warnings.append(LoadWarning(code, message, loc))

    # decode_val / decode_optional_val / decode_optional_empty_val
    def text(self, item: Mapping, key: str, loc: Location, *, optional: bool = False,
             can_be_empty: bool = False) -> str | None:  # fmt: skip
        val = item.entries.get(key)
        if val is None:
            if optional:
                return None
            raise LoadError(f"Item has no mapping for key '{key}'", loc)
        vloc = _at(loc, val.line)
        if isinstance(val, Scalar) and val.null:
            if can_be_empty:
                return ""
            raise LoadError(f"Mapping for key '{key}' is empty", vloc)
        if not isinstance(val, Scalar):
            raise LoadError(f"Value for key '{key}' is not a scalar value", vloc)
        if not val.text and not can_be_empty:
            raise LoadError(f"Value for key '{key}' must be non-empty", vloc)
        return val.text

    def required(self, item: Mapping, key: str, loc: Location) -> str:
        value = self.text(item, key, loc)
        assert value is not None
        return value

    def boolean(self, item: Mapping, key: str, loc: Location, *, optional: bool = True) -> bool | None:
        text = self.text(item, key, loc, optional=optional)
        if text is None:
            return None
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise LoadError(f"Value for key '{key}' is not a boolean: '{text}'", self._vloc(item, key, loc))

    def uint(self, item: Mapping, key: str, loc: Location, *, optional: bool = True) -> int | None:
        text = self.text(item, key, loc, optional=optional)
        if text is None:
            return None
        if not _UINT.fullmatch(text) or int(text) >= 2**32:
            raise LoadError(
                f"Value for key '{key}' is not an unsigned integer: '{text}'", self._vloc(item, key, loc)
            )
        return int(text)

    def priority(self, item: Mapping, loc: Location) -> Priority:
        text = self.required(item, "priority", loc)
        try:
            # falco_common::parse_priority: exact case-insensitive names, no trimming
            if text != text.strip():
                raise ValueError(text)
            return Priority.parse(text)
        except ValueError:
            names = ", ".join(p.name.lower() for p in Priority)
            message = f"Invalid priority '{text}' (expected one of {names}, or info)"
            raise LoadError(message, self._vloc(item, "priority", loc)) from None

    def strings(self, item: Mapping, key: str, loc: Location) -> tuple[str, ...]:
        """decode_seq: a sequence of scalars."""
        val = item.entries.get(key)
        if val is None:
            raise LoadError(f"Item has no mapping for key '{key}'", loc)
        vloc = _at(loc, val.line)
        if not isinstance(val, Seq):
            raise LoadError(f"Value for key '{key}' is not a sequence", vloc)
        out = []
        for v in val.items:
            if not isinstance(v, Scalar) or v.null:
                raise LoadError(f"A value in '{key}' is not a scalar", _at(loc, v.line))
            out.append(v.text)
        return tuple(out)

    def tags(self, item: Mapping, loc: Location) -> frozenset[str]:
        return frozenset(self.strings(item, "tags", loc)) if "tags" in item.entries else frozenset()

    def _vloc(self, item: Mapping, key: str, loc: Location) -> Location:
        node = item.entries.get(key)
        return Location(loc.file, node.line if node is not None else loc.line, loc.item_kind, loc.item_name)

    def overrides(
        self, item: Mapping, loc: Location, appendable: tuple[str, ...], replaceable: tuple[str, ...]
    ) -> tuple[set[str], set[str]]:
        """decode_overrides: the keys to append and the keys to replace."""
        val = item.entries.get("override")
        append: set[str] = set()
        replace: set[str] = set()
        if val is None:
            return append, replace
        if not isinstance(val, Mapping):
            raise LoadError(
                "Value for key 'override' must be a mapping of keys to 'append' or 'replace'",
                _at(loc, val.line),
            )
        for key, op_node in val.entries.items():
            kloc = _at(loc, op_node.line)
            op = op_node.text if _is_scalar(op_node) else ""  # type: ignore[union-attr]
            if op == "append":
                if key not in appendable:
                    raise LoadError(f"Key '{key}' cannot be appended to, use 'replace' instead", kloc)
                append.add(key)
            elif op == "replace":
                if key not in replaceable:
                    raise LoadError(f"Key '{key}' cannot be replaced", kloc)
                replace.add(key)
            else:
                allowed = " ".join(
                    w for w, ok in (("append", key in appendable), ("replace", key in replaceable)) if ok
                )
                raise LoadError(
                    f"Invalid override operation for key '{key}': '{op}'. Allowed values are: {allowed}", kloc
                )
        return append, replace

    def unknown_keys(self, item: Mapping, expected: frozenset[str], loc: Location) -> None:
        for key in item.entries:
            if key not in expected:
                self.warn("LOAD_UNKNOWN_KEY", f"Unknown key '{key}'. The key will be ignored.", loc)

    # --- exceptions (read_rule_exceptions) ---

    def entry(self, node: Node | None, key: str, loc: Location) -> Entry:
        if isinstance(node, Scalar) and not node.null:
            if not node.text:
                raise LoadError(f"Value for '{key}' must be non-empty", _at(loc, node.line))
            return Entry(item=node.text)
        if isinstance(node, Seq):
            return Entry(items=tuple(self.entry(v, key, loc) for v in node.items), is_list=True)
        return Entry()

    def exceptions(self, item: Mapping, loc: Location, *, append: bool) -> tuple[ExceptionInfo, ...]:
        exs = item.entries.get("exceptions")
        if exs is None or (isinstance(exs, Scalar) and exs.null):
            return ()
        if not isinstance(exs, Seq):
            raise LoadError("Rule exceptions must be a sequence", _at(loc, exs.line))
        out: list[ExceptionInfo] = []
        for ex in exs.items:
            tmp = Location(loc.file, ex.line, "exception", None)
            if not isinstance(ex, Mapping):
                raise LoadError(f"Rule exception must be a mapping (in rule '{loc.item_name}')", tmp)
            name = self.required(ex, "name", tmp)
            ex_loc = Location(loc.file, ex.line, "exception", name)
            if any(prev.name == name for prev in out):
                self.warn(
                    "LOAD_EXCEPTION_NAME_NOT_UNIQUE",
                    f"Multiple definitions of exception '{name}' in the same rule",
                    ex_loc,
                )
            # fields may be left out only when appending values to an existing exception
            if "fields" not in ex.entries and not append:
                raise LoadError(f"Item has no mapping for key 'fields' (in rule '{loc.item_name}')", ex_loc)
            fields = self.entry(ex.entries.get("fields"), "fields", ex_loc)
            comps = self.entry(ex.entries.get("comps"), "comps", ex_loc)
            values: list[Entry] = []
            vals = ex.entries.get("values")
            if vals is not None:
                if not isinstance(vals, Seq):
                    raise LoadError("Rule exception values must be a sequence", _at(ex_loc, vals.line))
                values = [self.entry(v, "values", ex_loc) for v in vals.items]
            elif append:
                self.warn("LOAD_APPEND_NO_VALUES", "Overriding/appending exception with no values", ex_loc)
            out.append(ExceptionInfo(name, fields, comps, tuple(values), ex_loc))
        return tuple(out)

    # --- the item kinds (read_item) ---

    def item(self, node: Node) -> Iterator[Item]:
        if not isinstance(node, Mapping):
            raise LoadError(
                "Unexpected element type. Each element should be a yaml associative array.",
                Location(self.file, node.line),
            )
        keys = node.entries
        if "required_engine_version" in keys:
            yield self.engine_version(node)
        elif "required_plugin_versions" in keys:
            yield from self.plugin_versions(node)
        elif "list" in keys:
            yield self.list_item(node)
        elif "macro" in keys:
            yield self.macro_item(node)
        elif "rule" in keys:
            yield from self.rule_items(node)
        else:
            self.warn("LOAD_UNKNOWN_ITEM", "Unknown top level item", Location(self.file, node.line))

    def engine_version(self, node: Mapping) -> EngineVersionItem:
        loc = Location(self.file, node.line, "required_engine_version")
        text = self.required(node, "required_engine_version", loc)
        if _UINT.fullmatch(text):
            version = (0, int(text), 0)  # the legacy form N means 0.N.<engine patch>; ours is 0
        else:
            m = SEMVER.match(text)
            if m is None:
                raise LoadError(
                    f"Unable to parse engine version '{text}' as a semver string. "
                    'Expected "x.y.z" semver format.',
                    loc,
                )
            version = (int(m[1]), int(m[2]), int(m[3]))
        self.unknown_keys(node, frozenset(("required_engine_version",)), loc)
        return EngineVersionItem(version, loc)

    def plugin_versions(self, node: Mapping) -> Iterator[PluginVersionsItem]:
        reqs = node.entries["required_plugin_versions"]
        loc = Location(self.file, reqs.line, "required_plugin_versions")
        if not isinstance(reqs, Seq):
            raise LoadError("Value of required_plugin_versions must be a sequence", loc)
        for plugin in reqs.items:
            tmp = Location(self.file, plugin.line, "required_plugin_versions")
            if not isinstance(plugin, Mapping):
                raise LoadError("Plugin version must be a mapping", tmp)
            name = self.required(plugin, "name", tmp)
            ploc = Location(self.file, plugin.line, "required_plugin_versions", name)
            alternatives = [PluginRequirement(name, self.required(plugin, "version", ploc))]
            alts = plugin.entries.get("alternatives")
            if alts is not None:
                if not isinstance(alts, Seq):
                    raise LoadError("Value of plugin version alternatives must be a sequence", ploc)
                for alt in alts.items:
                    aloc = Location(self.file, alt.line, "required_plugin_versions", name)
                    if not isinstance(alt, Mapping):
                        raise LoadError("Plugin version alternative must be a mapping", aloc)
                    alt_name = self.required(alt, "name", aloc)
                    alternatives.append(PluginRequirement(alt_name, self.required(alt, "version", aloc)))
            yield PluginVersionsItem(tuple(alternatives), ploc)
        item_loc = Location(self.file, node.line, "required_plugin_versions")
        self.unknown_keys(node, frozenset(("required_plugin_versions",)), item_loc)

    def list_item(self, node: Mapping) -> ListItem:
        name = self.required(node, "list", Location(self.file, node.line, "list"))
        loc = Location(self.file, node.line, "list", name)
        if not _LIST_NAME.fullmatch(name):
            self.warn(
                "LOAD_INVALID_LIST_NAME",
                "List has an invalid name. List names should match a regular expression: "
                "([^()\"'[:space:]=,]+)",
                loc,
            )
        items = self.strings(node, "items", loc)
        append = bool(self.boolean(node, "append", loc))
        if append:
            self.warn("LOAD_DEPRECATED_ITEM", WARNING_APPEND, loc)
        add, replace = self.overrides(node, loc, ("items",), ("items",))
        if append and (add or replace):
            raise LoadError(ERROR_OVERRIDE_APPEND, loc)
        self.unknown_keys(node, _LIST_KEYS, loc)
        return ListItem(name, items, append or "items" in add, loc)

    def macro_item(self, node: Mapping) -> MacroItem:
        name = self.required(node, "macro", Location(self.file, node.line, "macro"))
        loc = Location(self.file, node.line, "macro", name)
        if not _MACRO_NAME.fullmatch(name):
            self.warn(
                "LOAD_INVALID_MACRO_NAME",
                "Macro has an invalid name. Macro names should match a regular expression: "
                "([a-zA-Z]+[a-zA-Z0-9_]*)",
                loc,
            )
        condition = self.required(node, "condition", loc)
        append = bool(self.boolean(node, "append", loc))
        if append:
            self.warn("LOAD_DEPRECATED_ITEM", WARNING_APPEND, loc)
        add, replace = self.overrides(node, loc, ("condition",), ("condition",))
        if append and (add or replace):
            raise LoadError(ERROR_OVERRIDE_APPEND, loc)
        self.unknown_keys(node, _MACRO_KEYS, loc)
        return MacroItem(name, condition, append or "condition" in add, loc)

    def rule_items(self, node: Mapping) -> Iterator[Item]:
        name = self.required(node, "rule", Location(self.file, node.line, "rule"))
        loc = Location(self.file, node.line, "rule", name)
        source = self.text(node, "source", loc, optional=True, can_be_empty=True) or ""
        has_append = bool(self.boolean(node, "append", loc))
        if has_append:
            self.warn("LOAD_DEPRECATED_ITEM", WARNING_APPEND, loc)
        add, replace = self.overrides(node, loc, _RULE_APPENDABLE, _RULE_REPLACEABLE)
        if has_append and (add or replace):
            raise LoadError(ERROR_OVERRIDE_APPEND, loc)
        keys = node.entries
        if add or replace:
            expected = {k for k in _RULE_REPLACEABLE if k in keys}
            for mode, chosen in (("append", add), ("replace", replace)):
                if chosen:
                    yield self.rule_update(node, loc, name, source, mode, chosen, expected)  # type: ignore[arg-type]
            for key in _RULE_REPLACEABLE:  # a key given without saying how to merge it
                if key in expected:
                    raise LoadError(
                        f"Unexpected key '{key}': no corresponding entry under 'override' is defined.",
                        self._vloc(node, key, loc),
                    )
        elif has_append:
            yield RuleUpdate(
                name,
                "append",
                source,
                loc,
                condition=self.text(node, "condition", loc, optional=True),
                exceptions=self.exceptions(node, loc, append=True) if "exceptions" in keys else None,
            )
        elif not any(k in keys for k in ("condition", "output", "desc", "priority")):
            enabled = self.boolean(node, "enabled", loc, optional=False)
            assert enabled is not None
            self.warn("LOAD_DEPRECATED_ITEM", WARNING_ENABLED, loc)
            yield RuleEnable(name, enabled, loc)
        else:
            yield self.rule_definition(node, loc, name)
        self.unknown_keys(node, _RULE_KEYS, loc)

    def rule_update(
        self,
        node: Mapping,
        loc: Location,
        name: str,
        source: str,
        mode: Literal["append", "replace"],
        chosen: set[str],
        expected: set[str],
    ) -> RuleUpdate:
        def wants(key: str) -> bool:
            if key not in chosen:
                return False
            if key not in expected:
                message = f"An {mode} override for '{key}' was specified but '{key}' is not defined"
                raise LoadError(message, loc)
            expected.discard(key)
            return True

        values: dict[str, object] = {}
        if wants("condition"):
            values["condition"] = self.required(node, "condition", loc)
        if wants("exceptions"):
            values["exceptions"] = self.exceptions(node, loc, append=mode == "append")
        for key in ("output", "desc"):
            if wants(key):
                values[key] = self.required(node, key, loc)
        if wants("tags"):
            values["tags"] = self.tags(node, loc)
        if wants("priority"):
            values["priority"] = self.priority(node, loc)
        if wants("capture"):
            values["capture"] = self.boolean(node, "capture", loc, optional=False)
        if wants("capture_duration"):
            values["capture_duration"] = self.uint(node, "capture_duration", loc, optional=False)
        if wants("enabled"):
            values["enabled"] = self.boolean(node, "enabled", loc, optional=False)
        if wants("warn_evttypes"):
            values["warn_evttypes"] = self.boolean(node, "warn_evttypes", loc, optional=False)
        if wants("skip-if-unknown-filter"):
            skip = self.boolean(node, "skip-if-unknown-filter", loc, optional=False)
            values["skip_if_unknown_filter"] = skip
        # the source only takes part when the condition does (as in Falco's reader)
        return RuleUpdate(name, mode, source if "condition" in values else "", loc, **values)  # type: ignore[arg-type]

    def rule_definition(self, node: Mapping, loc: Location, name: str) -> RuleItem:
        condition = self.required(node, "condition", loc)
        output = self.required(node, "output", loc).strip(" \t\n\r\f\v")
        desc = self.required(node, "desc", loc)
        priority = self.priority(node, loc)
        source = self.text(node, "source", loc, optional=True) or "syscall"
        enabled = self.boolean(node, "enabled", loc)
        capture = self.boolean(node, "capture", loc)
        capture_duration = self.uint(node, "capture_duration", loc)
        warn_evttypes = self.boolean(node, "warn_evttypes", loc)
        skip = self.boolean(node, "skip-if-unknown-filter", loc)
        return RuleItem(
            name=name,
            condition=condition,
            output=output,
            desc=desc,
            priority=priority,
            source=source,
            enabled=True if enabled is None else enabled,
            tags=self.tags(node, loc),
            exceptions=self.exceptions(node, loc, append=False),
            warn_evttypes=True if warn_evttypes is None else warn_evttypes,
            skip_if_unknown_filter=bool(skip),
            capture=bool(capture),
            capture_duration=capture_duration or 0,
            location=loc,
        )


def _at(loc: Location, line: int) -> Location:
    """The same item, another line (that of one of its values)."""
    return Location(loc.file, line, loc.item_kind, loc.item_name)


def read_items(text: str, file: str, warnings: list[LoadWarning]) -> Iterator[Item]:
    """Yield the items of one rules file in order; append warnings as they arise.

    Raises LoadError (with file and line) for YAML syntax errors and malformed items.
    """
    try:
        docs = list(yaml.compose_all(text, Loader=_Loader))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = exc.problem or exc.context or "invalid YAML"
        raise LoadError(f"invalid YAML: {problem}", Location(file, line)) from None
    except yaml.YAMLError as exc:
        raise LoadError(f"invalid YAML: {exc}", Location(file)) from None
    reader = _Reader(file, warnings)
    for doc in docs:
        if doc is None:
            continue
        root = _convert(doc, file)
        if isinstance(root, Scalar):
            if root.null:
                continue
            raise LoadError("Rules content is not yaml", Location(file, root.line))
        if not isinstance(root, Seq):
            raise LoadError("Rules content is not yaml array of objects", Location(file, root.line))
        for node in root.items:
            if isinstance(node, Scalar) and node.null:
                continue
            yield from reader.item(node)
