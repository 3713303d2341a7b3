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
from typing import Any, cast

from rules import operators as ops
from rules.affixes import Affixes
from rules.condtree import (
    CALL,
    SIMPLE_READ,
    Constants,
    Node,
    Values,
    conjuncts,
    cost,
    emit,
    p_true,
    set_literal,
)
from rules.fields import BASE_DEPS, BASES, HELPERS, bases_of


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
    needs, the same way. A name only used inside several top-level blocks is defined in each of
    them rather than once before them all: reads are pure, so an event entering two such blocks
    reads twice, and one entering none (the usual event) reads nothing. `lines` is a function
    body indented by four spaces."""
    out = list(lines)
    ordered = [*defs, *((base, BASES[base]) for base in reversed(list(BASES)))]
    for name, code in ordered:
        word = re.compile(rf"(?<![\w.]){re.escape(name)}\b")
        used = [i for i, line in enumerate(out) if word.search(_LITERALS.sub("''", line))]
        if not used:
            continue
        groups: dict[int | None, list[int]] = {}
        for i in used:
            groups.setdefault(_outermost(out, i), []).append(i)
        top = groups.pop(None, None)
        if top is not None and not _inline_once(out, top, word, name, code):
            groups = {None: used}  # used at the top level: one definition before everything
        for group in sorted(groups.values(), reverse=True):  # bottom first: indices stay valid
            at, indent = _innermost_site(out, group)
            out.insert(at, f"{' ' * indent}{name} = {code}")
    return out


def _inline_once(lines: list[str], top: Sequence[int], word: re.Pattern[str], name: str, code: str) -> bool:
    """Write a read into the one top-level line that uses it, instead of defining it before
    every event's first test: that line usually short-circuits before reaching it. Applies to a
    plain read (a list index, a record local) used at most twice there, and to a computed-once
    read (``_UNSET``) used once there. False (nothing changed) when it does not apply."""
    if len(top) != 1:
        return False
    line = lines[top[0]]
    count = len(word.findall(_LITERALS.sub("''", line)))
    if code == "_UNSET":
        lazy = f"({name} if {name} is not _UNSET else ({name} := "
        start = line.find(lazy)
        if count != 3 or start < 0:
            return False
        end = _closing(line, start)
        inner = line[start + len(lazy) : end - 1]
        lines[top[0]] = line[:start] + f"({inner})" + line[end + 1 :]
        return True
    plain = SIMPLE_READ.fullmatch(code) is not None
    if not (plain or name in BASES) or count > (2 if plain else 1):
        return False
    lines[top[0]] = word.sub(lambda _: code, line)
    return True


def _closing(text: str, start: int) -> int:
    """The index of the parenthesis closing the one open at `start` (string literals skipped)."""
    depth, i, quote = 0, start, ""
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise ValueError(f"unbalanced parentheses in generated code: {text!r}")


def _outermost(lines: Sequence[str], i: int) -> int | None:
    """The top-level block header line `i` sits in (None: line `i` is at the top level)."""
    header = _enclosing(lines, i)
    while header is not None:
        outer = _enclosing(lines, header)
        if outer is None:
            return header
        header = outer
    return None


def _innermost_site(lines: Sequence[str], used: Sequence[int]) -> tuple[int, int]:
    """Where a definition for these uses goes: (line index, indent) at the start of the innermost
    block holding them all."""
    header = _enclosing(lines, used[0])
    while header is not None and not all(header < i <= _block_end(lines, header) for i in used):
        header = _enclosing(lines, header)
    return (0, 4) if header is None else (header + 1, _indent(lines[header]) + 4)


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


@dataclass(slots=True)
class _Guards:
    """What choosing guards needs beyond the rules: the function's reads (to name an affix
    prefilter's read) and the ruleset's constants (to hold its program)."""

    values: Values
    constants: Constants

    def affix_guard(self, read: str, affixes: Affixes) -> str:
        if affixes.size() == len(affixes.exact):  # equality only: a set test needs no call
            return f"{self.values.placeholder(read)} in {set_literal(sorted(affixes.exact))}"
        exact, prefixes = tuple(sorted(affixes.exact)), tuple(sorted(affixes.prefixes))
        suffixes, contains = tuple(sorted(affixes.suffixes)), tuple(sorted(affixes.contains))
        tests = (exact, prefixes, suffixes, contains)
        rendered = _RENDERED.fullmatch(read)
        if rendered is not None:
            # a parameter's text (evt.arg.flags) is a function of its raw value: remember the
            # answer per raw value, so neither the rendering nor the tests run again
            render = cast(Callable[[Any], "str | None"], HELPERS[rendered.group(1)])
            key = ("affixes", rendered.group(1), *tests)
            name = self.constants.add(key, lambda: ops.affix_program(*tests, transform=render))
            return f"{name}[{self.values.placeholder(rendered.group(2))}]"
        name = self.constants.add(("affixes", *tests), lambda: ops.affix_program(*tests))
        return f"{name}[{self.values.placeholder(read)}]"


_RENDERED = re.compile(r"(_txt\d+_\d+)\((a\[\d+\])\)")


# Guessed chance a value passes one rule's affix test: paths and names rarely do. Tests guessed
# likelier than _AFFIX_P_MAX are on few-valued fields and never make a prefilter.
_AFFIX_P = 0.05
_AFFIX_P_MAX = 0.2


def _union_p(ps: Sequence[float]) -> float:
    """The guessed chance that at least one of several checks holds."""
    miss = 1.0
    for p in ps:
        miss *= 1 - p
    return 1 - miss


def _guard_candidates(
    items: Sequence[_Pending], used: frozenset[str], guards: _Guards
) -> tuple[str, list[int], str | None] | None:
    """The test that rules out the most pending rules on a typical event: a conjunct several
    rules share (exact), "read in the union of their value sets" for rules that each require the
    same read to be in some set, or "read passes the union of their affixes" for rules that each
    require affixes of the same string read (both necessary conditions, so sound prefilters).
    A test covering n rules that holds with guessed chance p is worth n * (1 - p)."""
    shared: dict[str, list[int]] = {}
    keyed: dict[str, tuple[list[int], list[object], list[float]]] = {}
    affixed: dict[str, tuple[list[int], list[Affixes], list[float]]] = {}
    for i, item in enumerate(items):
        for code, node in item.rest.items():
            shared.setdefault(code, []).append(i)
            key = _key_of(node)
            if key is not None and key[0] not in used:
                read, values = key
                members, union, ps = keyed.setdefault(read, ([], [], []))
                if not members or members[-1] != i:
                    members.append(i)
                    union.extend(values)
                    ps.append(p_true(node))
        # A rule joins the prefilter of one read only: the one it constrains to the fewest
        # alternatives, its narrowest test (``fd.nameraw contains ../`` rather than ``fd.name
        # startswith /etc/``), so a broad alternative does not let most values through.
        # Few-valued fields (fd.typechar) are left to the other guards: most values pass.
        required: dict[str, tuple[float, Affixes]] = {}
        for node in item.rest.values():
            p = p_true(node)
            for read, affixes in affixes_of(node).items():
                if p <= _AFFIX_P_MAX and guards.values.placeholder(read) not in used:
                    required.setdefault(read, (min(p, _AFFIX_P), affixes))
        if required:
            read = min(required, key=lambda r: required[r][1].size())
            members, found, ps = affixed.setdefault(read, ([], [], []))
            members.append(i)
            found.append(required[read][1])
            ps.append(required[read][0])
    best: tuple[str, list[int], str | None] | None = None
    best_rank: tuple[float, int, float] = (0.0, 0, 0.0)
    for code, members in shared.items():
        if len(members) < 2:
            continue
        node = items[members[0]].rest[code]
        rank = (len(members) * (1 - p_true(node)), 1, -cost(node))
        if rank > best_rank:
            best, best_rank = (code, members, None), rank
    for read, (members, union, ps) in keyed.items():
        if len(members) < 2:
            continue
        rank = (len(members) * (1 - _union_p(ps)), 0, 0.0)
        if rank > best_rank:
            best, best_rank = (f"{read} in {set_literal(union)}", members, read), rank
    for read, (members, found, ps) in affixed.items():
        if len(members) < 2:
            continue
        rank = (len(members) * (1 - _union_p(ps)), -1, 0.0)
        if rank > best_rank:
            guard = guards.affix_guard(read, Affixes.union(found))
            best, best_rank = (guard, members, guards.values.placeholder(read)), rank
    return best


def affixes_of(node: Node) -> dict[str, Affixes]:
    """Necessary affix conditions of `node` by string read: a leaf's own, every conjunct's of an
    and, and for an or the union of its branches' on each read all of them constrain."""
    if node[0] == "leaf":
        found = node[1].required_affixes()
        return {} if found is None else {found[0]: found[1]}
    if node[0] == "and":
        out: dict[str, Affixes] = {}
        for child in node[1]:
            for read, affixes in affixes_of(child).items():
                out.setdefault(read, affixes)
        return out
    if node[0] == "or":
        branches = [affixes_of(child) for child in node[1]]
        common = set(branches[0]).intersection(*branches[1:]) if branches else set()
        merged: dict[str, Affixes] = {}
        for read in common:
            merged[read] = Affixes.union(branch[read] for branch in branches)
        return merged
    return {}


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
    items: list[_Pending], indent: str, hit: Callable[[int], str], guards: _Guards,
    used: frozenset[str] = frozenset(),
) -> list[str]:
    """Nested ifs testing each shared conjunct once for all the rules that need it."""
    lines: list[str] = []
    while items:
        guard = _guard_candidates(items, used, guards)
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
        lines += _factored(inside, indent + "    ", hit, guards, inner_used)
        chosen = set(members)
        items = [item for i, item in enumerate(items) if i not in chosen]
    return lines


