"""The immutable, event-type-indexed set of compiled rules: what workers evaluate events with.

`compile_rules` type-checks every rule of a `LoadResult` (disabled ones too, so their errors are
reported, as Falco does), then builds one Python module (as syntax trees, `rules.codegen`, compiled
without source text): per event type, one function running
that type's enabled rules in definition order (first match wins, or all matches with
``all_matches``), and one batch loop dispatching each event to its type's function. Event types no
rule can match have no function, so such events cost one dictionary lookup. ``Ruleset.source``
prints the generated code. `evaluate` first passes the batch through the C gate (`rules.gate`),
which leaves out the events no rule can match, so the generated code runs on the few others.

``ip_names`` (IP text -> DNS name) stands in for Falco's DNS resolution of ``fd.*ip.name``: the
engine does no I/O, so the caller injects the mapping (the worker keeps it updated from
Kubernetes service records) and the generated code reads it live. A comparison
``fd.sip.name = kubernetes.default.svc.cluster.local`` is true when the mapping names the socket's
server IP so, where Falco would resolve the name and compare the addresses.
"""

from __future__ import annotations

import ast
import dataclasses
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final

from rules import compiler as cc
from rules import gate
from rules.ast import Expr, FieldExpr
from rules.batchcode import batch_function
from rules.codegen import Bucket
from rules.errors import CompileError, Location
from rules.fields import HELPERS
from rules.interest import TypeInterest
from rules.interest import derive as derive_interest
from rules.loaded import LoadedRule, LoadResult, LoadWarning
from rules.output import OutputTemplate, compile_output
from rules.priority import Priority
from rules.pyexpr import clone, const, number_lines
from rules.record import EVENT_TYPE_IDS, EVENT_TYPES, GENERIC_TYPE_IDS, Event
from rules.shared_types import GENERIC_IDS, uniform
from rules.transformers import HELPERS as TRANSFORMER_HELPERS


@dataclass(frozen=True, slots=True, eq=False)
class CompiledRule:
    name: str
    priority: Priority
    tags: tuple[str, ...]  # sorted, as Falco's JSON prints its tag set
    source: str
    desc: str
    output: OutputTemplate
    event_types: frozenset[str]  # the event types whose events this rule is evaluated on
    condition: str  # the condition text as written, for listing
    location: Location = field(default_factory=Location)

    def __repr__(self) -> str:
        return f"CompiledRule({self.name!r}, {self.priority.label})"


# Falco 0.42 warns about evt.dir in an output (rule_loader_compiler.cpp
# check_deprecated_fields_in_output); its other deprecated names, evt.latency*, are no fields here
_DEPRECATED_IN_OUTPUT = "evt.dir"

class Ruleset:
    """Enabled rules indexed by event type id. Immutable after construction."""

    __slots__ = (
        "rules", "warnings", "event_type_ids", "all_matches", "interest", "_first", "_all", "_batch",
        "_gate", "_sources",
    )

    def __init__(
        self,
        rules: tuple[CompiledRule, ...],
        warnings: tuple[LoadWarning, ...],
        module: ast.Module,
        bucket_functions: Mapping[int, ast.FunctionDef],
        namespace: dict[str, Any],
        all_matches: bool,
        batch_gate: gate.Gate | None = None,
        interest: Mapping[str, TypeInterest] | None = None,
    ) -> None:
        self.rules = rules
        # per event type, what an event needs for some rule to match it (`rules.interest`)
        self.interest: Mapping[str, TypeInterest] = interest if interest is not None else {}
        self.warnings = warnings
        self.all_matches = all_matches
        self._first: dict[int, Any] = namespace["_FIRST"]
        self._all: dict[int, Any] = namespace["_ALL"]
        self._batch = namespace["_evaluate"]
        self._gate = batch_gate
        self.event_type_ids: frozenset[int] = frozenset(self._first)
        # the trees are kept for `source` (printing only); set last: from here on the instance
        # refuses assignment
        self._sources: dict[int, ast.AST] = {**bucket_functions, -1: module}

    def __setattr__(self, name: str, value: object) -> None:
        if hasattr(self, "_sources"):
            raise AttributeError("Ruleset is immutable")
        object.__setattr__(self, name, value)

    @property
    def event_type_names(self) -> frozenset[str]:
        return frozenset(EVENT_TYPES[i] for i in self.event_type_ids)

    def match(self, ev: Event) -> CompiledRule | None:
        """The first rule, in definition order, whose condition holds for `ev`."""
        fn = self._first.get(ev[0])
        return None if fn is None else fn(ev)

    def match_all(self, ev: Event) -> list[CompiledRule]:
        """Every rule whose condition holds for `ev`, in definition order."""
        fn = self._all.get(ev[0])
        return [] if fn is None else fn(ev)

    @property
    def gated(self) -> bool:
        """Whether `evaluate` runs the C batch gate (`rules.gate`) before the generated code."""
        return self._gate is not None

    def gate_counts(self) -> tuple[int, int]:
        """(events given to `evaluate`, events the gate passed on to the generated code) so
        far; (0, 0) without the gate."""
        if self._gate is None:
            return 0, 0
        seen, kept, _ = self._gate.counts()
        return seen, kept

    def evaluate(self, events: Iterable[Event]) -> list[tuple[Event, CompiledRule]]:
        """The batch hot path: (event, rule) for each match; one per event unless all_matches."""
        batch_gate = self._gate
        return self._batch(events if batch_gate is None else batch_gate.select(events))  # type: ignore[no-any-return]

    def source(self, event_type: str | int | None = None) -> str:
        """The generated code: of one event type's function, or (None) the whole module."""
        if event_type is None:
            return ast.unparse(self._sources[-1]) + "\n"
        type_id = EVENT_TYPE_IDS[event_type] if isinstance(event_type, str) else event_type
        tree = self._sources.get(type_id)
        return "" if tree is None else ast.unparse(tree) + "\n"


