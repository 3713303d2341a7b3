"""Capture files: what `peregrine record` writes and `peregrine replay` publishes.

A capture is a header line, then a msgpack stream of frames `[t_ns, kind, key, value]`: `t_ns`
is when the frame was written (ns since the epoch, used to replay at the recorded rate), `kind`
is "events" or "stats", `value` the exact Kafka message (`collectors.wire` batch or
`collectors.stats` map). Replaying a capture publishes the same bytes the collector would have.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO, Final

import msgpack

from collectors.errors import CaptureError

MAGIC: Final = b"PEREGRINE-CAPTURE 1\n"
KINDS: Final = ("events", "stats")


@dataclass(frozen=True, slots=True)
class Frame:
    t_ns: int
    kind: str
    key: bytes
    value: bytes


class CaptureWriter:
    """A sink with the publisher's interface that appends frames to a file."""

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            self._f: BinaryIO = open(path, "wb")  # noqa: SIM115 - closed by close()
        except OSError as exc:
            raise CaptureError(f"cannot write capture {path}: {exc.strerror}") from None
        self._f.write(MAGIC)
        self._packer = msgpack.Packer(use_bin_type=True)
        self.queue_full_events = 0
        self.failed_events = 0
        self.delivered_events = 0
        self.delivered_batches = 0
        self.bytes_sent = 0
        self.errors = 0

    def send(self, kind: str, key: bytes, value: bytes, n_events: int) -> bool:
        self._f.write(self._packer.pack([time.time_ns(), kind, key, value]))
        self.delivered_events += n_events
        self.delivered_batches += kind == "events"
        self.bytes_sent += len(value)
        return True

    def poll(self) -> None:
        self._f.flush()

    def queue_depth(self) -> int:
        return 0

    def close(self, timeout_s: float) -> int:
        self._f.close()
        return 0


def read_capture(path: str) -> Iterator[Frame]:
    """Frames of a capture file; CaptureError names the file and the byte offset of a bad frame."""
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise CaptureError(f"cannot read capture {path}: {exc.strerror}") from None
    with f:
        if f.read(len(MAGIC)) != MAGIC:
            raise CaptureError(f"{path}: not a Peregrine capture (bad header)")
        unpacker = msgpack.Unpacker(f, raw=False, max_buffer_size=64 * 1024 * 1024)
        while True:
            offset = len(MAGIC) + unpacker.tell()
            try:
                obj = unpacker.unpack()
            except msgpack.OutOfData:
                return
            except (ValueError, msgpack.UnpackException) as exc:
                raise CaptureError(f"{path}: malformed frame at byte {offset}: {exc}") from None
            if (
                not isinstance(obj, list)
                or len(obj) != 4
                or type(obj[0]) is not int
                or obj[1] not in KINDS
                or not isinstance(obj[2], bytes)
                or not isinstance(obj[3], bytes)
            ):
                raise CaptureError(f"{path}: bad frame at byte {offset}: expected [t_ns, kind, key, value]")
            yield Frame(obj[0], obj[1], obj[2], obj[3])
