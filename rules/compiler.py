"""Type-check resolved conditions and turn them into Python source, compiled once.

Three steps, all pure, all over data:

* `check` walks a rule's condition once and raises `CompileError` (with the offset of the node in
  the condition) for an unknown field, a missing or forbidden argument, an operator the field's
  type does not allow, a value that does not parse as the field's type, or a field misused on the
  right-hand side; it collects libs' warnings (a literal that looks like a field or a
  transformer, a regex a plain operator could do, a deprecated field).
* `lower` turns the condition into a small boolean tree whose leaves are Python expressions over
  the positional records, *specialised to one event type*: ``evt.type`` checks fold to constants,
  ``evt.arg.NAME`` becomes one list index, parameters the event lacks fold to "missing", and
  ``evt.num = 0`` (Falco's never_true) folds as libs master folds it. `simplify` folds constants,
  drops repeated checks, factors a conjunct shared by or-branches out, merges or-chains on one
  field (``x = a or x = b`` -> one set test; startswith/endswith chains -> one call), and orders
  children by expected cost. None of this can change a result: every leaf is a pure expression
  that never raises, so evaluation order is free.
* `bucket_source` writes one function per event type over all its rules: conjuncts several rules
  share are tested once in nested ifs, rules that each need a field in some set sit behind one
  test of the union of those sets, reads used by several checks become locals defined in the
  innermost block that needs them (helper calls are computed on first use and kept), and the
  function returns the earliest matching rule in definition order (or all matches). Missing
  values are ``None`` and every leaf is false on ``None``, ``!=`` included (rules-language.md
  2.8).

Limits: error offsets point into the text each node was parsed from; for a node inlined from a
macro that is the macro's condition, while the location names the rule.
"""

from __future__ import annotations

import ast as pyast
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypeAlias

from rules import operators as ops
from rules.ast import (
    AndExpr,
    BinaryCheckExpr,
    Expr,
    FieldExpr,
    FieldRefExpr,
    IdentifierExpr,
    ListExpr,
    NotExpr,
    OrExpr,
    Pos,
    TransformerExpr,
    UnaryCheckExpr,
    ValueExpr,
)
from rules.errors import CompileError, Location
from rules.fields import BASE_DEPS, BASES, NUMERIC_TYPES, FieldFlag, FieldType, bases_of, lookup
from rules.loaded import LoadWarning
from rules.record import EV_NUM
from rules.transformers import TRANSFORMERS

# --- the boolean tree generated code is written from -----------------------------------------
# ("leaf", Leaf) | ("and", [..]) | ("or", [..]) | ("not", node) | ("const", bool)
Node: TypeAlias = tuple[Any, ...]
TRUE: Node = ("const", True)
FALSE: Node = ("const", False)

_SIMPLE_READ = re.compile(r"(ev|p|pp|c|f|a)\[\d+\]")
_CALL = re.compile(r"\b_\w+\(")
_PORT_NAMES = {"ftp": 21, "ssh": 22, "telnet": 23, "smtp": 25, "domain": 53, "http": 80, "https": 443}


# how an unknown field's error starts, as libs words it; `skip-if-unknown-filter` looks for it
UNKNOWN_FIELD = "filter_check called with nonexistent field"


@dataclass(slots=True)
class Constants:
    """Load-time objects (glob and regex programs, path tables, networks) the generated module
    reads as globals, deduplicated across all rules of a ruleset."""

    values: dict[str, object] = field(default_factory=dict)
    _names: dict[object, str] = field(default_factory=dict)

    def add(self, key: object, make: Callable[[], object]) -> str:
        name = self._names.get(key)
        if name is None:
            name = self._names[key] = f"_k{len(self._names)}"
            self.values[name] = make()
        return name


@dataclass(frozen=True, slots=True)
class Operand:
    """A value the generated code can read: its expression and what type it has."""

    code: str
    type: FieldType
    text: str  # as written, for messages
    multi: bool = False  # the code yields candidates; a check holds if one candidate passes
    presence: str | None = None  # code deciding presence when the value itself may be None
    filter_only: bool = False
    prior: float = 0.1  # guessed chance that an equality-like test on this value holds
    always_bool: bool = False  # a computed bool that is never missing
    implied: Callable[[tuple[object, ...]], tuple[str, str]] | None = None


@dataclass(slots=True)
class Values:
    """The record reads of one generated function, numbered so each is written once: leaves
    hold placeholders, and `resolve` decides per read whether it is inlined, bound to a local up
    front, or computed on first use and kept (see `resolve`)."""

    codes: list[str] = field(default_factory=list)
    _index: dict[str, int] = field(default_factory=dict)

    def ref(self, code: str) -> int:
        n = self._index.get(code)
        if n is None:
            n = self._index[code] = len(self.codes)
            self.codes.append(code)
        return n


@dataclass(slots=True)
class Context:
    """What one lowering needs: the rule (for error locations), the event type being specialised
    to (None: any), the shared constants, and the function's table of record reads."""

    location: Location
    constants: Constants
    event_type: int | None = None
    warnings: list[LoadWarning] | None = None
    values: Values = field(default_factory=Values)

    def bind(self, code: str) -> str:
        """Placeholder for the first read of `code` in a leaf."""
        return f"\x01{self.values.ref(code)}\x02"

    def reuse(self, code: str) -> str:
        """Placeholder for a later read of `code` in the same leaf, after `bind` ran."""
        return f"\x03{self.values.ref(code)}\x02"

    def error(self, message: str, pos: Pos) -> CompileError:
        return CompileError(message, replace(self.location, offset=pos.idx))

    def warn(self, message: str, pos: Pos) -> None:
        if self.warnings is not None:
            where = replace(self.location, offset=pos.idx)
            self.warnings.append(LoadWarning("LOAD_COMPILE_CONDITION", message, where))