def compile_rules(
    result: LoadResult,
    *,
    all_matches: bool = False,
    ip_names: Mapping[str, str] | None = None,
    min_priority: Priority = Priority.DEBUG,
) -> Ruleset:
    """Compile loaded rules into a Ruleset (CompileError for the first rule that cannot compile).

    Only enabled rules at least as severe as `min_priority` are evaluated."""
    constants = cc.Constants()
    warnings: list[LoadWarning] = list(result.warnings)
    compiled: list[CompiledRule] = []
    per_type: dict[int, list[tuple[int, str, cc.Node]]] = {}  # (rule number, its global, tree)
    values = {type_id: cc.Values() for type_id in range(len(EVENT_TYPES))}
    # Generic types (rules.shared_types): a rule compiling alike on all of them is lowered for
    # the first now and, once every rule is seen, for the generic types some other rule may
    # match on (`alone`, each its own bucket) and for the first of the rest, whose bucket the
    # others of the rest run.
    alike: list[tuple[int, str, LoadedRule, Location]] = []
    alone: set[int] = set()
    fd_tables: set[str] = set()  # event types some rule reads fd.types on
    for loaded in result.rules:
        location = _rule_location(loaded)
        ctx = cc.Context(location=location, constants=constants, warnings=warnings)
        try:
            cc.check(loaded.condition, ctx)
            for name in loaded.exception_fields:
                _check_exception_field(name, ctx)
            output = compile_output(loaded.output, location, constants=constants, ip_names=ip_names)
        except CompileError as exc:
            # Falco's skip-if-unknown-filter: a rule naming a field this engine lacks (a newer
            # plugin's, say) is dropped with a warning instead of failing the whole load
            if not (loaded.skip_if_unknown_filter and exc.message.startswith(cc.UNKNOWN_FIELD)):
                raise
            warnings.append(LoadWarning("LOAD_UNKNOWN_FILTER", exc.message, exc.location))
            continue
        if _DEPRECATED_IN_OUTPUT in loaded.output:  # Falco searches the text, as here
            message = f"usage of deprecated field '{_DEPRECATED_IN_OUTPUT}' has been detected in the rule"
            message += " output"
            warnings.append(LoadWarning("LOAD_DEPRECATED_ITEM", message, location))
        if not loaded.enabled or loaded.priority > min_priority:
            continue
        global_name = f"_rule{len(compiled)}"
        matched: list[str] = []
        try:
            names, candidates = _compiled_types(loaded.condition)
        except ValueError as exc:
            raise CompileError(str(exc), location) from None
        is_alike = GENERIC_TYPE_IDS.issubset(candidates) and uniform(loaded.condition)
        for type_id in candidates:
            if is_alike and type_id in GENERIC_TYPE_IDS and type_id != GENERIC_IDS[0]:
                continue
            tree = _lowered(loaded, location, constants, type_id, values[type_id])
            if tree == cc.FALSE:
                continue
            if not is_alike or type_id not in GENERIC_TYPE_IDS:
                matched.append(EVENT_TYPES[type_id])
                if type_id in GENERIC_TYPE_IDS:
                    alone.add(type_id)
            else:  # it holds on every generic type alike
                matched += [EVENT_TYPES[i] for i in GENERIC_IDS]
                alike.append((len(compiled), global_name, loaded, location))
            per_type.setdefault(type_id, []).append((len(compiled), global_name, tree))
        if names is not None:
            uncaptured = sorted(n for n in names if n not in EVENT_TYPE_IDS)
            if uncaptured:
                warnings.append(_uncaptured_warning(uncaptured, matched, location))
        if _reads_fd_types(loaded):
            fd_tables.update(matched)
        compiled.append(
            CompiledRule(
                name=loaded.name,
                priority=loaded.priority,
                tags=tuple(sorted(set(loaded.tags))),
                source=loaded.source,
                desc=loaded.desc,
                output=output,
                event_types=frozenset(matched),
                condition=loaded.condition_text,
                location=loaded.location,
            )
        )
    shared = [type_id for type_id in GENERIC_IDS if type_id not in alone]
    for number, global_name, loaded, location in alike:
        for type_id in sorted((alone | set(shared[:1])) - {GENERIC_IDS[0]}):
            tree = _lowered(loaded, location, constants, type_id, values[type_id])
            per_type.setdefault(type_id, []).append((number, global_name, tree))
    in_order = {type_id: [(g, tree) for _, g, tree in sorted(entries, key=lambda e: e[0])]
                for type_id, entries in per_type.items()}  # fmt: skip
    return _build(
        tuple(compiled), tuple(warnings), in_order, values, constants, ip_names, all_matches, shared,
        frozenset(fd_tables),
    )


