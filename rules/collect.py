"""Rules files, in order, -> rules with self-contained conditions (Falco's collector and compiler).

Collecting follows falco ``userspace/engine/rule_loader_collector.cpp``: one counter numbers every
definition, append and override; redefining a list, macro or rule replaces it but keeps the
position of its first definition (rule order is evaluation order) and moves its "visibility" to
the new definition; appends need an earlier item of that name. Exceptions become condition text
as ``build_rule_exception_infos`` in ``rule_loader_compiler.cpp`` builds it.

Resolving follows ``rule_loader_compiler.cpp``: lists are expanded inside lists, then substituted
as text into each macro and rule condition (`rules.resolve`), conditions are parsed, macros are
inlined (a macro sees the macros first defined before its last definition; a rule sees all).
As Falco compiles after each ``load_rules`` call, everything loaded so far is resolved after each
file, so a rule that needs a macro from a later file fails on its own file.

Peregrine implements engine version 0.57.0 (what falco-rules 5.x, incubating 6.x and sandbox 6.x
require) and evaluates the ``syscall`` source only; the ``container`` and ``k8smeta`` plugin
requirements are met natively, any other plugin is an error.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from rules.ast import Expr, Pos
from rules.errors import LoadError, Location, ParseError
from rules.loaded import FileCounts, LoadedRule, LoadResult, LoadWarning
from rules.resolve import (
    ListDef,
    MacroError,
    expand_lists,
    inline_macros,
    join_items,
    original_offset,
    quote_item,
    relocate,
    substitute_lists,
)
from rules.yamlfile import SEMVER, read_items
from rules.yamlitems import (
    EngineVersionItem,
    Entry,
    ExceptionInfo,
    Item,
    ListItem,
    MacroItem,
    PluginVersionsItem,
    RuleEnable,
    RuleItem,
    RuleUpdate,
)

ENGINE_VERSION = (0, 57, 0)
NATIVE_PLUGINS = ("container", "k8smeta")
KNOWN_SOURCES = frozenset({"syscall"})
# Falco warns (LOAD_NO_EVTTYPE) above 100 event CODES; every event name has an enter and an exit
# code (some have older versions too), so more than 50 names is at least as many codes.
MAX_EVTTYPE_NAMES = 50

ERROR_NO_PREVIOUS_MACRO = (
    "Macro uses 'append' or 'override.condition: append' but no macro by that name already exists"
)
ERROR_NO_PREVIOUS_LIST = (
    "List uses 'append' or 'override.items: append' but no list by that name already exists"
)
ERROR_NO_PREVIOUS_RULE_APPEND = (
    "Rule uses 'append' or 'override.<key>: append' but no rule by that name already exists"
)
ERROR_NO_PREVIOUS_RULE_REPLACE = (
    "An 'override.<key>: replace' to a rule was requested but no rule by that name already exists"
)

# libs filter/parser.cpp supported_operators(), and the string operators that take a modifier
_OPERATORS = frozenset(
    "exists <= < >= > == = != glob iglob contains icontains bcontains startswith bstartswith endswith "
    "regex intersects in pmatch".split()
)
_LIST_OPERATORS = frozenset(("intersects", "in", "pmatch"))
_MODIFIABLE = frozenset(
    "== = != glob iglob contains icontains bcontains startswith bstartswith endswith regex".split()
)
_MODIFIERS = frozenset(("oneof", "anyof", "allof"))


def _is_operator_with_modifier(op: str) -> bool:
    # libs str_to_cmpop_with_modifier splits at the FIRST space only
    base, space, mod = op.partition(" ")
    return bool(space) and base in _MODIFIABLE and mod in _MODIFIERS


# --- collected state ----------------------------------------------------------------------------


@dataclass(slots=True)
class _List:
    name: str
    items: list[str]
    index: int
    visibility: int
    location: Location


@dataclass(slots=True)
class _Macro:
    name: str
    condition: str
    index: int
    visibility: int
    location: Location


@dataclass(slots=True)
class _Rule:
    """A rule as loaded so far: its current definition, updated by appends and overrides."""

    item: RuleItem
    index: int
    visibility: int
    unknown_source: bool


@dataclass(slots=True)
class _Collector:
    """Everything loaded so far. Dicts keep first-definition order, which is index order."""

    lists: dict[str, _List] = field(default_factory=dict)
    macros: dict[str, _Macro] = field(default_factory=dict)
    rules: dict[str, _Rule] = field(default_factory=dict)
    next_index: int = 0
    warnings: list[LoadWarning] = field(default_factory=list)

    def take_index(self) -> int:
        self.next_index += 1
        return self.next_index - 1

    def add(self, item: Item) -> None:
        if isinstance(item, EngineVersionItem):
            _check_engine_version(item)
        elif isinstance(item, PluginVersionsItem):
            _check_plugins(item)
        elif isinstance(item, ListItem):
            self.add_list(item)
        elif isinstance(item, MacroItem):
            self.add_macro(item)
        elif isinstance(item, RuleItem):
            self.define_rule(item)
        elif isinstance(item, RuleUpdate):
            self.update_rule(item)
        else:
            self.enable_rule(item)

    def add_list(self, item: ListItem) -> None:
        prev = self.lists.get(item.name)
        if item.append:
            if prev is None:
                raise LoadError(ERROR_NO_PREVIOUS_LIST, item.location)
            prev.items.extend(item.items)
            prev.visibility = self.take_index()
            return
        at = self.take_index()
        index = at if prev is None else prev.index
        self.lists[item.name] = _List(item.name, list(item.items), index, at, item.location)

    def add_macro(self, item: MacroItem) -> None:
        prev = self.macros.get(item.name)
        if item.append:
            if prev is None:
                raise LoadError(ERROR_NO_PREVIOUS_MACRO, item.location)
            prev.condition += " " + item.condition
            prev.visibility = self.take_index()
            return
        at = self.take_index()
        index = at if prev is None else prev.index
        self.macros[item.name] = _Macro(item.name, item.condition, index, at, item.location)

    def previous_rule(self, name: str, source: str, location: Location) -> _Rule | None:
        prev = self.rules.get(name)
        if prev is not None and prev.item.source and source and prev.item.source != source:
            raise LoadError("Rule has been re-defined with a different source", location)
        return prev

    def define_rule(self, item: RuleItem) -> None:
        prev = self.previous_rule(item.name, item.source, item.location)
        unknown_source = item.source not in KNOWN_SOURCES
        if unknown_source:
            self.warnings.append(
                LoadWarning("LOAD_UNKNOWN_SOURCE", f"Unknown source {item.source}, skipping", item.location)
            )
        exceptions = []
        for ex in item.exceptions:
            if not ex.fields.is_valid:
                message = "Rule exception item must have fields property with a list of fields"
                raise LoadError(message, ex.location)
            exceptions.append(_validated_exception(ex))
        at = self.take_index()
        index = at if prev is None else prev.index
        self.rules[item.name] = _Rule(replace(item, exceptions=tuple(exceptions)), index, at, unknown_source)

    def update_rule(self, up: RuleUpdate) -> None:
        prev = self.previous_rule(up.name, up.source, up.location)
        if prev is None:
            missing = ERROR_NO_PREVIOUS_RULE_APPEND if up.mode == "append" else ERROR_NO_PREVIOUS_RULE_REPLACE
            raise LoadError(missing, up.location)
        if not up.has_any_value():
            raise LoadError(
                "Appended rule must have exceptions or condition property"
                if up.mode == "append"
                else "The rule must have at least one field that can be replaced",
                up.location,
            )
        if up.mode == "append":
            self.append_rule(prev, up)
        else:
            _replace_rule(prev, up)
        prev.visibility = self.take_index()

    def append_rule(self, prev: _Rule, up: RuleUpdate) -> None:
        rule = prev.item
        # plain concatenation with one space: appended text brings its own `and`/`or`
        changes: dict[str, object] = {
            key: getattr(rule, key) + " " + text
            for key, text in (("condition", up.condition), ("output", up.output), ("desc", up.desc))
            if text
        }
        if up.tags is not None:
            changes["tags"] = rule.tags | up.tags
        exceptions = list(rule.exceptions)
        for ex in up.exceptions or ():
            at = next((i for i, old in enumerate(exceptions) if old.name == ex.name), None)
            if at is None:
                if not ex.fields.is_valid:
                    message = "Rule exception must have fields property with a list of fields"
                    raise LoadError(message, ex.location)
                if not ex.values:
                    message = "Rule exception must have values property with a list of values"
                    raise LoadError(message, ex.location)
                exceptions.append(_validated_exception(ex))
                continue
            for part, entry in (("fields", ex.fields), ("comps", ex.comps)):
                if entry.is_valid:
                    message = f"Can not append exception {part} to existing exception, only values"
                    raise LoadError(message, ex.location)
            exceptions[at] = replace(exceptions[at], values=exceptions[at].values + ex.values)
        prev.item = replace(rule, exceptions=tuple(exceptions), **changes)  # type: ignore[arg-type]

    def enable_rule(self, item: RuleEnable) -> None:
        prev = self.rules.get(item.name)
        if prev is None:
            raise LoadError("Rule has 'enabled' key but no rule by that name already exists", item.location)
        prev.item = replace(prev.item, enabled=item.enabled)


_REPLACEABLE = (
    "condition", "output", "desc", "tags", "priority", "capture", "capture_duration", "enabled",
    "warn_evttypes", "skip_if_unknown_filter",
)  # fmt: skip


def _replace_rule(prev: _Rule, up: RuleUpdate) -> None:
    changes = {key: getattr(up, key) for key in _REPLACEABLE if getattr(up, key) is not None}
    if up.exceptions is not None:
        # Falco validates exceptions on definition and on append, not on replace; the condition
        # still needs defaulted comps, so fill them in the same way.
        changes["exceptions"] = tuple(_validated_exception(ex) for ex in up.exceptions)
    prev.item = replace(prev.item, **changes)


def _check_engine_version(item: EngineVersionItem) -> None:
    req = item.version
    if not (req[0] == ENGINE_VERSION[0] and ENGINE_VERSION >= req):
        have, want = (".".join(map(str, v)) for v in (ENGINE_VERSION, req))
        raise LoadError(f"Rules require engine version {want}, but engine version is {have}", item.location)


def _check_plugins(item: PluginVersionsItem) -> None:
    seen: set[str] = set()
    for req in item.alternatives:
        if not SEMVER.match(req.version):
            message = f"Invalid required version '{req.version}' for plugin '{req.name}'"
            raise LoadError(message, item.location)
        if req.name in seen:
            message = f"Defined multiple alternative version requirements for plugin '{req.name}'"
            raise LoadError(message, item.location)
        seen.add(req.name)
    if not any(req.name in NATIVE_PLUGINS for req in item.alternatives):
        wanted = " or ".join(f"'{r.name}' {r.version}" for r in item.alternatives)
        raise LoadError(
            f"Rules require plugin {wanted}; Peregrine provides only {', '.join(NATIVE_PLUGINS)} (natively)",
            item.location,
        )


# --- exceptions -> condition text ---------------------------------------------------------------


def _validated_exception(ex: ExceptionInfo) -> ExceptionInfo:
    """validate_exception_info: default and check the comps (fields are checked by the compiler)."""
    comps = ex.comps
    if ex.fields.is_list:
        if not comps.is_valid:
            comps = Entry(items=tuple(Entry("=") for _ in ex.fields.items), is_list=True)
        if len(ex.fields.items) != len(comps.items):
            raise LoadError("Fields and comps lists must have equal length", ex.location)
        comps = Entry(items=tuple(Entry(c.item.strip(" \t\r\n")) for c in comps.items), is_list=True)
        for comp in comps.items:
            if comp.item not in _OPERATORS and not _is_operator_with_modifier(comp.item):
                raise LoadError(f"'{comp.item}' is not a supported comparison operator", ex.location)
    else:
        if not comps.is_valid:
            comps = Entry("in")
        if comps.is_list:
            raise LoadError("Fields and comps must both be strings", ex.location)
        comps = Entry(comps.item.strip(" \t\r\n"))
        if comps.item not in _LIST_OPERATORS and not _is_operator_with_modifier(comps.item):
            raise LoadError(
                "When fields is a single value, comps must be one of (in, pmatch, intersects) "
                "or a modifier operator (e.g. startswith oneof)",
                ex.location,
            )
    return ExceptionInfo(ex.name, ex.fields, comps, ex.values, ex.location)


def _exception_fields(exceptions: Sequence[ExceptionInfo]) -> tuple[str, ...]:
    names: dict[str, None] = {}
    for ex in exceptions:
        for entry in ex.fields.items if ex.fields.is_list else (ex.fields,):
            names[entry.item] = None
    return tuple(names)


def exceptions_condition(condition: str, exceptions: Sequence[ExceptionInfo]) -> str:
    """The rule condition with one `and not (...)` clause per exception that has values."""
    condition = f"({condition})"
    for ex in exceptions:
        if not ex.fields.is_list:
            values = []
            for value in ex.values:
                if value.is_list:
                    raise LoadError("Expected values array to contain a list of strings", ex.location)
                values.append(quote_item(value.item))
            clause = f"({ex.fields.item} {ex.comps.item} ({', '.join(values)}))" if values else ""
        else:
            terms = []
            for row in ex.values:
                if len(row.items) != len(ex.fields.items):
                    raise LoadError("Fields and values lists must have equal length", ex.location)
                checks = []
                for fld, comp, value in zip(ex.fields.items, ex.comps.items, row.items, strict=True):
                    if value.is_list:
                        text = "(" + ", ".join(quote_item(v.item) for v in value.items) + ")"
                    elif comp.item in _LIST_OPERATORS or _is_operator_with_modifier(comp.item):
                        text = value.item if value.item.startswith("(") else f"({value.item})"
                    else:
                        text = quote_item(value.item)
                    checks.append(f" {fld.item} {comp.item} {text}")
                terms.append("(" + " and ".join(checks) + ")")
            clause = "(" + " or ".join(terms) + ")" if terms else ""
        if clause:
            condition += " and not " + clause
    return condition


# --- resolving ----------------------------------------------------------------------------------


def _parse(text: str, cache: dict[str, Expr]) -> Expr:
    expr = cache.get(text)
    if expr is None:
        from rules.parser import parse  # the parser is the only stage that needs the grammar

        expr = cache[text] = parse(text, max_depth=1000)
    return expr


@dataclass(slots=True)
class _Resolver:
    """One compile pass over everything collected so far (lists, then macros, then rules)."""

    collector: _Collector
    cache: dict[str, Expr]
    used_lists: set[str] = field(default_factory=set)
    used_macros: set[str] = field(default_factory=set)
    lists: list[tuple[str, str]] = field(default_factory=list)
    asts: dict[str, Expr] = field(default_factory=dict)  # macro name -> condition, inlined in turn

    def condition(self, written: str, where: Location) -> Expr:
        """Substitute lists, then parse. Positions, in the AST and in parse errors, point into the
        text as written, not into the substituted text the parser saw."""
        text = substitute_lists(written, self.lists, self.used_lists)
        try:
            expr = _parse(text, self.cache)
        except ParseError as exc:
            offset = exc.location.offset
            mapped = None if offset is None else original_offset(self.origin(written), offset, len(written))
            message = exc.message
            at = len(written) if mapped is None else mapped
            name = next((n for n, _ in self.lists if written.startswith(n, at)), None)
            if name is not None:  # the parser choked on a list's items, not on what was written
                message += f" (list '{name}' is replaced by its items here; lists belong in parentheses)"
            raise ParseError(message, _at(where, written, mapped)) from None
        if text == written:
            return expr
        origin = self.origin(written)

        def where_written(pos: Pos) -> Pos:
            idx = original_offset(origin, pos.idx, len(written))
            line_start = written.rfind("\n", 0, idx) + 1
            return Pos(idx, written.count("\n", 0, idx) + 1, idx - line_start + 1)

        return relocate(expr, where_written)

    def origin(self, written: str) -> list[int]:
        """For each character of the substituted text, its offset in the text as written."""
        origin = list(range(len(written)))
        substitute_lists(written, self.lists, None, origin)
        return origin

    def run(self) -> tuple[list[LoadedRule], list[LoadWarning]]:
        col = self.collector
        expanded, self.used_lists = expand_lists(
            [ListDef(lst.name, tuple(lst.items), lst.index, lst.visibility) for lst in col.lists.values()]
        )
        self.lists = [(name, join_items(items)) for name, items in expanded]

        self.asts = {m.name: self.condition(m.condition, m.location) for m in col.macros.values()}
        for m in col.macros.values():
            self.asts[m.name] = self.inline(self.asts[m.name], m.condition, m.location, m.visibility)

        rules = []
        for state in col.rules.values():
            if state.unknown_source:
                continue
            r = state.item
            written = exceptions_condition(r.condition, r.exceptions) if r.exceptions else r.condition
            expr = self.inline(self.condition(written, r.location), written, r.location, None)
            rules.append(
                LoadedRule(
                    name=r.name,
                    condition=expr,
                    condition_text=written,
                    output=r.output,
                    desc=r.desc,
                    priority=r.priority,
                    tags=tuple(sorted(r.tags)),
                    enabled=r.enabled,
                    source=r.source,
                    location=r.location,
                    warn_evttypes=r.warn_evttypes,
                    skip_if_unknown_filter=r.skip_if_unknown_filter,
                    exception_fields=_exception_fields(r.exceptions),
                )
            )

        warnings = [
            LoadWarning("LOAD_UNUSED_MACRO", "Macro not referred to by any other rule/macro", m.location)
            for m in col.macros.values()
            if m.name not in self.used_macros
        ]
        warnings += [
            LoadWarning("LOAD_UNUSED_LIST", "List not referred to by any other rule/macro", lst.location)
            for lst in col.lists.values()
            if lst.name not in self.used_lists
        ]
        return rules, warnings

    def inline(self, expr: Expr, written: str, where: Location, visibility: int | None) -> Expr:
        macros = self.collector.macros
        asts = self.asts

        def lookup(name: str) -> Expr | None:
            m = macros.get(name)
            if m is None or (visibility is not None and m.index >= visibility):
                return None
            return asts.get(name)

        try:
            return inline_macros(expr, lookup, self.used_macros)
        except MacroError as exc:  # positions are already those of the text as written
            raise LoadError(exc.message, _at(where, written, exc.offset)) from None
        except RecursionError:  # e.g. a chain of ~1000 macros each wrapping the previous one
            raise LoadError("macros nest too deeply to be expanded", _at(where, written, None)) from None


def _at(where: Location, condition: str, offset: int | None) -> Location:
    return Location(where.file, where.line, where.item_kind, where.item_name, condition, offset)


# --- entry points -------------------------------------------------------------------------------


def _evttype_warnings(rules: Iterable[LoadedRule]) -> list[LoadWarning]:
    from rules.evttypes import event_types, libs_event_count

    warnings = []
    for rule in rules:
        try:
            types = event_types(rule.condition)
        except ValueError as exc:  # evt.type against a field or through a transformer, as libs refuses
            raise LoadError(str(exc), rule.location) from None
        except RecursionError:
            raise LoadError("condition nests too deeply to be analysed", rule.location) from None
        if rule.warn_evttypes and (types is None or libs_event_count(types) > MAX_EVTTYPE_NAMES):
            warnings.append(
                LoadWarning(
                    "LOAD_NO_EVTTYPE",
                    "Rule matches too many evt.type values. This has a significant performance penalty.",
                    rule.location,
                )
            )
    return warnings


def load_sources(sources: Iterable[tuple[str, str]]) -> LoadResult:
    """Load rules given as (file name, YAML text), in order, as Falco loads rules files in order.

    Raises LoadError or ParseError (with file, line, item and condition offset) for the first
    problem; everything else Falco would only warn about is in `LoadResult.warnings`.
    """
    collector = _Collector()
    cache: dict[str, Expr] = {}
    counts = []
    rules: list[LoadedRule] = []
    final: list[LoadWarning] = []
    for name, text in sources:
        n_rules = n_macros = n_lists = 0
        for item in read_items(text, name, collector.warnings):
            collector.add(item)
            n_rules += isinstance(item, RuleItem)
            n_macros += isinstance(item, MacroItem) and not item.append
            n_lists += isinstance(item, ListItem) and not item.append
        counts.append(FileCounts(name, n_rules, n_macros, n_lists))
        rules, final = _Resolver(collector, cache).run()
    final += _evttype_warnings(rules)
    return LoadResult(tuple(rules), tuple(collector.warnings + final), tuple(counts))


def load_files(paths: Sequence[str | os.PathLike[str]]) -> LoadResult:
    """Read and load rules files in order (see `load_sources`); a file is read when its turn comes."""
    return load_sources(_read(os.fspath(path)) for path in paths)


def _read(name: str) -> tuple[str, str]:
    try:
        with open(name, encoding="utf-8") as f:
            return name, f.read()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise LoadError(f"cannot read rules file: {reason}", Location(name)) from None
