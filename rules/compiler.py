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

import ast
import re
from collections.abc import Callable
from dataclasses import replace
from typing import Final

from rules import operators as ops
from rules.affixes import Affixes
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
from rules.codegen import UNSET, any_present, bucket_source, condition_function
from rules.condtree import (
    FALSE,
    TRUE,
    And,
    Constants,
    Context,
    Leaf,
    Node,
    Not,
    Or,
    Reader,
    Test,
    Values,
    make_leaf,
)
from rules.fields import NUMERIC_TYPES, FieldFlag, FieldType, lookup
from rules.globs import to_bytes
from rules.libs_event_table import EVENT_NAMES, SYSCALL_NAMES
from rules.operands import UNKNOWN_FIELD, Operand, field_operand, operand, transformer_operand
from rules.optimize import simplify
from rules.pyexpr import Code, and_, call, code, compare, const, is_not_none, method, name, not_, or_, set_of
from rules.record import EV_NUM
from rules.transformers import TRANSFORMERS

__all__ = [
    "FALSE", "TRUE", "UNKNOWN_FIELD", "UNSET", "Constants", "Context", "Node", "Operand", "Values",
    "any_present", "bucket_source", "check", "condition_function", "lower", "operand",
    "simplify",
]  # fmt: skip

_EV_NUM = code(f"ev[{EV_NUM}]")
# libs' words (filter.cpp check_warnings_regex_value)
_SIMPLER_OPERATORS = (
    "may be optimized with simpler operators such as '=', 'contains', 'startswith', 'endswith'"
)


_PORT_NAMES = {"ftp": 21, "ssh": 22, "telnet": 23, "smtp": 25, "domain": 53, "http": 80, "https": 443}


_UNSIGNED_WIDTH: Final = {
    FieldType.UINT64: 64, FieldType.UINT32: 32, FieldType.PORT: 16,
    FieldType.ABSTIME: 64, FieldType.RELTIME: 64,
}  # fmt: skip


def parse_value(text: str, ftype: FieldType, op: str, pos: Pos, ctx: Context) -> object:
    """A literal as the field's type (libs' value_parser): int, bool, bytes, IP text or str."""
    if "\0" in text:
        raise ctx.error("filter values may not contain NUL bytes", pos)
    if ftype in NUMERIC_TYPES:
        if ftype is FieldType.PORT and text in _PORT_NAMES:
            return _PORT_NAMES[text]
        if not re.fullmatch(r"[+-]?[0-9]+", text):
            raise ctx.error(f"'{text}' is not a valid number", pos)
        bits = _UNSIGNED_WIDTH.get(ftype)
        # libs reads an unsigned literal with sscanf("%" PRIu64) (parseu32 for 32 bits) into the
        # field's width: "-1" is the largest value, a too wide one keeps its low bits
        return int(text) if bits is None else int(text) % (1 << bits)
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


def _check_event_names(values: list[ValueExpr], ctx: Context) -> None:
    """libs refuses an ``evt.type`` value, whatever the operator, that is neither an event name
    nor a syscall name it knows (sinsp_filtercheck_event.cpp validate_filter_value). A known
    name our records have no id for is accepted and matches nothing (`rules.record`)."""
    for v in values:
        if v.value not in EVENT_NAMES and v.value not in SYSCALL_NAMES:
            raise ctx.error(f"unknown event type {v.value}", v.pos)


def _warn_misused(value: ValueExpr, ctx: Context) -> None:
    text = value.value
    if "(" in text and text.split("(", 1)[0] in TRANSFORMERS:
        ctx.warn(f"'{text}' may be a valid field transformer misused as a const string value", value.pos)
    elif "." in text and lookup(text.split("[", 1)[0], None) is not None:
        ctx.warn(f"'{text}' may be a valid field misused as a const string value", value.pos)


def _literal(value: object, op: str, ctx: Context) -> ast.expr:
    """The node for one right-hand constant, prepared for `op`: the constant, or the name of
    its load-time program."""
    if op == "icontains":
        return const(to_bytes(str(value)).lower())  # as ops.ascii_folded folds the value
    if op in ("glob", "iglob"):
        pattern = str(value)
        casefold = op == "iglob"
        program = ctx.constants.add(("glob", pattern, casefold), lambda: ops.glob_program(pattern, casefold))
        return name(program)
    if op == "regex":
        pattern = str(value)
        return name(ctx.constants.add(("regex", pattern), lambda: ops.regex_program(pattern)))
    return const(value)