def _reads_fd_types(loaded: LoadedRule) -> bool:
    """Whether the rule reads fd.types, in its condition (macros inlined) or its output: the
    collector captures each event's fd table only for the types such a rule is evaluated on. The
    output is searched as text, as Falco searches it for deprecated fields: a mention that is no
    field only costs the capture."""
    return _names_field(loaded.condition, "fd.types") or "fd.types" in loaded.output


def _names_field(node: object, name: str) -> bool:
    if isinstance(node, FieldExpr):
        return node.name == name
    if isinstance(node, tuple):
        return any(_names_field(child, name) for child in node)
    if dataclasses.is_dataclass(node):
        return any(_names_field(getattr(node, f.name), name) for f in dataclasses.fields(node))
    return False


def _lowered(
    loaded: LoadedRule, location: Location, constants: cc.Constants, type_id: int, values: cc.Values
) -> cc.Node:
    """The rule's condition for events of one type, simplified."""
    bucket_ctx = cc.Context(location, constants, type_id, values=values)
    return cc.simplify(cc.lower(loaded.condition, bucket_ctx), bucket_ctx)


def _compiled_types(condition: Expr) -> tuple[frozenset[str] | None, Sequence[int]]:
    """libs' event-type set of `condition` (None: every type; ValueError as `event_types`) and
    the type ids to compile it for (`matched_types`)."""
    from rules.evttypes import event_types, matched_types

    compiled_for = matched_types(condition)
    if compiled_for is None:
        return event_types(condition), range(len(EVENT_TYPES))
    return event_types(condition), sorted(EVENT_TYPE_IDS[n] for n in compiled_for if n in EVENT_TYPE_IDS)


UNCAPTURED: Final = "PEREGRINE_UNCAPTURED_EVTTYPE"  # ours, not one of Falco's LOAD_* codes
_NAMES_SHOWN: Final = 8


def _uncaptured_warning(uncaptured: list[str], matched: list[str], location: Location) -> LoadWarning:
    """A rule naming event types the collector does not capture: Falco sees every syscall, so its
    rules files load silently there, but here such a rule (or that part of it) can never match."""

    def names(found: list[str]) -> str:
        more = len(found) - _NAMES_SHOWN
        return ", ".join(found[:_NAMES_SHOWN]) + (f" and {more} more" if more > 0 else "")

    effect = f"it matches {names(matched)} only" if matched else "the rule can never match"
    message = f"evt.type {names(uncaptured)} not captured by Peregrine: {effect}"
    return LoadWarning(UNCAPTURED, message, location)


