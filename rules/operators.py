"""The operator table: which field types allow which operator, and the code each compiles to.

One row per operator (libs' ``cmpop``). ``types`` is the set of type families the operator accepts
(libs' ``flt_is_comparable``); ``body`` builds from a present left value ``t`` and a right operand ``r``
(a constant, a constant's name, or a present right-hand field value) a boolean expression node. The
compiler wraps every body in a presence test, so a missing left value makes every operator false,
``!=`` included (libs' ``compare_nocache``). Constants that need work at load time (sets, glob and
regex programs, path-prefix tables, networks) are built here by ``prepare`` and named by the
compiler; nothing is interpreted per event.

``regex`` is RE2 itself (the ``google-re2`` binding), with the options libs compiles it with
(``RE2::POSIX``: POSIX syntax, leftmost-longest) and anchored at both ends, so a pattern Falco
refuses (lookahead, backreferences, ``\\d``, ``(?i)``) is refused here with RE2's own message.
"""

from __future__ import annotations

import ast
import ipaddress
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import re2  # type: ignore[import-untyped]  # the binding ships no type information

from rules.fields import FieldType
from rules.globs import glob_matcher
from rules.pyexpr import call, compare, const, is_not_none, method

Body = Callable[[ast.expr, ast.expr], ast.expr]

NUMERIC, BOOL, STRING, BUFFER, IP, LIST, DNS = "numeric", "bool", "string", "buffer", "ip", "list", "dns"
_ALL = frozenset({NUMERIC, BOOL, STRING, BUFFER, IP, LIST, DNS})


def family(ftype: FieldType, is_list: bool = False) -> str:
    """The operator-typing family of a field type (libs' groups in flt_is_comparable)."""
    if is_list:
        return LIST
    if ftype in (FieldType.CHARBUF, FieldType.FSPATH):
        return STRING
    if ftype is FieldType.BOOL:
        return BOOL
    if ftype is FieldType.BYTEBUF:
        return BUFFER
    if ftype in (FieldType.IPADDR, FieldType.IPNET):
        return IP
    return NUMERIC


@dataclass(frozen=True, slots=True)
class Operator:
    name: str
    types: frozenset[str]
    rhs: str  # "value", "list" or "none"
    body: Body
    cost: int  # rough relative cost, to order the children of and/or (cheap first)
    modifiable: bool = False  # accepts oneof/anyof/allof
    rhs_field: bool = True  # a val()/transformer right-hand side is allowed


def _compare(op: type[ast.cmpop]) -> Body:
    return lambda t, r: compare(t, op(), r)


def _contains(t: ast.expr, r: ast.expr) -> ast.expr:
    return compare(r, ast.In(), t)


def ascii_folded(t: ast.expr) -> ast.expr:
    """``t``'s bytes with ASCII letters lowered: what strcasestr compares (bytes.lower() folds ASCII
    only; the right-hand side is folded the same way)."""
    return method(method(t, "encode", const("utf-8"), const("surrogateescape")), "lower")


def _icontains(t: ast.expr, r: ast.expr) -> ast.expr:
    return compare(r, ast.In(), ascii_folded(t))


def _method(attr: str) -> Body:
    return lambda t, r: method(t, attr, r)


def _program(t: ast.expr, r: ast.expr) -> ast.expr:
    return is_not_none(call(r, t))


OPERATORS: dict[str, Operator] = {
    op.name: op
    for op in (
        Operator("=", _ALL - {LIST}, "value", _compare(ast.Eq), 1, modifiable=True),
        Operator("==", _ALL - {LIST}, "value", _compare(ast.Eq), 1, modifiable=True),
        Operator("!=", _ALL - {LIST}, "value", _compare(ast.NotEq), 1, modifiable=True),
        Operator("<", frozenset({NUMERIC, STRING}), "value", _compare(ast.Lt), 1),
        Operator("<=", frozenset({NUMERIC, STRING}), "value", _compare(ast.LtE), 1),
        Operator(">", frozenset({NUMERIC, STRING}), "value", _compare(ast.Gt), 1),
        Operator(">=", frozenset({NUMERIC, STRING}), "value", _compare(ast.GtE), 1),
        Operator("contains", frozenset({STRING, BUFFER}), "value", _contains, 2, modifiable=True),
        Operator("icontains", frozenset({STRING}), "value", _icontains, 3, modifiable=True),
        Operator("bcontains", frozenset({BUFFER}), "value", _contains, 2, True, False),
        Operator("startswith", frozenset({STRING, BUFFER}), "value", _method("startswith"), 2, True),
        Operator("bstartswith", frozenset({BUFFER}), "value", _method("startswith"), 2, True, False),
        Operator("endswith", frozenset({STRING, BUFFER}), "value", _method("endswith"), 2, True),
        Operator("glob", frozenset({STRING}), "value", _program, 5, True, False),
        Operator("iglob", frozenset({STRING}), "value", _program, 5, True, False),
        Operator("regex", frozenset({STRING}), "value", _program, 6, True, False),
        Operator("in", _ALL, "list", _compare(ast.In), 1),
        Operator("intersects", _ALL, "list", _compare(ast.In), 1),
        Operator("pmatch", frozenset({STRING}), "list", lambda t, r: call(r, t), 4, rhs_field=False),
        Operator("exists", _ALL, "none", lambda t, r: const(True), 1),
    )
}