# --- operands ---------------------------------------------------------------------------------
def field_operand(node: FieldExpr, ctx: Context, *, output: bool = False) -> Operand:
    found = lookup(node.name, node.arg)
    text = node.to_source()
    if found is None:
        raise ctx.error(f"{UNKNOWN_FIELD} {text}", node.pos)
    spec, arg = found
    if spec.flags & FieldFlag.DEPRECATED:
        ctx.warn(f"field {spec.name} is deprecated (only exit events exist since Falco 0.42)", node.pos)
    if spec.flags & FieldFlag.ARG_REQUIRED and arg is None:
        raise ctx.error(f"field {spec.name} requires an argument", node.pos)
    if arg is not None and not spec.flags & (FieldFlag.ARG_REQUIRED | FieldFlag.ARG_ALLOWED):
        raise ctx.error(f"field {spec.name} does not take an argument", node.pos)
    if spec.name == "evt.rawarg" and node.arg is not None:
        raise ctx.error("evt.arg fields must be expressed explicitly", node.pos)
    if arg is not None and spec.flags & FieldFlag.ANCESTORS and not arg.isdigit():
        raise ctx.error(f"field {spec.name} needs a numeric index, got {arg!r}", node.pos)
    if spec.name == "evt.arg" and node.arg is not None and not node.arg.isdigit():
        raise ctx.error(f"unknown event argument {node.arg}", node.pos)
    if output and spec.flags & FieldFlag.FILTER_ONLY:
        raise ctx.error(f"field {spec.name} can only be used in filters", node.pos)
    event_type = None if output else ctx.event_type
    multi = bool(spec.flags & FieldFlag.ANY_OF) or bool(spec.flags & FieldFlag.ANCESTORS and arg is None)
    return Operand(
        spec.code(arg, event_type), spec.type, text, multi and not output, spec.presence,
        bool(spec.flags & FieldFlag.FILTER_ONLY),
        prior=0.7 if spec.flags & FieldFlag.FEW_VALUES else 0.1,
        always_bool=bool(spec.flags & FieldFlag.NEVER_MISSING) and spec.type is FieldType.BOOL,
        implied=spec.implied,
    )


def transformer_operand(node: TransformerExpr, ctx: Context, *, output: bool = False) -> Operand:
    row = TRANSFORMERS.get(node.transformer)
    if row is None:
        raise ctx.error(f"unknown transformer {node.transformer}", node.pos)
    name = node.transformer
    if node.arg is not None and name != "getopt":  # libs: only getopt reads an [argument]
        raise ctx.error(f"filter error: transformer '{name}' does not support field arguments", node.pos)
    if name == "join":
        if len(node.values) != 2 or not isinstance(node.values[0], ValueExpr) or not isinstance(
            node.values[1], ListExpr
        ):
            raise ctx.error("join expects a separator string and a list: join(sep, (a, b))", node.pos)
        items = [_transformer_arg(v, ctx, output) for v in node.values[1].values]
        code = f"_tx_join({node.values[0].value!r}, ({''.join(i.code + ', ' for i in items)}))"
        return Operand(code, FieldType.CHARBUF, node.to_source())
    if name == "concat":
        if len(node.values) < 2:
            raise ctx.error("concat expects at least two arguments", node.pos)
        items = [_transformer_arg(v, ctx, output) for v in node.values]
        return Operand(f"_tx_concat({', '.join(i.code for i in items)})", FieldType.CHARBUF, node.to_source())
    if name == "getopt":
        if len(node.values) != 2 or not isinstance(node.values[1], ValueExpr) or node.arg is None:
            usage = 'getopt(proc.args, "o:")[o]'
            raise ctx.error(f"getopt expects a field and an option string: {usage}", node.pos)
        inner = _transformer_arg(node.values[0], ctx, output)
        code = f"_tx_getopt({inner.code}, {node.values[1].value!r}, {node.arg!r})"
        return Operand(code, FieldType.CHARBUF, node.to_source())
    if len(node.values) != 1 or isinstance(node.values[0], (ValueExpr, ListExpr)):
        raise ctx.error(f"transformer {name} expects one field or transformer", node.pos)
    inner = _transformer_arg(node.values[0], ctx, output)
    assert row.inputs is not None
    if inner.type not in row.inputs or inner.multi:
        raise ctx.error(f"transformer {name} does not support type {inner.type}", node.pos)
    return Operand(f"{row.helper}({inner.code})", row.output(inner.type), node.to_source())


def _transformer_arg(node: object, ctx: Context, output: bool) -> Operand:
    if isinstance(node, ValueExpr):
        return Operand(repr(node.value), FieldType.CHARBUF, node.value)
    if isinstance(node, TransformerExpr):
        return transformer_operand(node, ctx, output=output)
    if isinstance(node, FieldExpr):
        found = lookup(node.name, node.arg)
        if found is not None and found[0].flags & FieldFlag.NO_TRANSFORMER:
            raise ctx.error(f"field {found[0].name} does not support transformers", node.pos)
        return field_operand(node, ctx, output=output)
    raise ctx.error("lists are not allowed here", getattr(node, "pos", Pos()))


def operand(node: FieldExpr | TransformerExpr, ctx: Context, *, output: bool = False) -> Operand:
    if isinstance(node, TransformerExpr):
        return transformer_operand(node, ctx, output=output)
    return field_operand(node, ctx, output=output)


