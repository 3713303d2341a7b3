"""Operands: what a field or transformer expression reads, with its type, as generated code.

`field_operand` checks a field against the catalog (`rules.fields`): known, argument required or
allowed, usable in outputs; `transformer_operand` checks a transformer's arguments and input
types (`rules.transformers`). Both return an `Operand`: the expression (a syntax tree) over the
record locals, its type, and what the optimiser may assume about it. Conditions (`rules.compiler`) and
outputs (`rules.output`) share them, so a field means the same in both.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

from rules.ast import FieldExpr, ListExpr, Pos, TransformerExpr, ValueExpr
from rules.condtree import Context
from rules.fields import FieldFlag, FieldType, lookup
from rules.fields.spec import Implied
from rules.pyexpr import Code, call, const
from rules.transformers import TRANSFORMERS

# how an unknown field's error starts, as libs words it; `skip-if-unknown-filter` looks for it
UNKNOWN_FIELD = "filter_check called with nonexistent field"
# Falco's description of its one deprecated field we have (falco_load_result.cpp deprecated_field_descs)
_DEPRECATED_EVT_DIR = (
    "due to the drop of enter events, 'evt.dir = <' always evaluates to true, and 'evt.dir = >' always"
    " evaluates to false. The rule expression can be simplified by removing the condition on 'evt.dir'"
)


@dataclass(frozen=True, slots=True)
class Operand:
    """A value the generated code can read: its expression and what type it has."""

    read: Code
    type: FieldType
    text: str  # as written, for messages
    multi: bool = False  # the code yields candidates; a check holds if one candidate passes
    presence: Code | None = None  # code deciding presence when the value itself may be None
    filter_only: bool = False
    prior: float = 0.1  # guessed chance that an equality-like test on this value holds
    always_bool: bool = False  # a computed bool that is never missing
    implied: Implied | None = None
    is_list: bool = False  # libs EPF_IS_LIST: the value is a tuple of values, None when missing


# what libs' sinsp_numparser::parsed64 (sscanf "%" PRId64) reads as a whole number
_INDEX = re.compile(r"\s*[+-]?[0-9]+")


def field_operand(node: FieldExpr, ctx: Context, *, output: bool = False) -> Operand:
    found = lookup(node.name, node.arg)
    text = node.to_source()
    if found is None:
        raise ctx.error(f"{UNKNOWN_FIELD} {text}", node.pos)
    spec, arg = found
    if spec.flags & FieldFlag.DEPRECATED:
        ctx.warn(_DEPRECATED_EVT_DIR, node.pos, "LOAD_DEPRECATED_ITEM", once=True)
    if spec.flags & FieldFlag.ARG_REQUIRED and arg is None:
        raise ctx.error(f"field {spec.name} requires an argument", node.pos)
    if arg is not None and not spec.flags & (FieldFlag.ARG_REQUIRED | FieldFlag.ARG_ALLOWED):
        raise ctx.error(f"field {spec.name} does not take an argument", node.pos)
    if spec.name == "evt.rawarg" and node.arg is not None:
        raise ctx.error("evt.arg fields must be expressed explicitly", node.pos)
    if arg is not None and spec.flags & FieldFlag.ANCESTORS and not arg.isdigit():
        raise ctx.error(f"field {spec.name} needs a numeric index, got {arg!r}", node.pos)
    if arg is not None and spec.flags & FieldFlag.IS_LIST and not _INDEX.fullmatch(arg):
        raise ctx.error(f"{arg} is not a valid number", node.pos)  # libs' words (parsed64)
    if spec.name == "evt.arg" and node.arg is not None and not node.arg.isdigit():
        raise ctx.error(f"unknown event argument {node.arg}", node.pos)
    if output and spec.flags & FieldFlag.FILTER_ONLY:
        raise ctx.error(f"field {spec.name} can only be used in filters", node.pos)
    event_type = None if output else ctx.event_type
    multi = bool(spec.flags & FieldFlag.ANY_OF) or bool(spec.flags & FieldFlag.ANCESTORS and arg is None)
    return Operand(
        spec.code(arg, event_type), spec.type, text, multi and not output, spec.presence_code(),
        bool(spec.flags & FieldFlag.FILTER_ONLY),
        prior=0.7 if spec.flags & FieldFlag.FEW_VALUES else 0.1,
        always_bool=bool(spec.flags & FieldFlag.NEVER_MISSING) and spec.type is FieldType.BOOL,
        implied=spec.implied,
        is_list=bool(spec.flags & FieldFlag.IS_LIST),
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
            listed = _list_join(node, ctx, output)
            if listed is not None:
                return listed
            raise ctx.error("join expects a separator string and a list: join(sep, (a, b))", node.pos)
        items = [_transformer_arg(v, ctx, output) for v in node.values[1].values]
        if any(i.is_list for i in items):
            raise ctx.error("join: a list-valued field goes alone as the list: join(sep, fd.types)", node.pos)
        parts = ast.Tuple([i.read.tree for i in items], ast.Load())
        joined = call("_tx_join", const(node.values[0].value), parts)
        return Operand(Code(joined), FieldType.CHARBUF, node.to_source())
    if name == "concat":
        if len(node.values) < 2:
            raise ctx.error("concat expects at least two arguments", node.pos)
        items = [_transformer_arg(v, ctx, output) for v in node.values]
        if any(i.is_list for i in items):
            raise ctx.error("concat() arguments must be strings", node.pos)  # libs' words
        concat = call("_tx_concat", *(i.read.tree for i in items))
        return Operand(Code(concat), FieldType.CHARBUF, node.to_source())
    if name == "getopt":
        if len(node.values) != 2 or not isinstance(node.values[1], ValueExpr) or node.arg is None:
            usage = 'getopt(proc.args, "o:")[o]'
            raise ctx.error(f"getopt expects a field and an option string: {usage}", node.pos)
        inner = _transformer_arg(node.values[0], ctx, output)
        getopt = call("_tx_getopt", inner.read.tree, const(node.values[1].value), const(node.arg))
        return Operand(Code(getopt), FieldType.CHARBUF, node.to_source())
    if len(node.values) != 1 or isinstance(node.values[0], (ValueExpr, ListExpr)):
        raise ctx.error(f"transformer {name} expects one field or transformer", node.pos)
    inner = _transformer_arg(node.values[0], ctx, output)
    assert row.inputs is not None
    if inner.type not in row.inputs or inner.multi:
        raise ctx.error(f"transformer {name} does not support type {inner.type}", node.pos)
    if inner.is_list and not row.accepts_lists:
        # libs applies a one-value transformer to each value of a list, which stays a list
        each = call("_tx_each", ast.Name(row.helper, ast.Load()), inner.read.tree)
        return Operand(Code(each), row.output(inner.type), node.to_source(), is_list=True)
    return Operand(Code(call(row.helper, inner.read.tree)), row.output(inner.type), node.to_source())


def _list_join(node: TransformerExpr, ctx: Context, output: bool) -> Operand | None:
    """``join(sep, <list field>)``: libs' join takes a list-valued field as its list
    (sinsp_filtercheck_multivalue_transformer.cpp, join); None when the call is not of that shape."""
    if len(node.values) != 2 or not isinstance(node.values[0], ValueExpr):
        return None
    if not isinstance(node.values[1], (FieldExpr, TransformerExpr)):
        return None
    items = _transformer_arg(node.values[1], ctx, output)
    if not items.is_list:
        raise ctx.error("join() second argument must be a list", node.pos)  # libs' words
    joined = call("_tx_join_list", const(node.values[0].value), items.read.tree)
    return Operand(Code(joined), FieldType.CHARBUF, node.to_source())


def _transformer_arg(node: object, ctx: Context, output: bool) -> Operand:
    if isinstance(node, ValueExpr):
        return Operand(Code(const(node.value)), FieldType.CHARBUF, node.value)
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
