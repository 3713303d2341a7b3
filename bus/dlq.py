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

A message that cannot be dead-lettered whole (larger than `MAX_WHOLE_BYTES`, or whose letter Kafka
refused) is dead-lettered as a reference (`DeadLetter.reference`): the value is its first
`REFERENCE_BYTES` bytes, the key at most `MAX_KEY_BYTES`, and two more headers say so:
``peregrine.dlq.size`` (the original value's length in bytes) and ``peregrine.dlq.reference``
(``1``). The original stays on its topic (topic, partition, offset) until its retention ends.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from bus.topics import MAX_MESSAGE_BYTES

REASON: Final = "peregrine.dlq.reason"
DETAIL: Final = "peregrine.dlq.detail"
TOPIC: Final = "peregrine.dlq.topic"
PARTITION: Final = "peregrine.dlq.partition"
OFFSET: Final = "peregrine.dlq.offset"
# set by the sink stage only: which destination gave up, after how many attempts
DESTINATION: Final = "peregrine.dlq.destination"
ATTEMPTS: Final = "peregrine.dlq.attempts"
EVALUATION_FAILED: Final = "evaluation failed"
SUPPRESSED: Final = "peregrine.dlq.suppressed"  # letters of this key refused by the rate cap before it
SIZE: Final = "peregrine.dlq.size"
REFERENCE: Final = "peregrine.dlq.reference"
_MAX_DETAIL: Final = 1024
# A letter above this goes as a reference: the events DLQ takes bus.topics.MAX_MESSAGE_BYTES, and the
# headers and record framing must fit beside the value.
MAX_WHOLE_BYTES: Final = MAX_MESSAGE_BYTES - 16 * 1024
REFERENCE_BYTES: Final = 1024
MAX_KEY_BYTES: Final = 256


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

    def reference(self, value: bytes) -> tuple[bytes, list[tuple[str, bytes]]]:
        """The value and headers of a letter that points at the message instead of carrying it."""
        headers = [*self.headers(), (SIZE, str(len(value)).encode()), (REFERENCE, b"1")]
        return bytes(value[:REFERENCE_BYTES]), headers


def bounded_key(key: bytes | None) -> bytes | None:
    """The key of a reference letter: the original's first `MAX_KEY_BYTES` bytes."""
    return None if key is None else bytes(key[:MAX_KEY_BYTES])


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
