"""Type-check resolved conditions and lower them to condition trees, one per event type.

The entry points `rules.ruleset` uses, all pure, all over data:

* `check` walks a rule's condition once and raises `CompileError` (with the offset of the node in
  the condition) for an unknown field, a missing or forbidden argument, an operator the field's
  type does not allow, a value that does not parse as the field's type, or a field misused on the
  right-hand side; it collects libs' warnings (a literal that looks like a field or a
  transformer, a regex a plain operator could do, a deprecated field).
* `lower` turns the condition into a `rules.condtree` tree whose leaves are Python expressions
  over the positional records, *specialised to one event type*: ``evt.type`` checks fold to
  constants, ``evt.arg.NAME`` becomes one list index, parameters the event lacks fold to
  "missing", and ``evt.num = 0`` (Falco's never_true) folds as libs master folds it. Missing
  values are ``None`` and every leaf is false on ``None``, ``!=`` included (rules-language.md
  2.8).

Fields and transformers are read through `rules.operands`; `rules.optimize` then simplifies
each tree and `rules.codegen` writes each event type's function; the names they define that
`rules.ruleset` and `rules.output` use are re-exported here.

Limits: error offsets point into the text each node was parsed from; for a node inlined from a
macro that is the macro's condition, while the location names the rule.
"""

from __future__ import annotations

import ast as pyast
import re
from collections.abc import Callable
from dataclasses import replace