# --- right-hand values ---------------------------------------------------------------------
def parse_value(text: str, ftype: FieldType, op: str, pos: Pos, ctx: Context) -> object:
    """A literal as the field's type (libs' value_parser): int, bool, bytes, IP text or str."""
    if "\0" in text:
        raise ctx.error("filter values may not contain NUL bytes", pos)
    if ftype in NUMERIC_TYPES:
        if ftype is FieldType.PORT and text in _PORT_NAMES:
            return _PORT_NAMES[text]
        if not re.fullmatch(r"[+-]?[0-9]+", text):
            raise ctx.error(f"'{text}' is not a valid number", pos)
        return int(text)
    if ftype is FieldType.BOOL:
        if text not in ("true", "false"):
            raise ctx.error(f"'{text}' is not a valid boolean (expected true or false)", pos)
        return text == "true"
    if ftype is FieldType.BYTEBUF:
        if op in ("bcontains", "bstartswith"):
            try:
                return ops.hex_bytes(text)
            except ValueError as exc:
                raise ctx.error(str(exc), pos) from None
        return text.encode()
    if ftype is FieldType.IPADDR:
        import ipaddress

        try:
            return str(ipaddress.ip_address(text))
        except ValueError:
            raise ctx.error(f"'{text}' is not a valid IP address", pos) from None
    if ftype is FieldType.IPNET:
        import ipaddress

        try:
            if "/" not in text:
                raise ValueError
            ipaddress.ip_network(text, strict=False)
        except ValueError:
            message = f"'{text}' is not a valid network (expected a CIDR such as 10.0.0.0/8)"
            raise ctx.error(message, pos) from None
        return text
    if op in ("glob", "iglob", "regex"):
        return text
    return text


def _warn_misused(value: ValueExpr, ctx: Context) -> None:
    text = value.value
    if "(" in text and text.split("(", 1)[0] in TRANSFORMERS:
        ctx.warn(f"'{text}' may be a valid field transformer misused as a const string value", value.pos)
    elif "." in text and lookup(text.split("[", 1)[0], None) is not None:
        ctx.warn(f"'{text}' may be a valid field misused as a const string value", value.pos)


def _literal(value: object, op: str, ctx: Context) -> str:
    """Python code for one right-hand constant, prepared for `op`."""
    if op == "icontains":
        return repr(str(value).lower())
    if op in ("glob", "iglob"):
        pattern = str(value)
        casefold = op == "iglob"
        return ctx.constants.add(("glob", pattern, casefold), lambda: ops.glob_program(pattern, casefold))
    if op == "regex":
        pattern = str(value)
        return ctx.constants.add(("regex", pattern), lambda: ops.regex_program(pattern))
    return repr(value)


# --- lowering ----------------------------------------------------------------------------------
def lower(expr: Expr, ctx: Context) -> Node:
    """The condition as a boolean tree of Python leaves, specialised to `ctx.event_type`."""
    if isinstance(expr, AndExpr):
        return ("and", [lower(c, ctx) for c in expr.children])
    if isinstance(expr, OrExpr):
        return ("or", [lower(c, ctx) for c in expr.children])
    if isinstance(expr, NotExpr):
        return ("not", lower(expr.child, ctx))
    if isinstance(expr, UnaryCheckExpr):
        if expr.op != "exists":
            raise ctx.error(f"unknown unary operator {expr.op}", expr.pos)
        left = operand(expr.left, ctx)
        probe = left.presence or left.code
        if left.multi:
            return _leaf(ctx, [probe], lambda b, r: f"_any({b(probe)}, lambda _v: True)", 3, likely=True)
        return _leaf(ctx, [probe], lambda b, r: f"{b(probe)} is not None", 1, likely=True)
    if isinstance(expr, BinaryCheckExpr):
        return _lower_check(expr, ctx)
    if isinstance(expr, IdentifierExpr):
        raise ctx.error(f"Undefined macro '{expr.name}' used in filter.", expr.pos)
    raise ctx.error(f"unexpected condition node {type(expr).__name__}", getattr(expr, "pos", Pos()))


def _cost(code: str, op_cost: int) -> int:
    return op_cost + 3 * len(_CALL.findall(code)) + code.count(" for ")


