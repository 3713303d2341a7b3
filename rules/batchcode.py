"""The batch loop: one generated function evaluating a list of events, every event type's code
inlined, so no event pays a function call.

`batch_source` writes ``_evaluate(events)``: a loop that picks an event's code by comparing its
type id, the types most events have first (`HOT_TYPES`: opens, connects, execs, sockets), the
others through a binary search over their ids, then runs that type's rules inline (the body
`rules.codegen.bucket_source` wrote for its function) and appends ``(event, rule)`` for each
match. A type id no rule can match, or that is not an int at all, falls through every
comparison: the event matches nothing, as with `Ruleset.match`.

Why comparisons and not a table of functions: on this hot path a Python call costs more than the
few integer comparisons that reach the common types, and inlining also lets every helper be one
default argument of one function.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from rules.codegen import Bucket
from rules.record import EVENT_TYPE_IDS

# Most events of a busy node, most frequent first (the realistic mix in benchmarks.workload and
# what Falco's syscall counters show on Kubernetes nodes); only the order of comparisons depends
# on it, never a result.
HOT_TYPES = ("openat", "connect", "execve", "socket", "open", "openat2", "accept4", "accept", "execveat")
_CHAIN = 3  # a search leaf tests up to this many ids one after the other


def batch_source(buckets: Mapping[int, Bucket], all_matches: bool) -> str:
    """``def _evaluate(events, ...)``: (event, rule) per match, in event order; one per event
    unless `all_matches`. The rule tuple of type id T must be bound as ``_R{T}``, and the
    per-type functions `Ruleset.match` (or `match_all`) uses as ``_FIRST`` (or ``_ALL``)."""
    hot = [EVENT_TYPE_IDS[name] for name in HOT_TYPES if EVENT_TYPE_IDS.get(name) in buckets]
    rest = sorted(set(buckets) - set(hot))
    lines: list[str] = []
    keyword = "if"
    for type_id in hot:
        lines.append(f"        {keyword} _t == {type_id}:")
        lines += _inline(buckets[type_id], type_id, "            ", all_matches)
        keyword = "elif"
    # Only ints are searched by order; any other id (a float, a bool) is looked up exactly as
    # Ruleset.match looks it up, an unhashable one raising TypeError as it does.
    lines += [
        f"        {keyword} _t.__class__ is int:",
        *(_search(rest, buckets, "            ", all_matches) if rest else ["            pass"]),
        "        else:",
        "            _fn = _get(_t)",
        "            if _fn is not None:",
    ]
    if all_matches:
        lines += ["                for _r in _fn(ev):", "                    _append((ev, _r))"]
    else:
        lines += [
            "                _r = _fn(ev)",
            "                if _r is not None:",
            "                    _append((ev, _r))",
        ]
    helpers = sorted({name for bucket in buckets.values() for name in bucket.helpers})
    bound = "".join(f", {name}={name}" for name in helpers)
    tables = "".join(f", _R{type_id}=_R{type_id}" for type_id in sorted(buckets))
    table = "_ALL" if all_matches else "_FIRST"
    head = [
        f"def _evaluate(events, _get={table}.get{tables}{bound}):",
        "    _out = []",
        "    _append = _out.append",
        "    for ev in events:",
        "        _t = ev[0]",
    ]
    return "\n".join([*head, *lines, "    return _out"]) + "\n"


def _search(ids: Sequence[int], buckets: Mapping[int, Bucket], indent: str, all_matches: bool) -> list[str]:
    """Comparisons reaching each id of `ids` (sorted) in about log2(len) steps."""
    if len(ids) <= _CHAIN:
        lines = []
        for n, type_id in enumerate(ids):
            lines.append(f"{indent}{'if' if n == 0 else 'elif'} _t == {type_id}:")
            lines += _inline(buckets[type_id], type_id, indent + "    ", all_matches)
        return lines
    middle = len(ids) // 2
    return [
        f"{indent}if _t < {ids[middle]}:",
        *_search(ids[:middle], buckets, indent + "    ", all_matches),
        f"{indent}else:",
        *_search(ids[middle:], buckets, indent + "    ", all_matches),
    ]


def _inline(bucket: Bucket, type_id: int, indent: str, all_matches: bool) -> list[str]:
    """The bucket's body at `indent`, then what its function would have returned, appended."""
    shift = indent[4:]  # bodies are written at function level, four spaces in
    lines = [shift + line for line in bucket.body]
    if all_matches:
        lines += [
            f"{indent}if _hits:",
            f"{indent}    _hits.sort()",
            f"{indent}    for _i in _hits:",
            f"{indent}        _append((ev, _R{type_id}[_i]))",
        ]
    else:
        lines.append(f"{indent}if _m != {bucket.count}:")
        lines.append(f"{indent}    _append((ev, _R{type_id}[_m]))")
    return lines