# Operators whose comparison against the given literal is already false on None, so the
# compiler can skip the presence test: ``x == 'a'`` and ``x in {'a'}`` never hold for None.
NONE_SAFE = frozenset({"=", "==", "in", "intersects"})
MODIFIERS = frozenset({"oneof", "anyof", "allof"})
# IP families accept equality and membership only (the fd.*ip.name lookups likewise).
_IP_OPS = frozenset({"=", "==", "!=", "in", "intersects", "exists"})
_DNS_OPS = frozenset({"=", "==", "!=", "in", "exists"})


def allowed(op: str, fam: str) -> bool:
    """Whether `op` may compare a field of family `fam` (libs' flt_is_comparable)."""
    row = OPERATORS.get(op)
    if row is None or fam not in row.types:
        return False
    if fam == IP:
        return op in _IP_OPS
    if fam == DNS:
        return op in _DNS_OPS
    if fam == LIST:
        return op in ("in", "intersects", "exists")
    if fam == BOOL:
        return op in ("=", "==", "!=", "in", "intersects", "exists")
    if fam == BUFFER:
        return op not in ("icontains", "glob", "iglob", "regex", "pmatch", "<", "<=", ">", ">=")
    return True


# --- constants built once at load time -------------------------------------------------------
def glob_program(pattern: str, casefold: bool) -> Callable[[str], object]:
    """fnmatch(3) in the C locale (`rules.globs`); the generated code tests for not None."""
    test = glob_matcher(pattern, casefold=casefold)
    return lambda value: True if test(value) else None


def glob_affixes(pattern: str) -> tuple[str, str]:
    """Literal text every match of a glob pattern starts and ends with (cheap tests to run
    before the program). The suffix is only derived for patterns without brackets or escapes."""
    specials = [i for i, ch in enumerate(pattern) if ch in "*?[\\"]
    if not specials:
        return pattern, ""
    prefix = pattern[: specials[0]]
    if "[" in pattern or "\\" in pattern:
        return prefix, ""
    return prefix, pattern[specials[-1] + 1 :]


def substring_program(texts: tuple[str, ...]) -> Callable[[str], object]:
    """One search for any of several substrings (an or of contains), run in C."""
    return re.compile("|".join(re.escape(t) for t in texts), re.DOTALL).search


class Memo(dict[Any, Any]):
    """A pure test's answers per value, computed on first use: generated code asks
    ``memo[value]``, so a value seen before costs one dictionary lookup in C and no Python call.
    Bounded: when full it starts over (node paths, names and peers repeat, a few do not)."""

    __slots__ = ("_test", "_limit")

    def __init__(self, test: Callable[[Any], Any], limit: int = 4096) -> None:
        super().__init__()
        self._test = test
        self._limit = limit

    def __missing__(self, value: Any) -> Any:
        answer = self._test(value)
        if len(self) >= self._limit:
            self.clear()
        self[value] = answer
        return answer


def affix_program(
    exact: Iterable[str], prefixes: Iterable[str], suffixes: Iterable[str], contains: Iterable[str],
    transform: Callable[[Any], str | None] | None = None,
) -> Memo:
    """Whether a value could pass any of many affix tests, as a `Memo`: a prefilter
    (`rules.codegen`). False on None. With `transform` (a pure function such as a flags
    parameter's rendering) the tests apply to ``transform(value)``, remembered per `value`."""
    exact_set, pre, suf = frozenset(exact), tuple(sorted(prefixes)), tuple(sorted(suffixes))
    search = substring_program(tuple(sorted(contains))) if contains else None

    def could_match(value: Any) -> bool:
        text = value if transform is None or value is None else transform(value)
        return text is not None and (
            text in exact_set or text.startswith(pre) or text.endswith(suf)
            or (search is not None and search(text) is not None)
        )

    return Memo(could_match)