def _lower_check(expr: BinaryCheckExpr, ctx: Context) -> Node:
    left = operand(expr.left, ctx)
    op_name = "=" if expr.op == "==" else expr.op
    op = ops.OPERATORS.get(op_name)
    if op is None or op.rhs == "none":
        raise ctx.error(f"unknown operator {expr.op}", expr.pos)
    dns = left.presence is not None
    fam = ops.DNS if dns else ops.family(left.type)
    if not ops.allowed(op_name, fam):
        message = f"operator {expr.op} not supported on field {left.text} of type {left.type}"
        raise ctx.error(message, expr.pos)
    right = expr.right
    if expr.modifier is not None:
        if expr.modifier not in ops.MODIFIERS or not op.modifiable:
            raise ctx.error(f"modifier {expr.modifier} not supported with operator {expr.op}", expr.pos)
        if not isinstance(right, ListExpr):
            raise ctx.error(f"modifier {expr.modifier} expects a list of values", expr.pos)
    if isinstance(right, (FieldRefExpr, TransformerExpr)):
        return _lower_field_compare(expr, left, op, right, ctx)
    if isinstance(right, ListExpr):
        if op.rhs != "list" and expr.modifier is None:
            raise ctx.error(f"operator {expr.op} expects a single value, not a list", right.pos)
        values: list[ValueExpr] = []
        for item in right.values:
            if not isinstance(item, ValueExpr):
                raise ctx.error("only values are allowed in a list", item.pos)
            values.append(item)
    else:
        if op.rhs == "list" and op_name != "in" and op_name != "intersects" and op_name != "pmatch":
            raise ctx.error(f"operator {expr.op} expects a list", right.pos)
        values = [right]
    for v in values:
        _warn_misused(v, ctx)
    parsed = [parse_value(v.value, left.type, op_name, v.pos, ctx) for v in values]
    if op_name == "regex":
        for v, value in zip(values, parsed, strict=True):
            try:
                ops.regex_program(str(value))
            except re.error as exc:
                raise ctx.error(f"invalid regex pattern: {exc}", v.pos) from None
            simpler = ops.simpler_than_regex(str(value))
            if simpler is not None:
                ctx.warn(f"regex '{value}' could be written with the faster operator '{simpler}'", v.pos)
    if expr.modifier is not None:
        return _lower_modifier(expr.modifier, left, op, parsed, ctx)
    if left.type is FieldType.IPNET:
        return _lower_net(left, op_name, [str(v) for v in parsed], ctx)
    if op_name == "pmatch":
        paths = tuple(str(v) for v in parsed)
        name = ctx.constants.add(("pmatch", paths), lambda: ops.pmatch_program(paths))
        return _guarded(left, lambda t: f"{name}({t})", ctx, op.cost)
    if op.rhs == "list":
        literal = _set_literal(parsed)
        if left.multi:
            return _guarded(left, lambda t: f"{t} in {literal}", ctx, op.cost)
        key = (left.code, tuple(parsed)) if left.presence is None else None
        code = left.code
        test = (code, "in", tuple(parsed)) if key is not None and left.implied is None else None
        leaf = _leaf(
            ctx, [code], lambda b, r: f"{b(code)} in {literal}", op.cost, key=key, prior=left.prior, test=test
        )
        return _with_implied(left, tuple(parsed), leaf, ctx)
    if left.code == f"ev[{EV_NUM}]" and op_name in ("=", "!=") and parsed[0] == 0:
        # evt.num counts from 1, so Falco's never_true (evt.num=0) is decided here, as libs
        # master's evaluate_field_invariant does (and rules.evttypes with it)
        return FALSE if op_name == "=" else TRUE
    lit = _literal(parsed[0], op_name, ctx)
    if left.always_bool and op_name in ("=", "!=") and not left.multi:
        code = left.code  # a bool that is never missing: test it directly
        negate = (op_name == "=") != bool(parsed[0])
        return _leaf(ctx, [code], lambda b, r: f"not {b(code)}" if negate else b(code), 1, prior=left.prior)
    if op_name == "=" and not left.multi:
        key = (left.code, (parsed[0],)) if left.presence is None else None
        test = (left.code, "in", (parsed[0],)) if key is not None and left.implied is None else None
        leaf = _leaf(
            ctx, [left.code], lambda b, r: f"{b(left.code)} == {lit}", 1, key=key, prior=left.prior, test=test
        )
        return _with_implied(left, (parsed[0],), leaf, ctx)
    if op_name == "!=" and not left.multi and left.presence is None:
        return _leaf(ctx, [left.code], lambda b, r: f"{b(left.code)} not in ({lit}, None)", 1, likely=True)
    if op_name == "glob":
        prefix, suffix = ops.glob_affixes(str(parsed[0]))
        tests = [f"{{t}}.startswith({prefix!r})"] * bool(prefix)
        tests += [f"{{t}}.endswith({suffix!r})"] * bool(suffix)
        if tests:  # literal ends of the pattern decide most values without running the program

            def glob_body(t: str) -> str:
                return " and ".join([*(test.format(t=t) for test in tests), op.body(t, lit)])

            return _guarded(left, glob_body, ctx, op.cost)
    mergeable = op_name in _MERGEABLE and not left.multi and left.presence is None
    mergeable = mergeable and ops.family(left.type) == ops.STRING
    test = (left.code, op_name, (parsed[0],)) if mergeable else None
    return _guarded(
        left, lambda t: op.body(t, lit), ctx, op.cost, likely=op_name == "!=", prior=left.prior, test=test
    )


_MERGEABLE = frozenset({"startswith", "endswith", "contains"})


def _merge_alternatives(alternatives: list[Node], ctx: Context) -> list[Node]:
    """Turn alternatives testing one read the same way into one test: ``x = a or x = b`` into
    ``x in {a, b}``, startswith/endswith chains into one call with a tuple of affixes, and three
    or more contains into one precompiled search. Falco's macros are full of such chains."""
    groups: dict[tuple[str, str], list[int]] = {}
    for i, node in enumerate(alternatives):
        if node[0] == "leaf" and node[1].test is not None:
            read, op, _ = node[1].test
            groups.setdefault((read, op), []).append(i)
    merged: dict[int, Node] = {}
    dropped: set[int] = set()
    for (read, op), members in groups.items():
        if len(members) < 2 or (op == "contains" and len(members) < 3):
            continue
        values = tuple(dict.fromkeys(v for i in members for v in alternatives[i][1].test[2]))
        prior = min(0.9, sum(alternatives[i][1].p_true for i in members))
        merged[members[0]] = _merged_leaf(read, op, values, prior, ctx)
        dropped.update(members[1:])
    return [merged.get(i, node) for i, node in enumerate(alternatives) if i not in dropped]


def _merged_leaf(read: str, op: str, values: tuple[object, ...], prior: float, ctx: Context) -> Node:
    if op == "in":
        literal = _set_literal(values)
        key = (read, values)
        return _leaf(
            ctx, [read], lambda b, r: f"{b(read)} in {literal}", 1, key=key, test=(read, op, values),
            prior=prior,
        )
    if op == "contains":
        texts = tuple(str(v) for v in values)
        name = ctx.constants.add(("contains", texts), lambda: ops.substring_program(texts))
        return _leaf(
            ctx, [read], lambda b, r: f"({b(read)} is not None and {name}({r(read)}) is not None)", 4,
            prior=prior,
        )
    affixes = tuple(values)
    return _leaf(
        ctx, [read], lambda b, r: f"({b(read)} is not None and {r(read)}.{op}({affixes!r}))", 2,
        test=(read, op, affixes), prior=prior,
    )