def lower(expr: Expr, ctx: Context) -> Node:
    """The condition as a boolean tree of Python leaves, specialised to `ctx.event_type`."""
    if isinstance(expr, AndExpr):
        return And(tuple(lower(c, ctx) for c in expr.children))
    if isinstance(expr, OrExpr):
        return Or(tuple(lower(c, ctx) for c in expr.children))
    if isinstance(expr, NotExpr):
        return Not(lower(expr.child, ctx))
    if isinstance(expr, UnaryCheckExpr):
        if expr.op != "exists":
            raise ctx.error(f"unknown unary operator {expr.op}", expr.pos)
        left = operand(expr.left, ctx)
        probe = left.presence or left.read
        if left.multi:
            return make_leaf(ctx, [probe], lambda b, r: _any(b(probe), const(True)), 3, likely=True)
        return make_leaf(ctx, [probe], lambda b, r: is_not_none(b(probe)), 1, likely=True)
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
    if left.is_list:
        return _lower_list(expr, left, op_name, ctx)
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
    modifier = expr.modifier
    if left.multi and modifier is not None:
        # several values (fd.ip's two ends, proc.aname's ancestors) go through libs' single-value
        # compare_rhs, which ignores the modifier and compares with the first value only
        modifier, parsed = None, parsed[:1]
    if isinstance(expr.left, FieldExpr) and expr.left.name == "evt.type":
        _check_event_names(values, ctx)
    if op_name == "regex":
        for v, value in zip(values, parsed, strict=True):
            try:
                ops.regex_program(str(value))
            except ValueError as exc:  # RE2 refuses the pattern
                raise ctx.error(f"invalid regex pattern: {exc}", v.pos) from None
            if ops.regex_may_be_simpler(str(value)):
                ctx.warn(f"regex check with '{value}' {_SIMPLER_OPERATORS}", v.pos)
    if modifier is not None:
        return _lower_modifier(modifier, left, op, parsed, ctx)
    if left.type is FieldType.IPNET:
        # compare_net reads filter_value_p(), the first network, when it compares both ends
        nets = parsed[:1] if _endpoints(left) else parsed
        return _lower_net(left, op_name, [str(v) for v in nets], ctx)
    if op_name == "pmatch":
        paths = tuple(str(v) for v in parsed)
        name = ctx.constants.add(("pmatch", paths), lambda: ops.pmatch_program(paths))
        return _guarded(left, lambda t: call(name, t), ctx, op.cost)
    if op.rhs == "list":
        if not parsed and op_name in ("in", "intersects"):
            # ``x in ()`` holds for no value, missing included: Falco's rules test many lists
            # users fill in (user_known_*, allowed_*), and folding them drops dead branches
            return FALSE
        if left.multi:
            return _guarded(left, lambda t: compare(t, ast.In(), set_of(parsed)), ctx, op.cost)
        key = (left.read, tuple(parsed)) if left.presence is None else None
        read = left.read
        test = (read, "in", tuple(parsed)) if key is not None and left.implied is None else None
        leaf = make_leaf(
            ctx, [read], lambda b, r: compare(b(read), ast.In(), set_of(parsed)), op.cost, key=key,
            prior=left.prior, test=test,
        )
        return _with_implied(left, tuple(parsed), leaf, ctx)
    if left.read == _EV_NUM and op_name in ("=", "!=") and parsed[0] == 0:
        # evt.num counts from 1, so Falco's never_true (evt.num=0) is decided here, as libs
        # master's evaluate_field_invariant does (and rules.evttypes with it)
        return FALSE if op_name == "=" else TRUE
    lit = _literal(parsed[0], op_name, ctx)
    if left.always_bool and op_name in ("=", "!=") and not left.multi:
        read = left.read  # a bool that is never missing: test it directly
        negate = (op_name == "=") != bool(parsed[0])
        return make_leaf(
            ctx, [read], lambda b, r: not_(b(read)) if negate else b(read), 1, prior=left.prior
        )
    if op_name == "=" and not left.multi:
        key = (left.read, (parsed[0],)) if left.presence is None else None
        test = (left.read, "in", (parsed[0],)) if key is not None and left.implied is None else None
        leaf = make_leaf(
            ctx, [left.read], lambda b, r: compare(b(left.read), ast.Eq(), lit), 1, key=key, prior=left.prior,
            test=test,
        )
        return _with_implied(left, (parsed[0],), leaf, ctx)
    if op_name == "!=" and not left.multi and left.presence is None:
        read = left.read

        def differs(b: Reader, r: Reader) -> ast.expr:
            return compare(b(read), ast.NotIn(), ast.Tuple([lit, const(None)], ast.Load()))

        return make_leaf(ctx, [read], differs, 1, likely=True)
    if op_name == "glob":
        prefix, suffix = ops.glob_affixes(str(parsed[0]))
        ends = [("startswith", prefix)] * bool(prefix) + [("endswith", suffix)] * bool(suffix)
        if ends:  # literal ends of the pattern decide most values without running the program

            def glob_body(t: ast.expr) -> ast.expr:
                return and_([*(method(t, attr, const(text)) for attr, text in ends), op.body(t, lit)])

            longer = Affixes(prefixes=frozenset([prefix])) if len(prefix) >= len(suffix) else (
                Affixes(suffixes=frozenset([suffix]))
            )
            return _guarded(left, glob_body, ctx, op.cost, affixes=(left.read, longer))
    mergeable = op_name in _MERGEABLE and not left.multi and left.presence is None
    mergeable = mergeable and ops.family(left.type) == ops.STRING
    test = (left.read, op_name, (parsed[0],)) if mergeable else None
    return _guarded(
        left, lambda t: op.body(t, lit), ctx, op.cost, likely=op_name == "!=", prior=left.prior, test=test,
        every=op_name == "!=",
    )


