"""Field transformers (libs' ``sinsp_filter_transformers``): one row each, with its type change.

A transformer wraps values in a condition or an output: ``tolower(proc.name) = bash``. Each row
says which input type families it accepts, the type it produces, and the helper the generated
code calls. Every helper returns None for a missing input, so missing values stay missing.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from rules.fields import FieldType
from rules.globs import ascii_lower, ascii_upper, to_bytes

STRING_IN = frozenset({FieldType.CHARBUF, FieldType.FSPATH})


@dataclass(frozen=True, slots=True)
class Transformer:
    name: str
    inputs: frozenset[FieldType] | None  # None: special argument shapes (join, concat, getopt)
    output: Callable[[FieldType], FieldType]
    helper: str  # name of the function in HELPERS the generated code calls
    accepts_lists: bool = False


# libs maps each byte with C's tolower/toupper: ASCII letters only (bytes.lower() does the same)
def _lower(value: str | bytes | None) -> str | bytes | None:
    if value is None:
        return None
    return ascii_lower(value) if isinstance(value, str) else value.lower()


def _upper(value: str | bytes | None) -> str | bytes | None:
    if value is None:
        return None
    return ascii_upper(value) if isinstance(value, str) else value.upper()


_B64: Final = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")


def _b64(value: str | bytes | None) -> str | bytes | None:
    """libs Base64::decodeWithoutPadding: at most two trailing ``=`` dropped, every other byte in
    the alphabet, no length of 4n+1, and the bits of the last character beyond the output zero;
    otherwise no value. A string yields the decoded bytes as a string of those bytes (invalid
    UTF-8 as surrogate escapes, as every string of the engine)."""
    if value is None:
        return None
    raw = to_bytes(value) if isinstance(value, str) else value
    body = raw[:-2] if raw.endswith(b"==") else raw[:-1] if raw.endswith(b"=") else raw
    if len(body) % 4 == 1 or not _B64.issuperset(body):
        return None
    padded = body + b"=" * (-len(body) % 4)
    try:
        decoded = base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError):
        return None
    if base64.b64encode(decoded) != padded:  # spare bits set in the last character (decodeLast)
        return None
    return decoded.decode("utf-8", "surrogateescape") if isinstance(value, str) else decoded


def _basename(value: str | None) -> str | None:
    return None if value is None else value[value.rfind("/") + 1 :]


def _len(value: Sequence[object] | None) -> int | None:
    """libs counts a string's bytes (strnlen), a list's items."""
    if value is None:
        return None
    return len(to_bytes(value)) if isinstance(value, str) else len(value)


def _join(sep: str, values: Sequence[object]) -> str | None:
    if any(v is None for v in values):
        return None
    return sep.join(str(v) for v in values)


def _concat(*values: object) -> str | None:
    if any(v is None for v in values):
        return None
    return "".join(str(v) for v in values)


def _getopt(args: str | None, optstring: str, option: str) -> str | None:
    """POSIX getopt over a space-separated argument string: the option's value ('' for a flag
    without one), or None when the option is absent. Parsing stops at '--' or a non-option."""
    if args is None:
        return None
    words = args.split()
    i = 0
    found: str | None = None
    while i < len(words):
        word = words[i]
        if word == "--" or not word.startswith("-") or word == "-":
            break
        j = 1
        while j < len(word):
            ch = word[j]
            spec = optstring.find(ch)
            takes_value = spec != -1 and spec + 1 < len(optstring) and optstring[spec + 1] == ":"
            if takes_value:
                if j + 1 < len(word):
                    value = word[j + 1 :]
                elif i + 1 < len(words):
                    i += 1
                    value = words[i]
                else:
                    value = ""
                if ch == option:
                    found = value
                break
            if ch == option and spec != -1:
                found = ""
            j += 1
        i += 1
    return found


def _same(t: FieldType) -> FieldType:
    return t


TRANSFORMERS: dict[str, Transformer] = {
    row.name: row
    for row in (
        Transformer("tolower", STRING_IN, _same, "_tx_lower"),
        Transformer("toupper", STRING_IN, _same, "_tx_upper"),
        Transformer("b64", STRING_IN | {FieldType.BYTEBUF}, _same, "_tx_b64"),
        Transformer("basename", STRING_IN, lambda t: FieldType.CHARBUF, "_tx_basename"),
        Transformer("len", STRING_IN | {FieldType.BYTEBUF}, lambda t: FieldType.UINT64, "_tx_len", True),
        Transformer("join", None, lambda t: FieldType.CHARBUF, "_tx_join"),
        Transformer("concat", None, lambda t: FieldType.CHARBUF, "_tx_concat"),
        Transformer("getopt", None, lambda t: FieldType.CHARBUF, "_tx_getopt"),
    )
}

HELPERS: dict[str, object] = {
    "_tx_lower": _lower,
    "_tx_upper": _upper,
    "_tx_b64": _b64,
    "_tx_basename": _basename,
    "_tx_len": _len,
    "_tx_join": _join,
    "_tx_concat": _concat,
    "_tx_getopt": _getopt,
}