def _with_implied(left: Operand, values: tuple[object, ...], leaf: Node, ctx: Context) -> Node:
    """`leaf` behind the field's cheap necessary condition for these values, if it has one."""
    if left.implied is None or leaf[0] != "leaf":
        return leaf
    read, test = left.implied(values)
    guard = _leaf(ctx, [read], lambda b, r: f"({b(read)} is not None and {test.format(t=r(read))})", 1)
    return ("and", [guard, leaf])


Placeholders = Callable[[str], str]


def _leaf(
    ctx: Context,
    reads: list[str],
    build: Callable[[Placeholders, Placeholders], str],
    op_cost: int,
    *,
    likely: bool = False,
    key: tuple[str, tuple[object, ...]] | None = None,
    prior: float = 0.1,
    test: Test | None = None,
) -> Node:
    """A leaf over record reads; folded to a constant when every read is a constant (``evt.type``
    on a specialised function, a parameter this event type lacks). `likely` marks checks that
    usually hold (``!=``, ``exists``); `key` marks "read is one of these values" for the index."""
    if all(_is_constant(code) for code in reads):
        plain = build(_paren, _paren)
        return ("const", bool(eval(plain, {**ctx.constants.values}, {})))  # noqa: S307 - our own code
    weight = op_cost + sum(_read_cost(code) for code in reads)
    if key is not None:
        key = (ctx.bind(key[0]), key[1])
    return ("leaf", Leaf(build(ctx.bind, ctx.reuse), weight, 0.9 if likely else prior, key, test))


@dataclass(frozen=True, slots=True)
class Leaf:
    """One check in generated code, with what the optimiser needs to order and index it."""

    code: str
    cost: float  # rough relative cost: 1 is a local read and a compare
    p_true: float  # guessed probability of being true on a typical event
    key: tuple[str, tuple[object, ...]] | None = None  # (read placeholder, values): "read in values"
    test: Test | None = None  # what it tests, when an or of such leaves can become one test
    guard: tuple[str, str] | None = None  # (read, body): the leaf is "read is not None and body"


Test: TypeAlias = tuple[str, str, tuple[object, ...]]  # (read code, operator, values)


def _read_cost(code: str) -> float:
    if _SIMPLE_READ.fullmatch(code):
        return 0.5
    return 0.5 + 0.5 * code.count("[") + 4 * len(_CALL.findall(code))


def _tuple_parts(code: str) -> list[str] | None:
    """The element codes of a tuple display such as ``(f[5], f[7])``; None for anything else."""
    try:
        tree = pyast.parse(code, mode="eval").body
    except SyntaxError:
        return None
    if not isinstance(tree, pyast.Tuple):
        return None
    return [pyast.unparse(element) for element in tree.elts]


def _paren(code: str) -> str:
    return f"({code})"


def _is_constant(code: str) -> bool:
    try:
        pyast.literal_eval(code)
    except (ValueError, SyntaxError):
        return False
    return True


def _set_literal(values: Sequence[object]) -> str:
    """A set display of constants: CPython turns ``x in {...}`` into a frozenset constant."""
    if not values:
        return "()"
    unique = list(dict.fromkeys(values))
    return "{" + ", ".join(repr(v) for v in unique) + "}"


def _guarded(
    left: Operand,
    body: Callable[[str], str],
    ctx: Context,
    op_cost: int,
    *,
    likely: bool = False,
    prior: float = 0.1,
    test: Test | None = None,
) -> Node:
    """`body` over a present left value: false when the value is missing."""
    code, presence = left.code, left.presence
    if left.multi:
        parts = _tuple_parts(code)
        if parts is not None:  # fd.ip and friends: a fixed pair of reads, tested inline
            single = [replace(left, code=part, multi=False) for part in parts]
            return ("or", [_guarded(one, body, ctx, op_cost, likely=likely, prior=prior) for one in single])

        def any_of(b: Placeholders, r: Placeholders) -> str:
            return f"_any({b(code)}, lambda _v: {body('_v')})"

        return _leaf(ctx, [code], any_of, op_cost + 3, likely=likely, prior=prior)
    if presence is not None:
        return _leaf(
            ctx, [code, presence], lambda b, r: f"({b(presence)} is not None and {body(b(code))})", op_cost,
            likely=likely, prior=prior,
        )
    leaf = _leaf(
        ctx, [code], lambda b, r: f"({b(code)} is not None and {body(r(code))})", op_cost, likely=likely,
        prior=prior, test=test,
    )
    if leaf[0] == "leaf":  # remember the presence test apart, so siblings can share it
        leaf = ("leaf", replace(leaf[1], guard=(ctx.bind(code), body(ctx.reuse(code)))))
    return leaf


def _lower_modifier(
    modifier: str, left: Operand, op: ops.Operator, parsed: list[object], ctx: Context
) -> Node:
    """``op oneof|anyof|allof (list)``: how many list elements satisfy ``field op element``."""
    lits = [_literal(v, op.name, ctx) for v in parsed]

    def body(t: str) -> str:
        tests = [f"({op.body(t, lit)})" for lit in lits]
        if not tests:
            return "False" if modifier != "allof" else "True"
        if modifier == "anyof":
            return "(" + " or ".join(tests) + ")"
        if modifier == "allof":
            return "(" + " and ".join(tests) + ")"
        return "((" + " + ".join(tests) + ") == 1)"

    return _guarded(left, body, ctx, op.cost * max(1, len(lits)))


