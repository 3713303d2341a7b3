"""File (JSON lines, appended) and stdout destinations.

The file is opened in append mode, so concurrent writers and log rotation by rename behave as
for any log. ``fsync`` decides when the kernel's cache is forced to disk before the batch counts
as delivered: ``always`` (every batch: no loss on power failure), ``interval`` (at most every
``fsync_interval_s``) or ``never`` (the OS decides).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import BinaryIO

from sinks import escape
from sinks.alert import Alert
from sinks.base import ACCEPTED, Outcome
from sinks.errors import RetryableError
from sinks.options import Options


@dataclass(frozen=True, slots=True)
class FileConfig:
    path: str
    fsync: str = "always"
    fsync_interval_s: float = 1.0


def parse(options: Options) -> FileConfig:
    return FileConfig(
        path=options.text("path"),
        fsync=options.choice("fsync", "always", ("always", "interval", "never")),
        fsync_interval_s=options.number("fsync_interval_s", 1.0),
    )


@dataclass(frozen=True, slots=True)
class StdoutConfig:
    """stdout has no options; the type exists so every destination is built the same way."""


def parse_stdout(options: Options) -> StdoutConfig:
    return StdoutConfig()


def build_json_line(alert: Alert, limit: int) -> bytes:
    return escape.json_bytes(escape.clean_json(alert.to_json_dict(), limit)) + b"\n"


class FileDestination:
    def __init__(self, config: FileConfig, value_limit: int, max_batch: int) -> None:
        self._config = config
        self._limit = value_limit
        self.max_batch = max_batch
        self._file: BinaryIO | None = None
        self._last_sync = 0.0

    def build(self, alert: Alert) -> bytes:
        return build_json_line(alert, self._limit)

    def send(self, payloads: Sequence[bytes]) -> Outcome:
        try:
            handle = self._file
            if handle is None:
                handle = self._file = open(self._config.path, "ab")  # kept open across batches
            handle.write(b"".join(payloads))
            handle.flush()
            self._sync(handle)
        except OSError as exc:
            self.close()
            raise RetryableError(f"file {self._config.path}: {exc.strerror or exc}") from None
        return ACCEPTED

    def _sync(self, handle: BinaryIO) -> None:
        policy = self._config.fsync
        now = time.monotonic()
        due = now - self._last_sync >= self._config.fsync_interval_s
        if policy == "always" or (policy == "interval" and due):
            os.fsync(handle.fileno())
            self._last_sync = now

    def close(self) -> None:
        if self._file is not None:
            try:
                self._file.close()
            except OSError:
                pass
            self._file = None


class StdoutDestination:
    def __init__(
        self, config: StdoutConfig, value_limit: int, max_batch: int, stream: BinaryIO | None = None
    ) -> None:
        self._limit = value_limit
        self.max_batch = max_batch
        self._stream = stream if stream is not None else sys.stdout.buffer

    def build(self, alert: Alert) -> bytes:
        return build_json_line(alert, self._limit)

    def send(self, payloads: Sequence[bytes]) -> Outcome:
        try:
            self._stream.write(b"".join(payloads))
            self._stream.flush()
        except OSError as exc:
            raise RetryableError(f"stdout: {exc.strerror or exc}") from None
        return ACCEPTED

    def close(self) -> None:
        return None
