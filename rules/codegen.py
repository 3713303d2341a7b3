"""Syntax trees for one event type's rules: one function testing them all, read by read.

`bucket_source` builds a function over one event record for the simplified conditions of every
enabled rule of one event type: conjuncts several rules share are tested once in nested ifs,
rules that each need one read to be in some set sit behind one test of the union of those sets
(a necessary condition of each, so a sound prefilter), reads used by several checks become locals
defined in the innermost block that needs them (`resolve`, `place`; helper calls are computed on
first use and kept), and the function returns the earliest matching rule in definition order (or
all matches). Since leaves are pure and never raise (`rules.condtree`), testing rules out of
order and sharing their tests cannot change which rules match; the earliest one is chosen at the
end. `prologue_statements` binds the record locals (`rules.fields.BASES`) for other generated code.

Everything here works on `ast` nodes: which reads become locals, where a local is defined and
which use of it is written in place are decided over the tree (`Read` nodes, statement blocks),
so a user's literal, an `ast.Constant`, is never looked into.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from rules import operators as ops
from rules.affixes import Affixes
from rules.condtree import (
    And,
    Constants,
    Leaf,
    Node,
    Or,
    Values,
    conjuncts,
    cost,
    p_true,
    signature,
    to_expr,
)
from rules.fields import BASE_DEPS, BASES, HELPERS, bases_of
from rules.pyexpr import (
    Code,
    Read,
    and_,
    clone,
    compare,
    const,
    helper_calls,
    name,
    names_in,
    reads_in,
    rewrite,
    set_of,
    simple_read,
    store,
    walk,
)

K = TypeVar("K")
V = TypeVar("V")


def prologue_statements(codes: Sequence[Code]) -> list[ast.stmt]:
    """Statements binding the record locals (`rules.fields.BASES`) the given code reads."""
    needed: set[str] = set()
    for code in codes:
        needed |= bases_of(code)
    assert all(dep in needed for base in needed for dep in BASE_DEPS[base])
    return [_assign(base, BASES[base].tree) for base in BASES if base in needed]  # dependency order


def reader_module(fn_name: str, codes: Sequence[Code]) -> ast.Module:
    """``def fn_name(ev): <record locals>; return (code, ...)``, as a module to compile: every
    value of `codes` for one event (an output template's tokens)."""
    values = ast.Tuple([clone(code.tree) for code in codes], ast.Load())
    body = [*prologue_statements(codes), ast.Return(values)]
    module = ast.Module([ast.FunctionDef(fn_name, arguments_of(["ev"]), body, [], None)], [])
    return ast.fix_missing_locations(module)


def _assign(local: str, value: ast.expr) -> ast.stmt:
    return ast.Assign([store(local)], clone(value))


# --- which reads become locals ----------------------------------------------------------------
@dataclass(slots=True)
class Resolved:
    """What `resolve` decided: the locals to define (name, value; ``_UNSET`` for those computed
    on first use) and, per such local, the expressions computing it on first use."""

    defs: list[tuple[str, ast.expr]] = field(default_factory=list)
    lazy: dict[str, list[ast.expr]] = field(default_factory=dict)


def resolve(body: Sequence[ast.AST], values: Values) -> Resolved:
    """Replace the `Read` nodes of one function's statements (in place) and say which locals
    to define.

    A plain list index read by three or more leaves gets a local; a read that calls a helper, if
    two or more leaves need it, is computed on first use and kept (``_vN``, defined as the
    `_UNSET` sentinel), so nothing runs that the short-circuit would have skipped; so is any
    other compound read (``p[26][:12]`` behind its None test) three or more leaves need; other
    reads stay inline."""
    uses = [0] * len(values.codes)
    reuses = [0] * len(values.codes)
    for root in body:
        for node in reads_in(root):
            if node.first:
                uses[node.index] += 1
            else:
                reuses[node.index] += 1
    out = Resolved()
    first: list[Callable[[], ast.expr]] = []
    again: list[Callable[[], ast.expr]] = []
    for n, code in enumerate(values.codes):
        local = f"_v{n}"
        tree = code.tree
        if simple_read(tree):
            if uses[n] >= 3:
                out.defs.append((local, tree))
                first.append(_local(local))
            else:
                first.append(_copy(tree))
            again.append(first[-1])
        elif uses[n] >= 2 and helper_calls(tree) or uses[n] >= 3:
            out.defs.append((local, name("_UNSET")))
            first.append(_lazy(local, tree, out.lazy.setdefault(local, [])))
            again.append(_local(local))
        elif reuses[n] == 0:  # read once, never read again: no local at all
            first.append(_copy(tree))
            again.append(_local(local))
        else:
            first.append(_bind(local, tree))
            again.append(_local(local))
    def replace(node: ast.AST) -> ast.expr | None:
        if isinstance(node, Read):
            return (first if node.first else again)[node.index]()
        return None

    for root in body:
        rewrite(root, replace)
    return out


def _local(local: str) -> Callable[[], ast.expr]:
    return lambda: name(local)


def _copy(tree: ast.expr) -> Callable[[], ast.expr]:
    return lambda: clone(tree)


def _bind(local: str, tree: ast.expr) -> Callable[[], ast.expr]:
    return lambda: ast.NamedExpr(store(local), clone(tree))


def _lazy(local: str, tree: ast.expr, made: list[ast.expr]) -> Callable[[], ast.expr]:
    """``(_vN if _vN is not _UNSET else (_vN := read))``, remembered so `place` can find it."""

    def make() -> ast.expr:
        computed = ast.NamedExpr(store(local), clone(tree))
        node = ast.IfExp(compare(name(local), ast.IsNot(), name("_UNSET")), name(local), computed)
        made.append(node)
        return node

    return make


# --- where locals are defined -----------------------------------------------------------------
Block = list[ast.stmt]


@dataclass(frozen=True, slots=True)
class _Site:
    """A statement, whose own code is an if's test (not its body) or the whole simple statement,
    with the blocks from the function's body down to the one holding it (`blocks[-1]`)."""

    stmt: ast.stmt
    path: tuple[int, ...]  # ids of the enclosing blocks, outermost first
    blocks: tuple[Block, ...]

    def own(self) -> list[ast.AST]:
        if isinstance(self.stmt, ast.If):
            return [self.stmt.test]
        return [self.stmt]


def _sites(block: Block, outer: tuple[Block, ...] = ()) -> Iterator[_Site]:
    blocks = (*outer, block)
    for stmt in block:
        yield _Site(stmt, tuple(id(b) for b in blocks), blocks)
        if isinstance(stmt, ast.If):
            yield from _sites(stmt.body, blocks)
            if stmt.orelse:
                yield from _sites(stmt.orelse, blocks)


class _Names:
    """How often each name occurs in each statement's own code, counted once per statement and
    again only after a statement changes."""

    def __init__(self) -> None:
        self._counts: dict[int, tuple[ast.stmt, dict[str, int]]] = {}

    def count(self, site: _Site, local: str) -> int:
        known = self._counts.get(id(site.stmt))
        if known is None or known[0] is not site.stmt:
            counts: dict[str, int] = {}
            for node in names_in(site.own()):
                counts[node.id] = counts.get(node.id, 0) + 1
            known = self._counts[id(site.stmt)] = (site.stmt, counts)
        return known[1].get(local, 0)

    def changed(self, site: _Site) -> None:
        self._counts.pop(id(site.stmt), None)


def place(body: Block, resolved: Resolved) -> None:
    """Insert (in place) each definition at the start of the innermost block holding all its
    uses, so a branch the event never enters costs nothing; then the record locals (`BASES`)
    the result needs, the same way. A name only used inside several top-level blocks is defined
    in each of them rather than once before them all: reads are pure, so an event entering two
    such blocks reads twice, and one entering none (the usual event) reads nothing."""
    ordered = [*resolved.defs, *((base, BASES[base].tree) for base in reversed(list(BASES)))]
    names = _Names()
    for local, value in ordered:
        used = [site for site in _sites(body) if names.count(site, local)]
        if not used:
            continue
        groups: dict[int | None, list[_Site]] = {}
        for site in used:
            top = None if len(site.blocks) == 1 else id(site.blocks[1])
            groups.setdefault(top, []).append(site)
        top_sites = groups.pop(None, None)
        lazy = resolved.lazy.get(local, [])
        if top_sites is not None and not _inline_once(top_sites, local, value, lazy, names):
            groups = {None: used}  # used at the top level: one definition before everything
        for group in groups.values():
            _innermost(group).insert(0, _assign(local, value))


def _innermost(sites: Sequence[_Site]) -> Block:
    """The innermost block holding every site."""
    depth = 0
    shortest = min(len(site.path) for site in sites)
    while depth + 1 < shortest and len({site.path[depth + 1] for site in sites}) == 1:
        depth += 1
    return sites[0].blocks[depth]


def _inline_once(
    top: Sequence[_Site], local: str, value: ast.expr, lazy: Sequence[ast.expr], names: _Names
) -> bool:
    """Write a read into the one top-level statement that uses it, instead of defining it before
    every event's first test: that statement usually short-circuits before reaching it. Applies
    to a plain read (a list index, a record local) used at most twice there, and to a
    computed-once read (``_UNSET``) used once there. False (nothing changed) when it does not
    apply."""
    if len(top) != 1:
        return False
    site = top[0]
    count = names.count(site, local)
    if isinstance(value, ast.Name) and value.id == "_UNSET":
        mine = {id(node) for node in lazy}
        found = [node for node in walk(site.own()) if id(node) in mine]
        if count != 3 or len(found) != 1:
            return False
        target = found[0]
        assert isinstance(target, ast.IfExp) and isinstance(target.orelse, ast.NamedExpr)
        computed = target.orelse.value
        _substitute(site, lambda node: computed if node is target else None)
        names.changed(site)
        return True
    plain = simple_read(value)
    if not (plain or local in BASES) or count > (2 if plain else 1):
        return False
    _substitute(site, lambda node: clone(value) if isinstance(node, ast.Name) and node.id == local else None)
    names.changed(site)
    return True


def _substitute(site: _Site, replace: Callable[[ast.AST], ast.expr | None]) -> None:
    """Rewrite the site's own code (an if's test, or the whole simple statement)."""
    if isinstance(site.stmt, ast.If):
        site.stmt.test = rewrite(site.stmt.test, replace)
    else:
        rewrite(site.stmt, replace)


@dataclass(slots=True)
class _Pending:
    position: int  # the rule's place in this function's definition order
    rest: dict[str, Node]  # conjuncts still to test, by signature


@dataclass(slots=True)
class _Guards:
    """What choosing guards needs beyond the rules: the function's reads (to name an affix
    prefilter's read) and the ruleset's constants (to hold its program)."""

    values: Values
    constants: Constants

    def affix_guard(self, read: Code, affixes: Affixes) -> ast.expr:
        if affixes.size() == len(affixes.exact):  # equality only: a set test needs no call
            return compare(self.values.read(read), ast.In(), set_of(sorted(affixes.exact)))
        exact, prefixes = tuple(sorted(affixes.exact)), tuple(sorted(affixes.prefixes))
        suffixes, contains = tuple(sorted(affixes.suffixes)), tuple(sorted(affixes.contains))
        tests = (exact, prefixes, suffixes, contains)
        rendered = _rendered(read.tree)
        if rendered is not None:
            # a parameter's text (evt.arg.flags) is a function of its raw value: remember the
            # answer per raw value, so neither the rendering nor the tests run again
            helper, raw = rendered
            render = cast(Callable[[Any], "str | None"], HELPERS[helper])
            key = ("affixes", helper, *tests)
            program = self.constants.add(key, lambda: ops.affix_program(*tests, transform=render))
            return ast.Subscript(name(program), self.values.read(Code(raw)), ast.Load())
        program = self.constants.add(("affixes", *tests), lambda: ops.affix_program(*tests))
        return ast.Subscript(name(program), self.values.read(read), ast.Load())


def _rendered(tree: ast.expr) -> tuple[str, ast.expr] | None:
    """(helper, raw read) for a parameter's text rendered from its raw value, ``_txt3_1(a[1])``."""
    if (
        isinstance(tree, ast.Call) and isinstance(tree.func, ast.Name) and tree.func.id.startswith("_txt")
        and tree.func.id in HELPERS and len(tree.args) == 1 and not tree.keywords
        and simple_read(tree.args[0]) and cast(ast.Name, cast(ast.Subscript, tree.args[0]).value).id == "a"
    ):
        return tree.func.id, tree.args[0]
    return None


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


@dataclass(frozen=True, slots=True)
class _Guard:
    """A test several pending rules share: the test, the rules (by index), and what it consumes:
    a shared conjunct (by signature), or a read it keys on (by number)."""

    test: ast.expr
    members: list[int]
    conjunct: str | None = None
    read: int | None = None


def _guard_candidates(items: Sequence[_Pending], used: frozenset[int], guards: _Guards) -> _Guard | None:
    """The test that rules out the most pending rules on a typical event: a conjunct several
    rules share (exact), "read in the union of their value sets" for rules that each require the
    same read to be in some set, or "read passes the union of their affixes" for rules that each
    require affixes of the same string read (both necessary conditions, so sound prefilters).
    A test covering n rules that holds with guessed chance p is worth n * (1 - p)."""
    shared: dict[str, list[int]] = {}
    keyed: dict[int, tuple[list[int], list[object], list[float]]] = {}
    affixed: dict[Code, tuple[list[int], list[Affixes], list[float]]] = {}
    for i, item in enumerate(items):
        for sig, node in item.rest.items():
            shared.setdefault(sig, []).append(i)
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
        required: dict[Code, tuple[float, Affixes]] = {}
        for node in item.rest.values():
            p = p_true(node)
            for code, affixes in affixes_of(node).items():
                if p <= _AFFIX_P_MAX and guards.values.ref(code) not in used:
                    required.setdefault(code, (min(p, _AFFIX_P), affixes))
        if required:
            code = min(required, key=lambda r: required[r][1].size())
            members, found, ps = affixed.setdefault(code, ([], [], []))
            members.append(i)
            found.append(required[code][1])
            ps.append(required[code][0])
    best: _Guard | None = None
    best_rank: tuple[float, int, float] = (0.0, 0, 0.0)
    for sig, members in shared.items():
        if len(members) < 2:
            continue
        node = items[members[0]].rest[sig]
        rank = (len(members) * (1 - p_true(node)), 1, -cost(node))
        if rank > best_rank:
            best, best_rank = _Guard(to_expr(node), members, conjunct=sig), rank
    for index, (members, union, ps) in keyed.items():
        if len(members) < 2:
            continue
        rank = (len(members) * (1 - _union_p(ps)), 0, 0.0)
        if rank > best_rank:
            keyed_test: ast.expr = compare(Read(index, True), ast.In(), set_of(union))
            best, best_rank = _Guard(keyed_test, members, read=index), rank
    for code, (members, found, ps) in affixed.items():
        if len(members) < 2:
            continue
        rank = (len(members) * (1 - _union_p(ps)), -1, 0.0)
        if rank > best_rank:
            affix_test = guards.affix_guard(code, Affixes.union(found))
            best, best_rank = _Guard(affix_test, members, read=guards.values.ref(code)), rank
    return best


def affixes_of(node: Node) -> dict[Code, Affixes]:
    """Necessary affix conditions of `node` by string read: a leaf's own, the first conjunct's of
    an and, and for an or the union of its branches' on each read all of them constrain."""
    return requirements(node, _leaf_affixes, lambda kept, _: kept, Affixes.union)


def _leaf_affixes(node: Node) -> dict[Code, Affixes]:
    found = node.required_affixes() if isinstance(node, Leaf) else None
    return {} if found is None else {found[0]: found[1]}


def requirements(
    node: Node,
    of_leaf: Callable[[Node], Mapping[K, V]],
    both: Callable[[V, V], V],
    either: Callable[[Sequence[V]], V],
) -> dict[K, V]:
    """Necessary conditions of `node` by key (a read, a property of the event): what `of_leaf`
    says of a leaf (it is also given a not, a constant, which it may say nothing of), for an and
    what its conjuncts say, combined by `both` where several say something of one key, and for an
    or, on each key every branch constrains, `either` of the branches' (a branch silent on a key
    leaves it free). Sound whenever `of_leaf` is: each result holds whenever `node` does."""
    if isinstance(node, And):
        out: dict[K, V] = {}
        for child in node.children:
            for key, found in requirements(child, of_leaf, both, either).items():
                out[key] = both(out[key], found) if key in out else found
        return out
    if isinstance(node, Or):
        branches = [requirements(child, of_leaf, both, either) for child in node.children]
        common = set(branches[0]).intersection(*branches[1:]) if branches else set()
        return {key: either([branch[key] for branch in branches]) for key in common}
    return dict(of_leaf(node))


def _key_of(node: Node) -> tuple[int, tuple[object, ...]] | None:
    """A necessary "read in values" condition of `node`, if it has one: a keyed leaf, any keyed
    conjunct of an and, or the union over an or whose every branch is keyed on the same read."""
    if isinstance(node, Leaf):
        return node.key
    if isinstance(node, And):
        keys = [k for k in map(_key_of, node.children) if k is not None]
        return min(keys, key=lambda k: len(k[1])) if keys else None
    if isinstance(node, Or):
        found = []
        for child in node.children:
            key = _key_of(child)
            if key is None:
                return None
            found.append(key)
        if len({read for read, _ in found}) != 1:
            return None
        return found[0][0], tuple(v for _, values in found for v in values)
    return None


def _factored(
    items: list[_Pending], hit: Callable[[int], ast.stmt], guards: _Guards, used: frozenset[int] = frozenset()
) -> list[ast.stmt]:
    """Nested ifs testing each shared conjunct once for all the rules that need it."""
    out: list[ast.stmt] = []
    while items:
        guard = _guard_candidates(items, used, guards)
        if guard is None:
            for item in items:
                ordered = sorted(item.rest.values(), key=lambda c: cost(c) / max(1e-3, 1 - p_true(c)))
                if ordered:
                    out.append(ast.If(and_([to_expr(c) for c in ordered]), [hit(item.position)], []))
                else:
                    out.append(hit(item.position))
            break
        inside = []
        for i in guard.members:
            rest = dict(items[i].rest)
            if guard.conjunct is not None:
                del rest[guard.conjunct]
            inside.append(_Pending(items[i].position, rest))
        inner_used = used if guard.read is None else used | {guard.read}
        out.append(ast.If(guard.test, _factored(inside, hit, guards, inner_used), []))
        chosen = set(guard.members)
        items = [item for i, item in enumerate(items) if i not in chosen]
    return out


@dataclass(frozen=True, slots=True, eq=False)
class Bucket:
    """One event type's generated code: the function, the tuple of rule globals it indexes
    (`table`), and its parts for inlining into the batch loop (`body`, the statements at function
    level, `helpers` they read, the `count` of rules: ``_m == count`` means no match). `source`
    prints the function."""

    function: ast.FunctionDef
    table: ast.expr
    body: tuple[ast.stmt, ...]
    helpers: tuple[str, ...]
    count: int

    @property
    def source(self) -> str:
        return ast.unparse(ast.fix_missing_locations(self.function)) + "\n"


def _hit_first(i: int) -> ast.stmt:
    """``if i < _m: _m = i``."""
    return ast.If(compare(const(i), ast.Lt(), name("_m")), [ast.Assign([store("_m")], const(i))], [])


def _hit_all(i: int) -> ast.stmt:
    """``_hits.append(i)``."""
    return ast.Expr(ast.Call(ast.Attribute(name("_hits"), "append", ast.Load()), [const(i)], []))


def bucket_source(
    fn_name: str, rules: Sequence[tuple[str, Node]], values: Values, constants: Constants, all_matches: bool
) -> Bucket:
    """A function over one event of one type, and the tuple of its rules it indexes into.

    `rules` are (rule global, simplified condition) in definition order. Every rule is tested
    (shared conjuncts once, in nested ifs) and the function returns the earliest matching rule,
    or with `all_matches` every match in definition order: on the events that dominate, those
    matching nothing, every rule has to be ruled out anyway, so testing in any order costs
    nothing and lets rules share their tests."""
    items = [_Pending(i, {signature(c): c for c in conjuncts(tree)}) for i, (_, tree) in enumerate(rules)]
    count = len(rules)
    guards = _Guards(values, constants)
    if all_matches:
        tests = _factored(items, _hit_all, guards)
        head: list[ast.stmt] = [ast.Assign([store("_hits")], ast.List([], ast.Load()))]
        rules_of_hits = ast.ListComp(
            ast.Subscript(name("_RULES"), name("_i"), ast.Load()),
            [ast.comprehension(store("_i"), name("_hits"), [], 0)],
        )
        tail: list[ast.stmt] = [
            ast.Expr(ast.Call(ast.Attribute(name("_hits"), "sort", ast.Load()), [], [])),
            ast.Return(rules_of_hits),
        ]
    else:
        tests = _factored(items, _hit_first, guards)
        head = [ast.Assign([store("_m")], const(count))]
        tail = [ast.Return(ast.Subscript(name("_RULES"), name("_m"), ast.Load()))]
    resolved = resolve(tests, values)
    body = [*head, *tests]
    place(body, resolved)
    # Helpers and constants become default arguments: a local read is cheaper than a global one.
    helpers = tuple(sorted(_globals(body)))
    params = ["ev", "_RULES", *helpers]
    function = ast.FunctionDef(fn_name, arguments_of(params), [*body, *tail], [], None)
    elements: list[ast.expr] = [name(rule) for rule, _ in rules]
    if not all_matches:
        elements.append(const(None))
    table = ast.Tuple(elements, ast.Load())
    return Bucket(function, table, tuple(body), helpers, count)


def condition_function(fn_name: str, tree: Node, values: Values) -> ast.Module:
    """``def fn_name(ev): return <tree>``, reads resolved and placed as in a bucket's function,
    as a module to compile: one condition alone (tests compare it with the shared functions)."""
    body: Block = [ast.Return(to_expr(tree))]
    place(body, resolve(body, values))
    module = ast.Module([ast.FunctionDef(fn_name, arguments_of(["ev"]), body, [], None)], [])
    return ast.fix_missing_locations(module)


def arguments_of(params: Sequence[str]) -> ast.arguments:
    """``(first, name=name, ...)``: every parameter after the first defaults to the global of
    its name."""
    return ast.arguments([], [ast.arg(p) for p in params], None, [], [], None, [name(p) for p in params[1:]])


def _globals(body: Sequence[ast.stmt]) -> set[str]:
    """The module names (helpers, constants) statements read: underscored names they load and
    never bind."""
    loaded: set[str] = set()
    bound: set[str] = set()
    for stmt in body:
        for node in walk(stmt):
            if isinstance(node, ast.Name):
                (loaded if isinstance(node.ctx, ast.Load) else bound).add(node.id)
            elif isinstance(node, ast.arg):
                bound.add(node.arg)
    return {ident for ident in loaded - bound if ident.startswith("_")}


class _Unset:
    """The value of a cached read not computed yet (None is a real value: "missing")."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "UNSET"


UNSET = _Unset()


def any_present(values: Sequence[object], test: Callable[[object], bool]) -> bool:
    """A check on a multi-valued field (fd.ip, index-less proc.aname): some present value passes."""
    return any(test(v) for v in values if v is not None)