def _lower_net(left: Operand, op_name: str, nets: list[str], ctx: Context) -> Node:
    """IPNET fields against CIDRs: =/in mean "inside one of", != "inside none of"."""
    key = ("net", tuple(nets))
    name = ctx.constants.add(key, lambda: ops.net_program(nets))
    if op_name == "!=":
        return _guarded(left, lambda t: f"not {name}({t})", ctx, 5)
    return _guarded(left, lambda t: f"{name}({t})", ctx, 5)


def _lower_field_compare(
    expr: BinaryCheckExpr,
    left: Operand,
    op: ops.Operator,
    right: FieldRefExpr | TransformerExpr,
    ctx: Context,
) -> Node:
    """``field op val(other)`` / ``field op transformer(...)``: both sides read from the event."""
    if not op.rhs_field or op.rhs == "list":
        raise ctx.error(f"operator {expr.op} does not support a field on the right-hand side", right.pos)
    if left.presence is not None or left.filter_only:
        raise ctx.error(f"field {left.text} does not support a field on the right-hand side", right.pos)
    if isinstance(right, FieldRefExpr):
        if right.arg is not None:
            raise ctx.error("filter error: transformer 'val' does not support field arguments", right.pos)
        found = lookup(right.field.name, right.field.arg)
        if found is not None and found[0].flags & (FieldFlag.NO_RHS | FieldFlag.FILTER_ONLY):
            message = f"field {right.field.to_source()} cannot be used on the right-hand side"
            raise ctx.error(message, right.pos)
        other = field_operand(right.field, ctx)
    else:
        other = transformer_operand(right, ctx)
    if other.type != left.type or other.multi != left.multi or left.multi:
        raise ctx.error(
            f"field '{left.text}' has type {left.type} while the right-hand side field '{other.text}' "
            f"has incompatible type {other.type}",
            right.pos,
        )
    lcode, rcode = left.code, other.code

    def build(b: Placeholders, r: Placeholders) -> str:
        right_value = f"{r(rcode)}.lower()" if op.name == "icontains" else r(rcode)
        return f"({b(lcode)} is not None and {b(rcode)} is not None and {op.body(r(lcode), right_value)})"

    return _leaf(ctx, [lcode, rcode], build, op.cost)


# --- simplification ------------------------------------------------------------------------
def simplify(node: Node, ctx: Context) -> Node:
    """Fold constants, flatten nested and/or, drop double negation and repeated checks, factor
    a conjunct shared by alternatives out of an or, merge same-field alternatives, and order
    children cheap first."""
    kind = node[0]
    if kind in ("leaf", "const"):
        return node
    if kind == "not":
        child = simplify(node[1], ctx)
        if child[0] == "const":
            return FALSE if child[1] else TRUE
        if child[0] == "not":
            return child[1]  # type: ignore[no-any-return]
        return ("not", child)
    absorbing = kind == "or"  # True absorbs an or, False absorbs an and
    children: list[Node] = []
    for c in node[1]:
        c = simplify(c, ctx)
        if c[0] == "const":
            if c[1] == absorbing:
                return c
            continue
        children.extend(c[1] if c[0] == kind else [c])
    if not children:
        return ("const", not absorbing)
    children = list({emit(c): c for c in children}.values())  # a repeated check adds nothing
    if kind == "or":
        factored = _factor_or(children, ctx)
        if factored is not None:
            return factored
        children = _merge_alternatives(children, ctx)
    children = _share_presence_tests(kind, children)
    if len(children) == 1:
        return children[0]
    # Cheapest expected work first: for `and`, checks likely to be false and cheap lead; for `or`,
    # checks likely to be true. Every leaf is pure and cannot raise, so the order is free.
    if kind == "and":
        children.sort(key=lambda c: cost(c) / max(1e-3, 1 - p_true(c)))
    else:
        children.sort(key=lambda c: cost(c) / max(1e-3, p_true(c)))
    return (kind, children)


def _share_presence_tests(kind: str, children: list[Node]) -> list[Node]:
    """``(x is not None and a) or (x is not None and b)`` -> ``(x is not None and (a or b))``,
    and the same for and: the read and its presence test run once."""
    groups: dict[str, list[int]] = {}
    for i, node in enumerate(children):
        if node[0] == "leaf" and node[1].guard is not None:
            groups.setdefault(node[1].guard[0], []).append(i)
    shared = {read: members for read, members in groups.items() if len(members) >= 2}
    if not shared:
        return children
    joiner = " or " if kind == "or" else " and "
    out: list[Node] = []
    taken = {i for members in shared.values() for i in members}
    for read, members in shared.items():
        leaves = [children[i][1] for i in members]
        bodies = joiner.join(f"({leaf.guard[1]})" for leaf in leaves)
        code = f"({read} is not None and ({bodies}))"
        p = p_true((kind, [("leaf", leaf) for leaf in leaves]))
        total = cost((kind, [("leaf", leaf) for leaf in leaves]))
        out.append(("leaf", Leaf(code, total, p, None, None, (read, f"({bodies})"))))
    out.extend(child for i, child in enumerate(children) if i not in taken)
    return out


def _factor_or(children: list[Node], ctx: Context) -> Node | None:
    """``(a and b) or (a and c) or d`` -> ``(a and (b or c)) or d``: the shared conjunct is
    tested once (a distributive rewrite, exact for pure checks)."""
    counts: dict[str, list[int]] = {}
    for i, child in enumerate(children):
        for code in {emit(c) for c in conjuncts(child)}:
            counts.setdefault(code, []).append(i)
    shared = [(len(members), code) for code, members in counts.items() if len(members) >= 2]
    if not shared:
        return None
    _, code = max(shared)
    members = set(counts[code])
    common = next(c for c in conjuncts(children[min(members)]) if emit(c) == code)
    rests: list[Node] = []
    for i in sorted(members):
        rest = [c for c in conjuncts(children[i]) if emit(c) != code]
        rests.append(("and", rest) if rest else TRUE)
    grouped: Node = ("and", [common, ("or", rests)])
    others = [child for i, child in enumerate(children) if i not in members]
    return simplify(("or", [grouped, *others]) if others else grouped, ctx)


