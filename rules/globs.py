"""Byte-wise glob matching and ASCII case folding, as libs gets them from C in the C locale.

libs matches ``glob``/``iglob`` with glibc ``fnmatch(3)`` (flags 0 or ``FNM_CASEFOLD``) and folds case
with ``tolower``/``toupper``/``strcasestr``: all byte-wise, ASCII only. Python's own ``fnmatch``
treats ``\\`` as a literal, does not negate ``[^...]`` and folds Unicode; ``str.lower`` folds ``É``
and turns ``ß`` into ``SS``. Strings reach the engine as ``str`` holding the UTF-8 text, invalid
bytes as surrogate escapes, so a pattern is compiled to a *bytes* regex and values are matched as
their bytes: ``?`` is one byte, as for libs.

The pattern language (glibc): ``*`` any run, ``/`` included (no ``FNM_PATHNAME``); ``?`` one byte;
``[...]`` a set where ``!`` or ``^`` first negates, ``]`` first is literal, ``a-z`` ranges and
``[:class:]`` names; ``\\`` quotes the next byte; a ``[`` that never closes is literal; a pattern
ending in an unquoted ``\\`` matches nothing.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Final

_LOWER: Final = {c: c + 32 for c in range(ord("A"), ord("Z") + 1)}
_UPPER: Final = {c + 32: c for c in range(ord("A"), ord("Z") + 1)}
# POSIX classes in the C locale, as regex class bodies over bytes
_CLASSES: Final = {
    "alpha": rb"A-Za-z", "digit": rb"0-9", "alnum": rb"A-Za-z0-9", "upper": rb"A-Z", "lower": rb"a-z",
    "space": rb" \t\n\r\x0b\x0c", "blank": rb" \t", "xdigit": rb"0-9A-Fa-f",
    "punct": rb"!-/:-@\[-`{-~", "cntrl": rb"\x00-\x1f\x7f", "print": rb"\x20-\x7e", "graph": rb"\x21-\x7e",
}  # fmt: skip


def ascii_lower(text: str) -> str:
    """``tolower`` byte by byte: A-Z only (surrogate escapes and non-ASCII letters stay)."""
    return text.translate(_LOWER)


def ascii_upper(text: str) -> str:
    return text.translate(_UPPER)


def to_bytes(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def glob_matcher(pattern: str, *, casefold: bool = False) -> Callable[[str], bool]:
    """A test of whole values against `pattern`, byte-wise (see the module docstring)."""
    source = _translate(to_bytes(pattern))
    if source is None:
        return lambda value: False
    # IGNORECASE on a bytes pattern folds ASCII letters only, as FNM_CASEFOLD in the C locale
    match = re.compile(source, re.DOTALL | (re.IGNORECASE if casefold else 0)).fullmatch

    def test(value: str) -> bool:
        return match(to_bytes(value)) is not None

    return test


def _translate(pattern: bytes) -> bytes | None:
    parts: list[bytes] = []
    at, end = 0, len(pattern)
    while at < end:
        byte = pattern[at]
        at += 1
        if byte == 0x2A:  # *
            parts.append(b".*")
        elif byte == 0x3F:  # ?
            parts.append(b".")
        elif byte == 0x5C:  # backslash: the next byte, literally
            if at == end:
                return None
            parts.append(_literal(pattern[at]))
            at += 1
        elif byte == 0x5B:  # [
            found = _set(pattern, at)
            if found is None:
                parts.append(_literal(byte))
            else:
                body, at = found
                parts.append(body)
        else:
            parts.append(_literal(byte))
    return b"".join(parts)


def _set(pattern: bytes, at: int) -> tuple[bytes, int] | None:
    """The regex class of the set opened just before `at`, and where the pattern resumes."""
    end = len(pattern)
    negated = at < end and pattern[at] in b"!^"
    at += negated
    members: list[bytes] = []
    start = at
    while at < end:
        byte = pattern[at]
        if byte == 0x5D and at > start:  # ] closes, except as the first member
            inner = b"".join(members)
            return (b"[^" + inner + b"]" if negated else b"[" + inner + b"]"), at + 1
        if pattern.startswith(b"[:", at):
            close = pattern.find(b":]", at + 2)
            name = pattern[at + 2 : close].decode("ascii", "replace") if close != -1 else ""
            if name in _CLASSES:
                members.append(_CLASSES[name])
                at = close + 2
                continue
        if byte == 0x5C and at + 1 < end:
            at += 1
            byte = pattern[at]
        at += 1
        if at + 1 < end and pattern[at] == 0x2D and pattern[at + 1] != 0x5D:  # a range low-high
            high = pattern[at + 1]
            at += 2
            if high == 0x5C and at < end:
                high = pattern[at]
                at += 1
            if high >= byte:
                members.append(_member(byte) + b"-" + _member(high))
            continue
        members.append(_member(byte))
    return None


def _literal(byte: int) -> bytes:
    return re.escape(bytes([byte]))


def _member(byte: int) -> bytes:
    return b"\\x%02x" % byte
