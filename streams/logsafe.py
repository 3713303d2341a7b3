"""Attacker values as log text: bounded and escaped, so a log line is always one short line.

Node names, versions, event types and exception messages come from the wire; logged whole, a node name
holding a newline forged a worker log line and a 1 MB field made a 1 MB line. Every value a log line
(or an error text that reaches one) quotes goes through `shown`.
"""

from __future__ import annotations

from typing import Final

# Characters of a value a log line quotes; what is cut is counted, so the line says it was cut.
MAX_SHOWN: Final = 200


def shown(value: object, limit: int = MAX_SHOWN) -> str:
    """``value`` as one line of at most about ``limit`` printable ASCII characters: control and
    non-ASCII characters escaped (``\\n``, ``\\x1b``, ``\\u2028``), the rest cut with a count."""
    text = value if isinstance(value, str) else _text(value)
    cut = len(text) - limit
    head = text[:limit] if cut > 0 else text
    escaped = head.encode("unicode_escape", "backslashreplace").decode("ascii")
    escaped = escaped[:limit * 2]  # escapes grow a character to at most 10; keep the line short anyway
    return f"{escaped}...(+{cut} chars)" if cut > 0 else escaped


def _text(value: object) -> str:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value[:MAX_SHOWN * 2]).decode("utf-8", "replace")
    try:
        return str(value)
    except Exception:  # a hostile __str__ must not turn a log line into a crash
        return f"<unprintable {type(value).__name__}>"