def cost(node: Node) -> float:
    kind = node[0]
    if kind == "leaf":
        return float(node[1].cost)
    if kind == "const":
        return 0.0
    if kind == "not":
        return cost(node[1])
    # expected work: a child runs only if the ones before it did not decide the result
    total, reach = 0.0, 1.0
    for c in node[1]:
        total += reach * cost(c)
        reach *= p_true(c) if kind == "and" else 1 - p_true(c)
    return total


def p_true(node: Node) -> float:
    kind = node[0]
    if kind == "leaf":
        return float(node[1].p_true)
    if kind == "const":
        return 1.0 if node[1] else 0.0
    if kind == "not":
        return 1 - p_true(node[1])
    product = 1.0
    for c in node[1]:
        product *= p_true(c) if kind == "and" else 1 - p_true(c)
    return product if kind == "and" else 1 - product


def emit(node: Node) -> str:
    kind = node[0]
    if kind == "leaf":
        return str(node[1].code)
    if kind == "const":
        return "True" if node[1] else "False"
    if kind == "not":
        return f"not {emit(node[1])}"
    joiner = " and " if kind == "and" else " or "
    return "(" + joiner.join(emit(c) for c in node[1]) + ")"


def check(expr: Expr, ctx: Context) -> None:
    """Raise CompileError for the first problem in `expr`; warnings go to `ctx.warnings`."""
    lower(expr, ctx)


# --- generated functions -------------------------------------------------------------------
def prologue(codes: Sequence[str], indent: str = "    ") -> list[str]:
    """Lines binding the record locals (`rules.fields.BASES`) the given code reads."""
    needed: set[str] = set()
    for code in codes:
        needed |= bases_of(code)
    lines = []
    for base in BASES:  # dependency order
        if base in needed:
            lines.append(f"{indent}{base} = {BASES[base]}")
    assert all(dep in needed for base in needed for dep in BASE_DEPS[base])
    return lines


_GLOBAL_NAME = re.compile(r"(?<![\w.])(_[A-Za-z]\w*)\b(?!\s*:?=)")
_LITERALS = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"")
_LOCAL_NAME = re.compile(r"_v[0-9]*|_n|_m|_hits")
_PLACEHOLDER = re.compile("([\x01\x03])([0-9]+)\x02")


def resolve(lines: Sequence[str], values: Values) -> tuple[list[str], list[tuple[str, str]]]:
    """Replace read placeholders in one function's lines; returns them and the locals to define.

    A plain list index read by three or more leaves gets a local; a read that calls a helper, if
    two or more leaves need it, is computed on first use and kept (``_vN``, defined as the
    `_UNSET` sentinel), so nothing runs that the short-circuit would have skipped; other reads
    stay inline."""
    uses = [0] * len(values.codes)
    reuses = [0] * len(values.codes)
    for text in lines:
        for kind, n in _PLACEHOLDER.findall(text):
            if kind == "\x01":
                uses[int(n)] += 1
            else:
                reuses[int(n)] += 1
    binding: list[str] = []
    again: list[str] = []
    defs: list[tuple[str, str]] = []
    for n, code in enumerate(values.codes):
        local = f"_v{n}"
        if _SIMPLE_READ.fullmatch(code):
            if uses[n] >= 3:
                defs.append((local, code))
                binding.append(local)
                again.append(local)
            else:
                binding.append(code)
                again.append(code)
        elif uses[n] >= 2 and _CALL.search(code):
            defs.append((local, "_UNSET"))
            binding.append(f"({local} if {local} is not _UNSET else ({local} := {code}))")
            again.append(local)
        elif reuses[n] == 0:  # read once, never read again: no local at all
            binding.append(f"({code})")
            again.append(local)
        else:
            binding.append(f"({local} := {code})")
            again.append(local)

    def substitute(match: re.Match[str]) -> str:
        table = binding if match.group(1) == "\x01" else again
        return table[int(match.group(2))]

    return [_PLACEHOLDER.sub(substitute, text) for text in lines], defs


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def place(lines: list[str], defs: Sequence[tuple[str, str]]) -> list[str]:
    """Insert each definition at the start of the innermost block holding all its uses, so a
    branch the event never enters costs nothing; then the record locals (`BASES`) the result
    needs, the same way. `lines` is a function body indented by four spaces."""
    out = list(lines)
    ordered = [*defs, *((base, BASES[base]) for base in reversed(list(BASES)))]
    for name, code in ordered:
        word = re.compile(rf"(?<![\w.]){re.escape(name)}\b")
        used = [i for i, line in enumerate(out) if word.search(_LITERALS.sub("''", line))]
        if not used:
            continue
        header = _enclosing(out, used[0])
        while header is not None and not all(header < i <= _block_end(out, header) for i in used):
            header = _enclosing(out, header)
        at, indent = (0, 4) if header is None else (header + 1, _indent(out[header]) + 4)
        out.insert(at, f"{' ' * indent}{name} = {code}")
    return out


def _enclosing(lines: Sequence[str], i: int) -> int | None:
    """The index of the block header (`if ...:`) line `i` sits in, or None at the top."""
    level = _indent(lines[i])
    for j in range(i - 1, -1, -1):
        if _indent(lines[j]) < level:
            return j
    return None


def _block_end(lines: Sequence[str], header: int) -> int:
    level = _indent(lines[header])
    end = header
    for j in range(header + 1, len(lines)):
        if _indent(lines[j]) <= level:
            break
        end = j
    return end