from rules import operators as ops
from rules.affixes import Affixes
from rules.ast import (
    AndExpr,
    BinaryCheckExpr,
    Expr,
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
from rules.codegen import UNSET, any_present, bucket_source, place, prologue, resolve
from rules.condtree import (
    FALSE,
    TRUE,
    Constants,
    Context,
    Node,
    Placeholders,
    Test,
    Values,
    emit,
    make_leaf,
    set_literal,
)
from rules.fields import NUMERIC_TYPES, FieldFlag, FieldType, lookup
from rules.operands import UNKNOWN_FIELD, Operand, field_operand, operand, transformer_operand
from rules.optimize import simplify
from rules.record import EV_NUM
from rules.transformers import TRANSFORMERS

__all__ = [
    "FALSE", "TRUE", "UNKNOWN_FIELD", "UNSET", "Constants", "Context", "Node", "Operand", "Values",
    "any_present", "bucket_source", "check", "emit", "lower", "operand", "place", "prologue", "resolve",
    "simplify",
]  # fmt: skip


_PORT_NAMES = {"ftp": 21, "ssh": 22, "telnet": 23, "smtp": 25, "domain": 53, "http": 80, "https": 443}


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
            return make_leaf(ctx, [probe], lambda b, r: f"_any({b(probe)}, lambda _v: True)", 3, likely=True)
        return make_leaf(ctx, [probe], lambda b, r: f"{b(probe)} is not None", 1, likely=True)
    if isinstance(expr, BinaryCheckExpr):
        return _lower_check(expr, ctx)
    if isinstance(expr, IdentifierExpr):
        raise ctx.error(f"Undefined macro '{expr.name}' used in filter.", expr.pos)
    raise ctx.error(f"unexpected condition node {type(expr).__name__}", getattr(expr, "pos", Pos()))


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
        if not parsed and op_name in ("in", "intersects"):
            # ``x in ()`` holds for no value, missing included: Falco's rules test many lists
            # users fill in (user_known_*, allowed_*), and folding them drops dead branches
            return FALSE
        literal = set_literal(parsed)
        if left.multi:
            return _guarded(left, lambda t: f"{t} in {literal}", ctx, op.cost)
        key = (left.code, tuple(parsed)) if left.presence is None else None
        code = left.code
        test = (code, "in", tuple(parsed)) if key is not None and left.implied is None else None
        leaf = make_leaf(
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
        return make_leaf(
            ctx, [code], lambda b, r: f"not {b(code)}" if negate else b(code), 1, prior=left.prior
        )
    if op_name == "=" and not left.multi:
        key = (left.code, (parsed[0],)) if left.presence is None else None
        test = (left.code, "in", (parsed[0],)) if key is not None and left.implied is None else None
        leaf = make_leaf(
            ctx, [left.code], lambda b, r: f"{b(left.code)} == {lit}", 1, key=key, prior=left.prior, test=test
        )
        return _with_implied(left, (parsed[0],), leaf, ctx)
    if op_name == "!=" and not left.multi and left.presence is None:
        code = left.code
        return make_leaf(ctx, [code], lambda b, r: f"{b(code)} not in ({lit}, None)", 1, likely=True)
    if op_name == "glob":
        prefix, suffix = ops.glob_affixes(str(parsed[0]))
        tests = [f"{{t}}.startswith({prefix!r})"] * bool(prefix)
        tests += [f"{{t}}.endswith({suffix!r})"] * bool(suffix)
        if tests:  # literal ends of the pattern decide most values without running the program

            def glob_body(t: str) -> str:
                return " and ".join([*(test.format(t=t) for test in tests), op.body(t, lit)])

            longer = Affixes(prefixes=frozenset([prefix])) if len(prefix) >= len(suffix) else (
                Affixes(suffixes=frozenset([suffix]))
            )
            return _guarded(left, glob_body, ctx, op.cost, affixes=(left.code, longer))
    mergeable = op_name in _MERGEABLE and not left.multi and left.presence is None
    mergeable = mergeable and ops.family(left.type) == ops.STRING
    test = (left.code, op_name, (parsed[0],)) if mergeable else None
    return _guarded(
        left, lambda t: op.body(t, lit), ctx, op.cost, likely=op_name == "!=", prior=left.prior, test=test
    )


_MERGEABLE = frozenset({"startswith", "endswith", "contains"})


def _with_implied(left: Operand, values: tuple[object, ...], leaf: Node, ctx: Context) -> Node:
    """`leaf` behind the field's cheap necessary condition for these values, if it has one."""
    if left.implied is None or leaf[0] != "leaf":
        return leaf
    read, test, affixes = left.implied(values)
    guard = make_leaf(
        ctx, [read], lambda b, r: f"({b(read)} is not None and {test.format(t=r(read))})", 1,
        affixes=(read, affixes),
    )
    return ("and", [guard, leaf])


def _tuple_parts(code: str) -> list[str] | None:
    """The element codes of a tuple display such as ``(f[5], f[7])``; None for anything else."""
    try:
        tree = pyast.parse(code, mode="eval").body
    except SyntaxError:
        return None
    if not isinstance(tree, pyast.Tuple):
        return None
    return [pyast.unparse(element) for element in tree.elts]


def _guarded(
    left: Operand,
    body: Callable[[str], str],
    ctx: Context,
    op_cost: int,
    *,
    likely: bool = False,
    prior: float = 0.1,
    test: Test | None = None,
    affixes: tuple[str, Affixes] | None = None,
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

        return make_leaf(ctx, [code], any_of, op_cost + 3, likely=likely, prior=prior)
    if presence is not None:
        return make_leaf(
            ctx, [code, presence], lambda b, r: f"({b(presence)} is not None and {body(b(code))})", op_cost,
            likely=likely, prior=prior,
        )
    leaf = make_leaf(
        ctx, [code], lambda b, r: f"({b(code)} is not None and {body(r(code))})", op_cost, likely=likely,
        prior=prior, test=test, affixes=affixes,
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
        return _guarded(left, lambda t: f"not {name}[{t}]", ctx, 2)
    return _guarded(left, lambda t: f"{name}[{t}]", ctx, 2)


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

    return make_leaf(ctx, [lcode, rcode], build, op.cost)


def check(expr: Expr, ctx: Context) -> None:
    """Raise CompileError for the first problem in `expr`; warnings go to `ctx.warnings`."""
    lower(expr, ctx)