def _lower_list(expr: BinaryCheckExpr, left: Operand, op_name: str, ctx: Context) -> Node:
    """A list-valued field (libs EPF_IS_LIST, fd.types). libs accepts only ``in``,
    ``intersects`` and ``exists`` on it at load time (filter_compare.cpp flt_is_comparable_any_list)
    and compares the extracted values as a set (sinsp_filtercheck.cpp compare_rhs, the list
    branch): ``in`` holds when every value is one of the right-hand values, so an empty list
    holds; ``intersects`` when one is. A missing list makes both false."""
    if op_name not in ("in", "intersects"):
        raise ctx.error(f"filter error: '{expr.op}' operator not supported list filters", expr.pos)
    right = expr.right
    if expr.modifier is not None:
        raise ctx.error(f"modifier {expr.modifier} not supported with operator {expr.op}", expr.pos)
    if isinstance(right, (FieldRefExpr, TransformerExpr)):
        # EPF_NO_RHS (sinsp_filtercheck.cpp add_filter_value)
        raise ctx.error(f"field {left.text} does not support a field on the right-hand side", right.pos)
    items = right.values if isinstance(right, ListExpr) else [right]
    values: list[ValueExpr] = []
    for item in items:
        if not isinstance(item, ValueExpr):
            raise ctx.error("only values are allowed in a list", item.pos)
        _warn_misused(item, ctx)
        values.append(item)
    members = frozenset(parse_value(v.value, left.type, op_name, v.pos, ctx) for v in values)
    held = name(ctx.constants.add(("list-members", members), lambda: members))
    read = left.read

    def body(b: Reader, r: Reader) -> ast.expr:
        test: ast.expr = method(held, "issuperset" if op_name == "in" else "isdisjoint", r(read))
        if op_name == "intersects":
            test = not_(test)
        return and_([is_not_none(b(read)), test])

    return make_leaf(ctx, [read], body, 3)


_MERGEABLE = frozenset({"startswith", "endswith", "contains"})
_ORDERING = frozenset({"<", "<=", ">", ">="})


def _utf8(text: ast.expr) -> ast.expr:
    """The bytes Falco holds for a string value: libs orders strings by strcmp, byte by byte,
    which is not code-point order once a value holds bytes that are not UTF-8 (surrogate escapes
    U+DC80-U+DCFF sort below U+E000, their bytes above). Only two fields need it: the grammar
    allows no quoted string after an ordering operator, and an ASCII number orders alike both ways."""
    return method(text, "encode", const("utf-8"), const("surrogateescape"))


def _with_implied(left: Operand, values: tuple[object, ...], leaf: Node, ctx: Context) -> Node:
    """`leaf` behind the field's cheap necessary condition for these values, if it has one."""
    if left.implied is None or not isinstance(leaf, Leaf):
        return leaf
    read, test, affixes = left.implied(values)
    guard = make_leaf(
        ctx, [read], lambda b, r: and_([is_not_none(b(read)), test(r(read))]), 1, affixes=(read, affixes)
    )
    return And((guard, leaf))


def _any(values: ast.expr, body: ast.expr) -> ast.expr:
    """``_any(values, lambda _v: body)``: some present value passes (`rules.codegen.any_present`)."""
    arguments = ast.arguments([], [ast.arg("_v")], None, [], [], None, [])
    return call("_any", values, ast.Lambda(arguments, body))


