"""The size bound of an encoded alert: long attacker-controlled text is cut with a visible marker.

``MAX_ALERT_BYTES`` is 256 KiB, a quarter of the 1 MiB that Kafka accepts per record by default
(the topic's ``max.message.bytes``, librdkafka's ``message.max.bytes`` of 1,000,000): an alert
always fits with room for the record framing and the dead-letter headers a sink adds when it
moves the alert to ``peregrine.alerts.dlq``, and a sink decodes any alert in about a millisecond.
No destination shows more: Slack cuts a message at 40,000 characters and syslog receivers
commonly at 64 KiB, so nothing a reader needs is lost, and the marker says that text was cut.

What is cut: ``output`` and the string values of ``output_fields``, the text an attacker writes
(command lines, file names, labels), largest first, each keeping its beginning. The rest comes
from the rules files and the node (rule, tags, field names, hostname) and is never cut; an alert
whose fixed parts alone exceed the bound raises `AlertTooLargeError`. The ``uuid`` is the identity
of the rule match (`rules.alert.alert_id`), computed before and independent of any cut, so a
truncated alert keeps the id of the full one.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Final

from alerts.errors import AlertTooLargeError

MAX_ALERT_BYTES: Final = 256 * 1024

Doc = dict[str, object]


def marker(dropped: int) -> str:
    """What replaces the end of a cut value: how many UTF-8 bytes of it were dropped."""
    return f"…[truncated {dropped} bytes]"


def fit(doc: Doc, dumps: Callable[[Doc], bytes], limit: int = MAX_ALERT_BYTES) -> bytes:
    """``dumps(doc)``, with the longest texts of `doc` cut until the result is at most `limit` bytes.

    `doc` is Falco's JSON alert as a dict (`rules.alert.Alert.to_json_dict`); when something has
    to be cut its ``output`` and ``output_fields`` are replaced, never mutated in place."""
    data = dumps(doc)
    if len(data) <= limit:
        return data
    output, fields = doc["output"], doc["output_fields"]
    if not (isinstance(output, str) and isinstance(fields, dict)):
        raise TypeError("fit takes Falco's JSON alert: a string output and an output_fields object")
    # the texts that may be cut, by field name; None is the output itself, never a field name
    originals: dict[str | None, str] = {k: v for k, v in fields.items() if isinstance(v, str)}
    originals[None] = output
    texts = dict(originals)
    while len(data) > limit:
        sizes = {k: json_size(v) for k, v in texts.items()}
        # only a value longer than its marker-only form can still shrink: this bounds the loop
        shrinkable = [k for k, size in sizes.items() if size > json_size(_cut(originals[k], 0))]
        if not shrinkable:
            raise AlertTooLargeError(
                f"alert {doc.get('uuid')} takes {len(data)} bytes with every text field cut; "
                f"the bound is {limit} (its rule, tags or field names are too long)"
            )
        key = max(shrinkable, key=sizes.__getitem__)
        texts[key] = _cut(originals[key], sizes[key] - (len(data) - limit))
        doc["output"] = texts[None]
        doc["output_fields"] = {k: texts.get(k, v) for k, v in fields.items()}
        data = dumps(doc)
    return data


def json_size(text: str) -> int:
    """Bytes `text` takes inside a JSON string as `alerts.wire` writes it (escapes, UTF-8)."""
    if text.isascii() and text.isprintable() and '"' not in text and "\\" not in text:
        return len(text)
    return len(json.dumps(text, ensure_ascii=False).encode("utf-8", "surrogatepass")) - 2


def _cut(text: str, budget: int) -> str:
    """The longest beginning of `text` that, with its marker, takes at most `budget` JSON bytes
    (just the marker when even that does not fit)."""
    total = len(text.encode("utf-8", "surrogatepass"))
    room = budget - json_size(marker(total))  # the marker can only be shorter than this one
    keep = 0
    if room > 0:
        lo, hi = 0, min(len(text), room)  # every character takes at least one byte
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if json_size(text[:mid]) <= room:
                lo = mid
            else:
                hi = mid - 1
        keep = lo
    prefix = text[:keep]
    return prefix + marker(total - len(prefix.encode("utf-8", "surrogatepass")))
