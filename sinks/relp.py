"""A RELP client (Reliable Event Logging Protocol, librelp's protocol, rsyslog's imrelp): syslog
messages that count as delivered only when the receiver has answered for each one.

Plain TCP syslog has no acknowledgement: bytes the kernel accepted are lost with a receiver that
dies before reading them. RELP numbers every message (``txnr``) and the receiver answers each with
``rsp 200 OK`` once it has taken the message into its queue, so a batch is delivered when every
number it used has been answered, and a lost connection fails the batch for redelivery.

Frames (librelp's ``doc/relp.html``): ``TXNR SP COMMAND SP DATALEN [SP DATA] LF``; transaction
numbers run from 1 to 999,999,999 and wrap to 1. A session opens with ``open`` offering
``relp_version``, ``relp_software`` and ``commands=syslog``; messages are ``syslog`` commands;
``close`` ends the session. The receiver may announce ``0 serverclose 0`` before closing.

Messages are pipelined up to `WINDOW` unanswered at a time (librelp's default window is 128).
What a receiver sends back is bounded (`MAX_RESPONSE_DATA`) so it cannot grow the sink's memory.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Sequence
from typing import Final

from sinks.errors import RetryableError

WINDOW: Final = 128
MAX_RESPONSE_DATA: Final = 16 * 1024
_MAX_TXNR: Final = 999_999_999
_OFFER: Final = b"relp_version=0\nrelp_software=peregrine\ncommands=syslog"


class RelpError(RetryableError):
    """The RELP session failed (refused, malformed answer, lost connection): redeliver the batch."""


def frame(txnr: int, command: bytes, data: bytes) -> bytes:
    if data:
        return b"%d %s %d %s\n" % (txnr, command, len(data), data)
    return b"%d %s 0\n" % (txnr, command)


class RelpSession:
    """One RELP session over a connected socket (plain or TLS). Not thread-safe."""

    def __init__(self, sock: socket.socket, timeout_s: float) -> None:
        self._sock = sock
        self._timeout = timeout_s
        self._txnr = 0
        self._buffer = bytearray()

    def open(self) -> None:
        deadline = time.monotonic() + self._timeout
        txnr = self._next()
        self._sock.sendall(frame(txnr, b"open", _OFFER))
        answer = self._response(txnr, deadline)
        offers = answer.split(b"\n")[1:]
        if b"commands=syslog" not in offers:
            raise RelpError("RELP receiver does not offer the syslog command")

    def send(self, messages: Sequence[bytes]) -> None:
        """Send every message and wait until the receiver answered each with 200."""
        deadline = time.monotonic() + self._timeout
        for start in range(0, len(messages), WINDOW):
            numbers = []
            frames = []
            for message in messages[start : start + WINDOW]:
                txnr = self._next()
                numbers.append(txnr)
                frames.append(frame(txnr, b"syslog", message))
            self._sock.settimeout(max(0.001, deadline - time.monotonic()))
            self._sock.sendall(b"".join(frames))
            for txnr in numbers:
                self._response(txnr, deadline)

    def close(self) -> None:
        """End the session politely; errors here change nothing (every batch was answered)."""
        try:
            txnr = self._next()
            self._sock.sendall(frame(txnr, b"close", b""))
            self._response(txnr, time.monotonic() + min(self._timeout, 1.0))
        except (OSError, RetryableError):
            pass

    def _next(self) -> int:
        self._txnr = self._txnr % _MAX_TXNR + 1
        return self._txnr

    def _response(self, txnr: int, deadline: float) -> bytes:
        """The data of the answer to ``txnr``, which must be ``200``; answers come in order."""
        got, command, data = self._frame(deadline)
        if command == b"serverclose":
            raise RelpError("RELP receiver closed the session")
        if command != b"rsp" or got != txnr:
            raise RelpError(f"RELP: expected the answer to {txnr}, got {command[:16]!r} for {got}")
        code = data[:3]
        if code != b"200":
            text = data[:200].decode("utf-8", "replace")
            raise RelpError(f"RELP receiver refused message {txnr}: {text!r}")
        return data

    def _frame(self, deadline: float) -> tuple[int, bytes, bytes]:
        header = self._until(b"\n", deadline, 64)
        parts = header.split(b" ", 3)
        try:
            txnr, command, length = int(parts[0]), parts[1], int(parts[2])
        except (IndexError, ValueError):
            raise RelpError(f"RELP: malformed answer header {header[:64]!r}") from None
        if not 0 <= length <= MAX_RESPONSE_DATA:
            raise RelpError(f"RELP: answer of {length} bytes is over {MAX_RESPONSE_DATA}")
        if length == 0:
            if len(parts) > 3:
                raise RelpError("RELP: data after a zero length")
            return txnr, command, b""
        # the header read stopped at the first LF, which may sit inside the data: take the rest
        data = (parts[3] + b"\n") if len(parts) > 3 else b""
        data += self._exactly(length + 1 - len(data), deadline)
        if len(data) != length + 1 or data[-1:] != b"\n":
            raise RelpError("RELP: answer without its trailer")
        return txnr, command, data[:-1]

    def _until(self, end: bytes, deadline: float, limit: int) -> bytes:
        """Bytes up to ``end`` (consumed, not returned); ``limit`` bounds the header and the
        start of the data that a short answer may put before its first LF."""
        while True:
            at = self._buffer.find(end)
            if at >= 0:
                out = bytes(self._buffer[:at])
                del self._buffer[: at + 1]
                return out
            if len(self._buffer) > limit + MAX_RESPONSE_DATA:
                raise RelpError("RELP: answer too long")
            self._fill(deadline)

    def _exactly(self, count: int, deadline: float) -> bytes:
        while len(self._buffer) < count:
            self._fill(deadline)
        out = bytes(self._buffer[:count])
        del self._buffer[:count]
        return out

    def _fill(self, deadline: float) -> None:
        left = deadline - time.monotonic()
        if left <= 0:
            raise RelpError("RELP: no answer before the deadline")
        self._sock.settimeout(left)
        try:
            chunk = self._sock.recv(65536)
        except TimeoutError:
            raise RelpError("RELP: no answer before the deadline") from None
        if not chunk:
            raise RelpError("RELP: connection closed before every message was answered")
        self._buffer += chunk