def _guarded(
    left: Operand,
    body: Callable[[ast.expr], ast.expr],
    ctx: Context,
    op_cost: int,
    *,
    likely: bool = False,
    prior: float = 0.1,
    test: Test | None = None,
    affixes: tuple[Code, Affixes] | None = None,
    every: bool = False,
) -> Node:
    """`body` over a present left value: false when the value is missing. With several values,
    true when one passes, or with `every` (``!=`` on both ends, as libs' compare_ip/compare_port/
    compare_net) when one is present and every present one passes."""
    read, presence = left.read, left.presence
    if left.multi:
        if isinstance(read.tree, ast.Tuple):  # fd.ip and friends: a fixed pair of reads, tested inline
            single = [replace(left, read=Code(part), multi=False) for part in read.tree.elts]
            if every:
                any_end = Or(tuple(_guarded(one, lambda t: const(True), ctx, 1) for one in single))
                fails = (Not(_guarded(one, lambda t: not_(body(t)), ctx, op_cost)) for one in single)
                return And((any_end, *fails))
            return Or(tuple(_guarded(one, body, ctx, op_cost, likely=likely, prior=prior) for one in single))

        def any_of(b: Reader, r: Reader) -> ast.expr:
            return _any(b(read), body(name("_v")))

        return make_leaf(ctx, [read], any_of, op_cost + 3, likely=likely, prior=prior)
    if presence is not None:
        present = presence
        return make_leaf(
            ctx, [read, present], lambda b, r: and_([is_not_none(b(present)), body(b(read))]), op_cost,
            likely=likely, prior=prior,
        )
    leaf = make_leaf(
        ctx, [read], lambda b, r: and_([is_not_none(b(read)), body(r(read))]), op_cost, likely=likely,
        prior=prior, test=test, affixes=affixes,
    )
    if isinstance(leaf, Leaf):  # remember the presence test apart, so siblings can share it
        leaf = replace(leaf, guard=(ctx.values.ref(read), body(ctx.reuse(read))))
    return leaf


def _lower_modifier(
    modifier: str, left: Operand, op: ops.Operator, parsed: list[object], ctx: Context
) -> Node:
    """``op oneof|anyof|allof (list)``: how many list elements satisfy ``field op element``."""
    lits = [_literal(v, op.name, ctx) for v in parsed]

    def body(t: ast.expr) -> ast.expr:
        tests = [op.body(t, lit) for lit in lits]
        if not tests:
            return const(modifier == "allof")
        if modifier == "anyof":
            return or_(tests)
        if modifier == "allof":
            return and_(tests)
        total = tests[0]
        for one in tests[1:]:
            total = ast.BinOp(total, ast.Add(), one)
        return compare(total, ast.Eq(), const(1))

    return _guarded(left, body, ctx, op.cost * max(1, len(lits)))


def _lower_net(left: Operand, op_name: str, nets: list[str], ctx: Context) -> Node:
    """IPNET fields against CIDRs: =/in mean "inside one of", != "inside none of"."""
    key = ("net", tuple(nets))
    program = ctx.constants.add(key, lambda: ops.net_program(nets))

    def inside(t: ast.expr) -> ast.expr:
        return ast.Subscript(name(program), t, ast.Load())

    if op_name == "!=":
        return _guarded(left, lambda t: not_(inside(t)), ctx, 2, every=True)
    return _guarded(left, inside, ctx, 2)


def _endpoints(left: Operand) -> bool:
    """fd.ip, fd.port, fd.net: the client and the server end, read as a fixed pair."""
    return left.multi and isinstance(left.read.tree, ast.Tuple)


def _lower_field_compare(
    expr: BinaryCheckExpr,
    left: Operand,
    op: ops.Operator,
    right: FieldRefExpr | TransformerExpr,
    ctx: Context,
) -> Node:
    """``field op val(other)`` / ``field op transformer(...)``: both sides read from the event."""
    if not op.rhs_field or op.name == "pmatch":
        raise ctx.error(f"operator {expr.op} does not support a field on the right-hand side", right.pos)
    if op.name in ("in", "intersects"):
        # membership in the other field's one value (sinsp_filtercheck.cpp
        # populate_filter_values_with_rhs_extracted_values): equality
        op = ops.OPERATORS["="]
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
    lcode, rcode = left.read, other.read

    def build(b: Reader, r: Reader) -> ast.expr:
        right_value = ops.ascii_folded(r(rcode)) if op.name == "icontains" else r(rcode)
        left_value = r(lcode)
        if op.name in _ORDERING and ops.family(left.type) == ops.STRING:
            left_value, right_value = _utf8(left_value), _utf8(right_value)
        return and_([is_not_none(b(lcode)), is_not_none(b(rcode)), op.body(left_value, right_value)])

    return make_leaf(ctx, [lcode, rcode], build, op.cost)


def check(expr: Expr, ctx: Context) -> None:
    """Raise CompileError for the first problem in `expr`; warnings go to `ctx.warnings`."""
    lower(expr, ctx)