@dataclass(frozen=True, slots=True)
class Bucket:
    """One event type's generated code: the function (`source`), the tuple of rule globals it
    indexes (`table`), and its parts for inlining into the batch loop (`body` at function
    indent, `helpers` it reads, the `count` of rules: ``_m == count`` means no match)."""

    source: str
    table: str
    body: tuple[str, ...]
    helpers: tuple[str, ...]
    count: int


def bucket_source(
    fn_name: str, rules: Sequence[tuple[str, Node]], values: Values, constants: Constants, all_matches: bool
) -> Bucket:
    """A function over one event of one type, and the tuple of its rules it indexes into.

    `rules` are (rule global, simplified condition) in definition order. Every rule is tested
    (shared conjuncts once, in nested ifs) and the function returns the earliest matching rule,
    or with `all_matches` every match in definition order: on the events that dominate, those
    matching nothing, every rule has to be ruled out anyway, so testing in any order costs
    nothing and lets rules share their tests."""
    items = [_Pending(i, {emit(c): c for c in conjuncts(tree)}) for i, (_, tree) in enumerate(rules)]
    count = len(rules)
    guards = _Guards(values, constants)
    if all_matches:
        body = _factored(items, "    ", lambda i: f"_hits.append({i})", guards)
        head, tail = ["    _hits = []"], ["    _hits.sort()", "    return [_RULES[i] for i in _hits]"]
    else:
        body = _factored(items, "    ", lambda i: f"if {i} < _m: _m = {i}", guards)
        head, tail = [f"    _m = {count}"], ["    return _RULES[_m]"]
    resolved, defs = resolve(body, values)
    placed = place([*head, *resolved], defs)
    text = "\n".join(placed)
    # Helpers and constants become default arguments: a local read is cheaper than a global one.
    found = sorted(set(_GLOBAL_NAME.findall(_LITERALS.sub("''", text))))
    helpers = tuple(name for name in found if not _LOCAL_NAME.fullmatch(name))
    bound = "".join(f", {name}={name}" for name in helpers)
    lines = [f"def {fn_name}(ev, _RULES=_RULES{bound}):", *placed, *tail]
    table = "(" + "".join(f"{name}, " for name, _ in rules) + ("" if all_matches else "None, ") + ")"
    return Bucket("\n".join(lines) + "\n", table, tuple(placed), helpers, count)


class _Unset:
    """The value of a cached read not computed yet (None is a real value: "missing")."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "UNSET"


UNSET = _Unset()


def any_present(values: Sequence[object], test: Callable[[object], bool]) -> bool:
    """A check on a multi-valued field (fd.ip, index-less proc.aname): some present value passes."""
    return any(test(v) for v in values if v is not None)