def regex_may_be_simpler(pattern: str) -> bool:
    """libs' heuristic (filter.cpp check_warnings_regex_value): no regex special character but a
    leading ``^``, a trailing ``$``, or ``.*``/``.+``/``.?`` at the very start or end."""
    n = len(pattern)
    i = 0
    while i < n:
        ch = pattern[i]
        if (i == 0 and ch == "^") or (i == n - 1 and ch == "$"):
            i += 1
            continue
        if ((i == 0 and n > 1) or i == n - 2) and ch == "." and pattern[i + 1] in "+*?":
            i += 2
            continue
        if ch in ".+*?^$()[]{}|\\":
            return False
        i += 1
    return True


def _re2_options() -> Any:
    """libs' ``re2::RE2::POSIX`` (sinsp_filtercheck.cpp, add_filter_value): POSIX syntax and
    leftmost-longest; RE2's own logging off, since the error reaches the user as a LoadError."""
    options = re2.Options()
    options.posix_syntax = True
    options.longest_match = True
    options.log_errors = False
    return options


def regex_program(pattern: str) -> Callable[[str], object]:
    """Anchored at both ends, as libs runs RE2 (``ANCHOR_BOTH``); ValueError with RE2's message for
    a pattern RE2 refuses.

    libs first replaces invalid UTF-8 in the tested value with U+FFFD (maximal subparts,
    ``utf8::sanitize_with_lazy_storage``); record text holds such bytes as surrogate escapes,
    which the binding cannot encode, so only then is the value decoded again with ``replace``,
    which follows the same maximal-subpart rule."""
    try:
        fullmatch = re2.compile(pattern, _re2_options()).fullmatch
    except re2.error as exc:
        (reason,) = exc.args  # RE2's error text, as bytes
        raise ValueError(reason.decode(errors="replace")) from None

    def test(text: str) -> object:
        try:
            return fullmatch(text)
        except UnicodeEncodeError:
            return fullmatch(text.encode("utf-8", "surrogateescape").decode("utf-8", "replace"))

    return test


def pmatch_program(paths: Iterable[str]) -> Callable[[str], bool]:
    """Path-prefix match by whole components, as libs' path_prefix_search: a path is its
    non-empty components (``/a//b`` and ``a/b`` are both a, b), so ``/`` (no component) is a
    prefix of every value, and /var/run matches /var/run and /var/run/x, not /var/runx. Plain
    prefixes are one set lookup per leading run of the value's components; prefixes with glob
    characters in a component are matched component by component."""
    plain: set[tuple[str, ...]] = set()
    globbed: list[list[Callable[[str], bool]]] = []
    for path in paths:
        parts = _components(path)
        if any(ch in path for ch in "*?["):
            globbed.append([glob_matcher(part) for part in parts])
        else:
            plain.add(parts)
    if () in plain:
        return lambda value: True
    lengths = sorted({len(p) for p in plain})

    def test(value: str) -> bool:
        parts = _components(value)
        if any(parts[:n] in plain for n in lengths if n <= len(parts)):
            return True
        return any(
            len(parts) >= len(matchers) and all(m(p) for m, p in zip(matchers, parts, strict=False))
            for matchers in globbed
        )

    return test


def _components(path: str) -> tuple[str, ...]:
    return tuple(part for part in path.split("/") if part)


def net_program(nets: Iterable[str]) -> Memo:
    """Whether an IP text lies in one of the networks, as a `Memo` (parsing an address costs
    microseconds; a node talks to few distinct peers). Addresses of another family never do."""
    networks = [ipaddress.ip_network(n, strict=False) for n in nets]

    def inside(value: str) -> bool:
        try:
            addr = ipaddress.ip_address(value)
        except ValueError:
            return False
        return any(addr.version == n.version and addr in n for n in networks)

    return Memo(inside, limit=65536)


def hex_bytes(text: str) -> bytes:
    """bcontains/bstartswith literal: an even-length hex string (ValueError otherwise)."""
    if len(text) % 2 or not re.fullmatch(r"[0-9a-fA-F]*", text):
        raise ValueError("bcontains and bstartswith operator support hex strings only")
    return bytes.fromhex(text)