def _build(
    rules: tuple[CompiledRule, ...],
    warnings: tuple[LoadWarning, ...],
    per_type: dict[int, list[tuple[str, cc.Node]]],
    values: dict[int, cc.Values],
    constants: cc.Constants,
    ip_names: Mapping[str, str] | None,
    all_matches: bool,
    shared: Sequence[int],
    fd_tables: frozenset[str],
) -> Ruleset:
    statements: list[ast.stmt] = []
    bucket_functions: dict[int, ast.FunctionDef] = {}
    first_entries: dict[int, str] = {}
    all_entries: dict[int, str] = {}
    batched: dict[int, Bucket] = {}
    for type_id in sorted(per_type):
        conditions = per_type[type_id]
        name = EVENT_TYPES[type_id]
        table = values[type_id]
        first = cc.bucket_source(f"_first_{name}", conditions, table, constants, all_matches=False)
        every = cc.bucket_source(f"_all_{name}", conditions, table, constants, all_matches=True)
        batched[type_id] = every if all_matches else first
        bucket_functions[type_id] = batched[type_id].function
        statements += [
            _assign("_RULES", first.table), first.function, _assign("_RULES", every.table), every.function,
            _assign(f"_R{type_id}", batched[type_id].table),
        ]
        first_entries[type_id] = first.function.name
        all_entries[type_id] = every.function.name
    aliases = shared[1:] if shared and shared[0] in per_type else []
    for type_id in aliases:  # the first shared type's bucket, run through its function
        first_entries[type_id] = first_entries[shared[0]]
        all_entries[type_id] = all_entries[shared[0]]
        bucket_functions[type_id] = bucket_functions[shared[0]]
    statements.append(_assign("_FIRST", _dict(first_entries)))
    statements.append(_assign("_ALL", _dict(all_entries)))
    statements.append(batch_function(batched, all_matches, by_lookup=bool(aliases)))
    module = ast.Module(statements, [])
    number_lines(module)
    namespace: dict[str, Any] = {
        **HELPERS,
        **TRANSFORMER_HELPERS,
        **constants.values,
        "_ipn": ip_names if ip_names is not None else {},
        "_UNSET": cc.UNSET,
        "_any": cc.any_present,
    }
    namespace.update({f"_rule{i}": rule for i, rule in enumerate(rules)})
    exec(compile(module, "<peregrine rules>", "exec"), namespace)  # noqa: S102 - our own generated code
    trees = {type_id: [tree for _, tree in per_type[type_id]] for type_id in per_type}
    programs = gate.programs(trees, values, namespace)
    interest = derive_interest(trees, values, namespace, fd_tables)
    if aliases:
        programs = tuple(programs[shared[0]] if i in aliases else p for i, p in enumerate(programs))
        base = interest[EVENT_TYPES[shared[0]]]
        interest.update({EVENT_TYPES[i]: replace(base, event_type=EVENT_TYPES[i]) for i in aliases})
    batch_gate = gate.build(programs, namespace["_ipn"])
    return Ruleset(rules, warnings, module, bucket_functions, namespace, all_matches, batch_gate, interest)


def _assign(target: str, value: ast.expr) -> ast.stmt:
    return ast.Assign([ast.Name(target, ast.Store())], clone(value))


def _dict(entries: Mapping[int, str]) -> ast.expr:
    """``{type_id: function, ...}``."""
    return ast.Dict([const(k) for k in entries], [ast.Name(v, ast.Load()) for v in entries.values()])


def _check_exception_field(text: str, ctx: cc.Context) -> None:
    """An exception's field must be a valid left-hand side (falco rule_loader_collector.cpp)."""
    from rules.errors import ParseError
    from rules.parser import parse_field_or_transformer

    try:
        node, end = parse_field_or_transformer(text, 0)
        if end != len(text.rstrip()):
            raise ParseError(f"unexpected text after {text[:end]!r}")
        cc.operand(node, ctx)
    except (ParseError, CompileError):
        raise CompileError(f"'{text}' is not a supported filter field", ctx.location) from None


def _rule_location(rule: LoadedRule) -> Location:
    where = rule.location
    return Location(where.file, where.line, "rule", rule.name, rule.condition_text, None)


def load(
    paths: Sequence[str | os.PathLike[str]] | str | os.PathLike[str],
    *,
    all_matches: bool = False,
    ip_names: Mapping[str, str] | None = None,
    min_priority: Priority = Priority.DEBUG,
) -> Ruleset:
    """Load Falco rules files in order and compile them (LoadError, ParseError, CompileError).

    `ip_names` is read live, not copied: updating the mapping updates ``fd.*ip.name`` results."""
    from rules.collect import load_files

    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    return compile_rules(
        load_files(paths), all_matches=all_matches, ip_names=ip_names, min_priority=min_priority
    )
