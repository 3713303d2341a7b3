"""Python source for one event type's rules: one function testing them all, read by read.

`bucket_source` writes a function over one event record for the simplified conditions of every
enabled rule of one event type: conjuncts several rules share are tested once in nested ifs,
rules that each need one read to be in some set sit behind one test of the union of those sets
(a necessary condition of each, so a sound prefilter), reads used by several checks become locals
defined in the innermost block that needs them (`resolve`, `place`; helper calls are computed on
first use and kept), and the function returns the earliest matching rule in definition order (or
all matches). Since leaves are pure and never raise (`rules.condtree`), testing rules out of
order and sharing their tests cannot change which rules match; the earliest one is chosen at the
end. `prologue` binds the record locals (`rules.fields.BASES`) for other generated code.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rules.condtree import CALL, SIMPLE_READ, Node, Values, conjuncts, cost, emit, p_true, set_literal
from rules.fields import BASE_DEPS, BASES, bases_of


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
    `_UNSET` sentinel), so nothing runs that the short-circuit would have skipped; so is any
    other compound read (``p[26][:12]`` behind its None test) three or more leaves need; other
    reads stay inline."""
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
        if SIMPLE_READ.fullmatch(code):
            if uses[n] >= 3:
                defs.append((local, code))
                binding.append(local)
                again.append(local)
            else:
                binding.append(code)
                again.append(code)
        elif uses[n] >= 2 and CALL.search(code) or uses[n] >= 3:
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
            best, best_rank = (f"{read} in {set_literal(union)}", members, read), rank
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
