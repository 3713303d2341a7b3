"""Dead-letter records for `peregrine.events.dlq`: the poison batch, unchanged, plus why and where from.

Format (documented for whoever drains the topic):

* key: the original message key (the node name), unchanged;
* value: the original message bytes, unchanged, so a fixed decoder can replay it;
* headers (UTF-8 text):

  - ``peregrine.dlq.reason``: the short, stable reason (`collectors.wire.WireError.reason`, e.g.
    ``malformed msgpack``, ``unsupported schema version``; ``evaluation failed`` for a batch the
    rule engine raised on);
  - ``peregrine.dlq.detail``: the longer message (field, index), at most 1 KiB;
  - ``peregrine.dlq.topic``, ``peregrine.dlq.partition``, ``peregrine.dlq.offset``: where the
    batch was read.

Headers rather than an envelope, so that the value stays byte-identical to what was produced.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

REASON: Final = "peregrine.dlq.reason"
DETAIL: Final = "peregrine.dlq.detail"
TOPIC: Final = "peregrine.dlq.topic"
PARTITION: Final = "peregrine.dlq.partition"
OFFSET: Final = "peregrine.dlq.offset"
# set by the sink stage only: which destination gave up, after how many attempts
DESTINATION: Final = "peregrine.dlq.destination"
ATTEMPTS: Final = "peregrine.dlq.attempts"
EVALUATION_FAILED: Final = "evaluation failed"
_MAX_DETAIL: Final = 1024


@dataclass(frozen=True, slots=True)
class DeadLetter:
    reason: str
    detail: str
    topic: str
    partition: int
    offset: int

    def headers(self) -> list[tuple[str, bytes]]:
        return [
            (REASON, self.reason.encode()),
            (DETAIL, self.detail[:_MAX_DETAIL].encode("utf-8", "replace")),
            (TOPIC, self.topic.encode()),
            (PARTITION, str(self.partition).encode()),
            (OFFSET, str(self.offset).encode()),
        ]


def parse_headers(headers: list[tuple[str, bytes]] | None) -> DeadLetter:
    """Read the headers back (tools and tests); KeyError names a missing header."""
    h = {k: v.decode("utf-8", "replace") for k, v in headers or ()}
    return DeadLetter(
        reason=h[REASON],
        detail=h.get(DETAIL, ""),
        topic=h[TOPIC],
        partition=int(h[PARTITION]),
        offset=int(h[OFFSET]),
    )
