"""The batch loop: one generated function evaluating a list of events, every event type's code
inlined, so no event pays a function call.

`batch_function` builds ``_evaluate(events)``: a loop that picks an event's code by comparing its
type id, the types most events have first (`HOT_TYPES`: opens, connects, execs, sockets), the
others through a binary search over their ids, then runs that type's rules inline (the body
`rules.codegen.bucket_source` built for its function) and appends ``(event, rule)`` for each
match. A type id no rule can match, or that is not an int at all, falls through every
comparison: the event matches nothing, as with `Ruleset.match`.

Why comparisons and not a table of functions: on this hot path a Python call costs more than the
few integer comparisons that reach the common types, and inlining also lets every helper be one
default argument of one function.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping, Sequence

from rules.codegen import Bucket, arguments_of
from rules.pyexpr import clone, compare, const, name, store
from rules.record import EVENT_TYPE_IDS

# Most events of a busy node, most frequent first (the realistic mix in benchmarks.workload and
# what Falco's syscall counters show on Kubernetes nodes); only the order of comparisons depends
# on it, never a result.
HOT_TYPES = ("openat", "connect", "execve", "socket", "open", "openat2", "accept4", "accept", "execveat")
_CHAIN = 3  # a search leaf tests up to this many ids one after the other


def batch_function(
    buckets: Mapping[int, Bucket], all_matches: bool, by_lookup: bool = False
) -> ast.FunctionDef:
    """``def _evaluate(events, ...)``: (event, rule) per match, in event order; one per event
    unless `all_matches`. The rule tuple of type id T must be bound as ``_R{T}``, and the
    per-type functions `Ruleset.match` (or `match_all`) uses as ``_FIRST`` (or ``_ALL``).
    With `by_lookup`, an int id none of `buckets` has is looked up there too: the generic
    types that run another type's bucket (`rules.shared_types`) are not inlined once each."""
    hot = [EVENT_TYPE_IDS[n] for n in HOT_TYPES if EVENT_TYPE_IDS.get(n) in buckets]
    rest = sorted(set(buckets) - set(hot))
    # Only ints are searched by order; any other id (a float, a bool) is looked up exactly as
    # Ruleset.match looks it up, an unhashable one raising TypeError as it does.
    found = ast.Call(name("_fn"), [name("ev")], [])
    if all_matches:
        each: list[ast.stmt] = [
            ast.For(store("_r"), found, [_append(name("_r"))], [])
        ]
    else:
        each = [
            ast.Assign([store("_r")], found),
            ast.If(compare(name("_r"), ast.IsNot(), const(None)), [_append(name("_r"))], []),
        ]
    other: list[ast.stmt] = [
        ast.Assign([store("_fn")], ast.Call(name("_get"), [name("_t")], [])),
        ast.If(compare(name("_fn"), ast.IsNot(), const(None)), each, []),
    ]
    is_int = compare(ast.Attribute(name("_t"), "__class__", ast.Load()), ast.Is(), name("int"))
    missed = [clone(stmt) for stmt in other] if by_lookup else []
    searched: list[ast.stmt] = _search(rest, buckets, all_matches, missed) if rest else missed or [ast.Pass()]
    chain: list[ast.stmt] = [ast.If(is_int, searched, other)]
    for type_id in reversed(hot):
        chain = [ast.If(_is_type(type_id), _inline(buckets[type_id], type_id, all_matches), chain)]
    helpers = sorted({h for bucket in buckets.values() for h in bucket.helpers})
    tables = [f"_R{type_id}" for type_id in sorted(buckets)]
    params = ["events", "_get", *tables, *helpers]
    arguments = arguments_of(params)
    arguments.defaults[0] = ast.Attribute(name("_ALL" if all_matches else "_FIRST"), "get", ast.Load())
    body: list[ast.stmt] = [
        ast.Assign([store("_out")], ast.List([], ast.Load())),
        ast.Assign([store("_append")], ast.Attribute(name("_out"), "append", ast.Load())),
        ast.For(store("ev"), name("events"), [
            ast.Assign([store("_t")], ast.Subscript(name("ev"), const(0), ast.Load())),
            *chain,
        ], []),
        ast.Return(name("_out")),
    ]
    return ast.FunctionDef("_evaluate", arguments, body, [], None)


def _is_type(type_id: int) -> ast.expr:
    return compare(name("_t"), ast.Eq(), const(type_id))


def _append(rule: ast.expr) -> ast.stmt:
    """``_append((ev, rule))``."""
    return ast.Expr(ast.Call(name("_append"), [ast.Tuple([name("ev"), rule], ast.Load())], []))


def _search(
    ids: Sequence[int], buckets: Mapping[int, Bucket], all_matches: bool, missed: list[ast.stmt]
) -> list[ast.stmt]:
    """Comparisons reaching each id of `ids` (sorted) in about log2(len) steps; `missed` runs
    for an id that is none of them."""
    if len(ids) <= _CHAIN:
        chain: list[ast.stmt] = [clone(stmt) for stmt in missed]
        for type_id in reversed(ids):
            chain = [ast.If(_is_type(type_id), _inline(buckets[type_id], type_id, all_matches), chain)]
        return chain
    middle = len(ids) // 2
    below = compare(name("_t"), ast.Lt(), const(ids[middle]))
    lower = _search(ids[:middle], buckets, all_matches, missed)
    upper = _search(ids[middle:], buckets, all_matches, missed)
    return [ast.If(below, lower, upper)]


def _inline(bucket: Bucket, type_id: int, all_matches: bool) -> list[ast.stmt]:
    """The bucket's body, then what its function would have returned, appended."""
    table = f"_R{type_id}"
    body = [clone(stmt) for stmt in bucket.body]
    if all_matches:
        rule = ast.Subscript(name(table), name("_i"), ast.Load())
        return [*body, ast.If(name("_hits"), [
            ast.Expr(ast.Call(ast.Attribute(name("_hits"), "sort", ast.Load()), [], [])),
            ast.For(store("_i"), name("_hits"), [_append(rule)], []),
        ], [])]
    rule = ast.Subscript(name(table), name("_m"), ast.Load())
    return [*body, ast.If(compare(name("_m"), ast.NotEq(), const(bucket.count)), [_append(rule)], [])]
