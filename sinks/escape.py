"""Escaping per output format: attackers control command lines, file names and pod labels.

Two steps, in this order:

1. `clean` makes any string safe to carry in any format: lone surrogates (what invalid UTF-8 or
   ``\\ud800`` escapes leave behind) become U+FFFD; NUL, ANSI escape (ESC), other C0/C1 controls,
   DEL, Unicode line separators and bidi overrides become visible ``\\xNN``/``\\uNNNN`` text, so a
   terminal or chat client shows them instead of obeying them; ``\\t``, ``\\n`` and ``\\r`` stay for
   the format step. Oversized values are cut at a character boundary with a visible marker.
2. A format function escapes the delimiters of one format (Slack mrkdwn, CEF header/extension,
   LEEF, RFC 5424 header and structured data). JSON needs only step 1: `json.dumps` escapes quotes
   and controls, and after step 1 the text always encodes as UTF-8.

Limits: Slack mrkdwn has no escape for ``*_~``` `` ``, so attacker text is sent as ``plain_text``.
LEEF has no escape for its attribute delimiter, so values get a reversible escape of our own
(`leef_value`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

TRUNCATION_MARKER = "...[truncated {} bytes]"

# Beyond C0/C1 controls: line and paragraph separators, every bidi control (embeddings, overrides,
# isolates, and the marks U+200E/U+200F/U+061C that reorder neighbouring text just as well), and
# the invisible characters that hide text inside a value (zero-width space, word joiner and the
# invisible operators, BOM). ZWNJ/ZWJ stay: scripts and emoji need them and they reorder nothing.
_UNSAFE = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u061c\u200b\u200e\u200f\u2028\u2029\u202a-\u202e"
    "\u2060-\u2064\u2066-\u2069\ufeff\ud800-\udfff]"
)


def _visible(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    if 0xD800 <= code <= 0xDFFF:
        return "\ufffd"
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def clean(text: str, limit: int) -> str:
    """Neutralise controls and invalid code points, then truncate to ``limit`` UTF-8 bytes."""
    if not (text.isascii() and text.isprintable()):
        text = _UNSAFE.sub(_visible, text)
    if len(text) * 4 <= limit:  # cannot exceed the limit even if every char took 4 bytes
        return text
    return truncate(text, limit)


def truncate(text: str, limit: int) -> str:
    """Cut ``text`` to at most ``limit`` UTF-8 bytes (marker included) at a character boundary."""
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    marker_len = len(TRUNCATION_MARKER.format(len(data)))
    keep = max(0, limit - marker_len)
    kept = data[:keep].decode("utf-8", errors="ignore")
    return kept + TRUNCATION_MARKER.format(len(data) - len(kept.encode("utf-8")))


def clean_json(value: Any, limit: int) -> Any:
    """`clean` every string (keys too) of a JSON-like value; other scalars pass through."""
    kind = type(value)  # exact types first: this runs for every field of every alert
    if kind is str:
        return clean(value, limit)
    if kind is int or kind is float or kind is bool or value is None:
        return value
    if isinstance(value, dict):
        return {clean(str(k), limit): clean_json(v, limit) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean_json(v, limit) for v in value]
    if isinstance(value, int | float):  # subclasses such as IntEnum
        return value
    return clean(str(value), limit)


def fit(text: str, limit_chars: int, escape: Callable[[str], str]) -> str:
    """``escape(text)`` shortened so the result has at most ``limit_chars`` characters.

    Escaping grows text (``<`` becomes 4 characters in Slack), so raw characters are kept while their
    escaped form fits, and an escape sequence is never cut in half. ``escape`` must map characters
    one by one (all the `str.translate` escapes here do).
    """
    escaped = escape(text)
    if len(escaped) <= limit_chars:
        return escaped
    total = len(text.encode("utf-8"))
    budget = limit_chars - len(TRUNCATION_MARKER.format(total))
    parts: list[str] = []
    used = kept = 0
    for char in text:
        piece = escape(char)
        if used + len(piece) > budget:
            break
        parts.append(piece)
        used += len(piece)
        kept += len(char.encode("utf-8"))
    return "".join(parts) + TRUNCATION_MARKER.format(total - kept)


# Slack: `&`, `<` and `>` are Slack's only control characters in any text object; escaping `<` is
# what disarms <!channel>, <!here>, <@U123>, <#C123> and <http://x|y> links. Line breaks become
# visible text, so a crafted value cannot show a forged line of its own. mrkdwn has no escape for
# `*_~` and backticks, so attacker text goes into `plain_text` objects, where Slack applies no
# formatting (`slack.py`); the same-length URL defang below keeps a link out of a client that
# linkifies plain text, and keeps `fit`'s character accounting exact.
_SLACK = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "\n": "\\n", "\r": "\\r"})
_URL_SCHEME = re.compile(r"(?i)\b(h)tt(ps?)(?=:)|\b(f)t(p)(?=:)")


def slack(text: str) -> str:
    return text.translate(_SLACK)


def defang(text: str) -> str:
    """``http://`` -> ``hxxp://``, ``https:`` -> ``hxxps:``, ``ftp:`` -> ``fxp:``, as security
    tooling writes indicators, at the same length."""
    return _URL_SCHEME.sub(_defanged, text)


def _defanged(match: re.Match[str]) -> str:
    if match.group(1) is not None:
        return f"{match.group(1)}xx{match.group(2)}"
    return f"{match.group(3)}x{match.group(4)}"


# CEF (ArcSight v23): header fields escape `\` and `|` and cannot hold line breaks; extension
# values escape `\` and `=` and encode line breaks as \n and \r. TAB becomes \t too: syslog relays
# rewrite raw control characters (rsyslog writes TAB as "#011").
_CEF_HEADER = str.maketrans({"\\": "\\\\", "|": "\\|", "\n": " ", "\r": " ", "\t": " "})
_CEF_EXTENSION = str.maketrans({"\\": "\\\\", "=": "\\=", "\n": "\\n", "\r": "\\r", "\t": "\\t"})


def cef_header(text: str) -> str:
    return text.translate(_CEF_HEADER)


def cef_extension(text: str) -> str:
    return text.translate(_CEF_EXTENSION)


# LEEF: header fields escape `|` (and `\` so the escape stays unambiguous). LEEF has no escape for
# attribute values, so ours is a reversible one: `\` is doubled first, then the delimiter becomes
# ``\xNN`` and line breaks ``\n``/``\r``/``\t``. A literal ``\x5e`` in a value is written ``\\x5e``
# and a value can never end in a lone `\` that would swallow the delimiter after it; a parser that
# splits on the delimiter (as QRadar's does) always finds the attribute boundaries we wrote.
_LEEF_HEADER = str.maketrans({"\\": "\\\\", "|": "\\|", "\n": " ", "\r": " ", "\t": " "})


def leef_header(text: str) -> str:
    return text.translate(_LEEF_HEADER)


def leef_value(text: str, delimiter: str) -> str:
    table: dict[str, str | int | None] = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
    table[delimiter] = f"\\x{ord(delimiter):02x}"
    return text.translate(str.maketrans(table))


# RFC 5424 structured data PARAM-VALUE escapes `"`, `\` and `]`; line breaks are written as text so
# a frame never carries a raw newline (receivers with LF framing would split it).
_SD_VALUE = str.maketrans({"\\": "\\\\", '"': '\\"', "]": "\\]", "\n": "\\n", "\r": "\\r", "\t": "\\t"})


def sd_value(text: str) -> str:
    return text.translate(_SD_VALUE)


def syslog_token(text: str, max_len: int) -> str:
    """An RFC 5424 header field (HOSTNAME, APP-NAME, PROCID, MSGID): PRINTUSASCII, no space."""
    token = "".join(c if "!" <= c <= "~" else "_" for c in text[:max_len])
    return token or "-"


def json_bytes(value: Any) -> bytes:
    """Compact UTF-8 JSON; callers pass values already through `clean`/`clean_json`."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