def conjuncts(node: Node) -> list[Node]:
    return list(node[1]) if node[0] == "and" else [node]


@dataclass(slots=True)
class _Pending:
    position: int  # the rule's place in this function's definition order
    rest: dict[str, Node]  # conjuncts still to test, by emitted code


def _guard_candidates(
    items: Sequence[_Pending], used: frozenset[str]
) -> tuple[str, list[int], str | None] | None:
    """The test that covers the most pending rules: a conjunct several rules share (exact), or
    "read in the union of their value sets" for rules that each require the same read to be in
    some set (a necessary condition of each, so a sound prefilter)."""
    shared: dict[str, list[int]] = {}
    keyed: dict[str, tuple[list[int], list[object]]] = {}
    for i, item in enumerate(items):
        for code, node in item.rest.items():
            shared.setdefault(code, []).append(i)
            key = _key_of(node)
            if key is not None and key[0] not in used:
                read, values = key
                members, union = keyed.setdefault(read, ([], []))
                if not members or members[-1] != i:
                    members.append(i)
                    union.extend(values)
    best: tuple[str, list[int], str | None] | None = None
    best_rank: tuple[int, int, float] = (1, 0, 0.0)
    for code, members in shared.items():
        if len(members) < 2:
            continue
        rank = (len(members), 1, -cost(items[members[0]].rest[code]))
        if rank > best_rank:
            best, best_rank = (code, members, None), rank
    for read, (members, union) in keyed.items():
        if len(members) < 2:
            continue
        rank = (len(members), 0, 0.0)
        if rank > best_rank:
            best, best_rank = (f"{read} in {_set_literal(union)}", members, read), rank
    return best


def _key_of(node: Node) -> tuple[str, tuple[object, ...]] | None:
    """A necessary "read in values" condition of `node`, if it has one: a keyed leaf, any keyed
    conjunct of an and, or the union over an or whose every branch is keyed on the same read."""
    if node[0] == "leaf":
        return node[1].key  # type: ignore[no-any-return]
    if node[0] == "and":
        keys = [k for k in map(_key_of, node[1]) if k is not None]
        return min(keys, key=lambda k: len(k[1])) if keys else None
    if node[0] == "or":
        keys = []
        for child in node[1]:
            key = _key_of(child)
            if key is None:
                return None
            keys.append(key)
        if len({read for read, _ in keys}) != 1:
            return None
        return keys[0][0], tuple(v for _, values in keys for v in values)
    return None


def _factored(
    items: list[_Pending], indent: str, hit: Callable[[int], str], used: frozenset[str] = frozenset()
) -> list[str]:
    """Nested ifs testing each shared conjunct once for all the rules that need it."""
    lines: list[str] = []
    while items:
        guard = _guard_candidates(items, used)
        if guard is None:
            for item in items:
                ordered = sorted(item.rest.values(), key=lambda c: cost(c) / max(1e-3, 1 - p_true(c)))
                if ordered:
                    lines.append(f"{indent}if {' and '.join(emit(c) for c in ordered)}:")
                    lines.append(f"{indent}    {hit(item.position)}")
                else:
                    lines.append(f"{indent}{hit(item.position)}")
            break
        code, members, keyed_read = guard
        inside = []
        for i in members:
            rest = dict(items[i].rest)
            if keyed_read is None:
                del rest[code]
            inside.append(_Pending(items[i].position, rest))
        lines.append(f"{indent}if {code}:")
        inner_used = used if keyed_read is None else used | {keyed_read}
        lines += _factored(inside, indent + "    ", hit, inner_used)
        chosen = set(members)
        items = [item for i, item in enumerate(items) if i not in chosen]
    return lines


def bucket_source(
    fn_name: str, rules: Sequence[tuple[str, Node]], values: Values, all_matches: bool
) -> tuple[str, str]:
    """A function over one event of one type, and the tuple of its rules it indexes into.

    `rules` are (rule global, simplified condition) in definition order. Every rule is tested
    (shared conjuncts once, in nested ifs) and the function returns the earliest matching rule,
    or with `all_matches` every match in definition order: on the events that dominate, those
    matching nothing, every rule has to be ruled out anyway, so testing in any order costs
    nothing and lets rules share their tests."""
    items = [_Pending(i, {emit(c): c for c in conjuncts(tree)}) for i, (_, tree) in enumerate(rules)]
    count = len(rules)
    if all_matches:
        body = _factored(items, "    ", lambda i: f"_hits.append({i})")
        head, tail = ["    _hits = []"], ["    _hits.sort()", "    return [_RULES[i] for i in _hits]"]
    else:
        body = _factored(items, "    ", lambda i: f"if {i} < _m: _m = {i}")
        head, tail = [f"    _m = {count}"], ["    return _RULES[_m]"]
    resolved, defs = resolve(body, values)
    placed = place([*head, *resolved], defs)
    text = "\n".join(placed)
    # Helpers and constants become default arguments: a local read is cheaper than a global one.
    helpers = sorted(set(_GLOBAL_NAME.findall(_LITERALS.sub("''", text))))
    bound = "".join(f", {name}={name}" for name in helpers if not _LOCAL_NAME.fullmatch(name))
    lines = [f"def {fn_name}(ev, _RULES=_RULES{bound}):", *placed, *tail]
    table = "(" + "".join(f"{name}, " for name, _ in rules) + ("" if all_matches else "None, ") + ")"
    return "\n".join(lines) + "\n", table


class _Unset:
    """The value of a cached read not computed yet (None is a real value: "missing")."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "UNSET"


UNSET = _Unset()


def any_present(values: Sequence[object], test: Callable[[object], bool]) -> bool:
    """A check on a multi-valued field (fd.ip, index-less proc.aname): some present value passes."""
    return any(test(v) for v in values if v is not None)
