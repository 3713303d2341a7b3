"""Which open access modes and which outcomes an event can have for a condition to hold: the
classes of events a kernel tells apart by an open's flags & O_ACCMODE and the sign of the call's
return value, without reading anything else (issue #18).

Falco's macros say both: ``open_read`` is ``evt.is_open_read=true and fd.typechar='f' and
fd.num>=0``, ``open_file_failed`` is ``fd.typechar='f' and fd.num=-1 and evt.res startswith E``.
The analysis is `rules.codegen.requirements` over the condition with its nots pushed onto the
leaves (`rules.gate.push_not`), the fold the affix prefilters already use: an and meets what its
conjuncts require, an or joins its branches'. What is new is only the leaf: a leaf that reads one
of the values below is evaluated, as generated code, on every value that value can take in each
class, and admits the classes where it holds on one of them.

* Access mode, on the open types with a flags parameter: `evt.is_open_read` and
  `evt.is_open_write` are bit tests of ``flags & O_ACCMODE`` (`rules.fields.evt._is_open`), so
  four events, flags 0 to 3, are every case. Any other test of the flags (``evt.arg.flags contains
  O_CREAT``, ``evt.is_open_exec``) depends on other bits and is left free.
* Outcome, on open, openat, openat2 and creat, which return a new fd or ``-errno``: `evt.rawres`,
  `evt.res`, `evt.failed` and `fd.num`, which is the new fd on a success and -1 on a failure for
  these types (`collectors.decode`, as libs), a value inside the failures'. A failure is one
  of ``-4095..-1`` (the kernel's MAX_ERRNO), a success an fd, ``0..2**31-1``. ``evt.res``
  renders each failure as its errno's name, so all 4,095 are tried; the numeric fields are only
  ever compared with literals, so a test of them changes value only at a literal, and each literal,
  its neighbours and the ends of the range are every case; ``evt.res`` and ``evt.failed`` are one
  value (``SUCCESS``, false) on every success.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Mapping, Sequence
from typing import Final

from rules import record as R
from rules.codegen import condition_function, requirements
from rules.condtree import Leaf, Node, Not, Values, signature
from rules.fields import FIELDS
from rules.gate import push_not
from rules.pyexpr import reads_in, walk
from rules.record import EVENT_TYPES, Event

ACCMODE: Final = "accmode"  # key of the access modes an event may open with (flags & O_ACCMODE)
SUCCEEDED: Final = "succeeded"  # key of the outcomes (True: returned >= 0) an event may have
ACCMODES: Final = frozenset(range(4))
OUTCOMES: Final = frozenset((True, False))
RESULT_IS_FD: Final = frozenset({"open", "openat", "openat2", "creat"})
_MAX_ERRNO: Final = 4095
_MAX_FD: Final = 2**31 - 1
_OUTCOME_FIELDS: Final = ("evt.rawres", "evt.failed", "fd.num")
_RENDERED: Final = "evt.res"  # a function of the value that does not keep its order
_MODE_FIELDS: Final = ("evt.is_open_read", "evt.is_open_write")

Found = dict[str, frozenset[object]]


def _class_reads(type_id: int) -> dict[str, tuple[str, bool]]:
    """Per read (`Code.key`) this type's classes decide: its class key, and whether every value of
    the class must be tried (a rendering) rather than the literals and ends."""
    name = EVENT_TYPES[type_id]
    if name not in RESULT_IS_FD:
        return {}
    out = {FIELDS[f].code(None, type_id).key: (SUCCEEDED, False) for f in _OUTCOME_FIELDS}
    out[FIELDS[_RENDERED].code(None, type_id).key] = (SUCCEEDED, True)
    if "flags" in R.EVENT_PARAM_INDEX[type_id]:
        out.update({FIELDS[f].code(None, type_id).key: (ACCMODE, False) for f in _MODE_FIELDS})
    return out


class Classes:
    """The classes each condition of one event type admits; leaves are evaluated once each."""

    def __init__(self, type_id: int, values: Values, namespace: Mapping[str, object]) -> None:
        self._type_id = type_id
        self._values = values
        self._namespace = namespace
        self._reads = _class_reads(type_id)
        self._known: dict[str, Found] = {}

    def of(self, tree: Node) -> Found:
        """Per class key, the classes some event where `tree` holds belongs to (a key absent:
        any); an empty set means `tree` holds on no event of the type."""
        if not self._reads:
            return {}
        return requirements(push_not(tree), self._leaf, _meet, _join)

    def _leaf(self, node: Node) -> Found:
        leaf = node.child if isinstance(node, Not) else node
        if not isinstance(leaf, Leaf):
            return {}
        indexes = {read.index for read in reads_in(leaf.code)}
        if len(indexes) != 1:
            return {}
        found = self._reads.get(self._values.codes[indexes.pop()].key)
        if found is None:
            return {}
        sig = signature(node)
        known = self._known.get(sig)
        if known is None:
            known = self._known[sig] = {found[0]: self._admitted(node, leaf, *found)}
        return known

    def _admitted(self, node: Node, leaf: Leaf, key: str, rendered: bool) -> frozenset[object]:
        test = self._compiled(node)
        if key == ACCMODE:
            return frozenset(mode for mode in ACCMODES if test(self._event(0, mode)))
        literals = _integers(leaf.code)
        return frozenset(
            ok for ok in OUTCOMES if any(test(self._event(r, 0)) for r in _results(ok, literals, rendered))
        )

    def _compiled(self, node: Node) -> Callable[[Event], object]:
        module = condition_function("_class_test", node, self._values)
        scope = dict(self._namespace)
        exec(compile(module, "<peregrine interest classes>", "exec"), scope)  # noqa: S102 - our own generated code
        test: Callable[[Event], object] = scope["_class_test"]  # type: ignore[assignment]
        return test

    def _event(self, res: int, flags: int) -> Event:
        """An event of the type with only what the classes read: its result (also its fd's
        number) and its flags."""
        args: list[object] = [None] * len(R.EVENT_PARAMS[self._type_id])
        index = R.EVENT_PARAM_INDEX[self._type_id].get("flags")
        if index is not None:
            args[index] = flags
        fd: list[object] = [None] * R.FD_LEN
        fd[R.F_NUM] = res
        return [self._type_id, 0, 0, None, res, args, fd, 0, None]


def _integers(tree: ast.AST) -> set[int]:
    """The integer literals in a leaf, with their negations (a literal may be negated apart)."""
    found = {n.value for n in walk(tree) if isinstance(n, ast.Constant) and type(n.value) is int}
    return found | {-v for v in found}


def _results(succeeded: bool, literals: set[int], rendered: bool) -> Sequence[int]:
    """The return values that stand for every one of a class, for a test with these literals."""
    low, high = (0, _MAX_FD) if succeeded else (-_MAX_ERRNO, -1)
    if rendered and not succeeded:
        return range(low, high + 1)
    near = {v + d for v in literals for d in (-1, 0, 1)}
    return sorted({low, high} | {v for v in near if low <= v <= high})


def _meet(a: frozenset[object], b: frozenset[object]) -> frozenset[object]:
    return a & b


def _join(found: Sequence[frozenset[object]]) -> frozenset[object]:
    return frozenset().union(*found)
