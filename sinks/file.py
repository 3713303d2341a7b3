"""File (JSON lines, appended) and stdout destinations.

The file is opened in append mode, so concurrent writers behave as for any log. ``fsync`` decides
when the kernel's cache is forced to disk before the batch counts as delivered: ``always`` (every
batch: no loss on power failure), ``interval`` (at most every ``fsync_interval_s``) or ``never``
(the OS decides).

The sink runs privileged enough to matter and alerts hold attacker-chosen text, so the file is
opened as a log owned by the sink, not as whatever the path happens to name: a symbolic link at the
path is refused rather than followed (a planted link would redirect alerts into any file the sink
may write), anything but a regular file is refused, and a new file is created with ``mode``
(default 0600: alerts name users, commands and hosts). Before each batch the path is compared with
the open file (device and inode): after a rename rotation, or a deletion, the next batch goes to a
new file at the path, so no SIGHUP is needed (the sink service only logs one). A batch is written
with one ``write``; if the kernel takes only part of it (a full disk), the file is cut back to where
the batch began, so a reader never sees a torn line.
"""

from __future__ import annotations

import errno
import os
import stat
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
    mode: int = 0o600


def parse(options: Options) -> FileConfig:
    # a quoted string: YAML 1.1 reads an unquoted 0600 as the integer 384, 600 as six hundred
    mode_text = options.text("mode", "0600")
    try:
        mode = int(mode_text, 8)
    except ValueError:
        mode = -1
    if not 0 <= mode <= 0o777:
        raise options.error("mode", f"an octal permission like \"0600\" is expected, not {mode_text[:16]!r}")
    return FileConfig(
        path=options.text("path"),
        fsync=options.choice("fsync", "always", ("always", "interval", "never")),
        fsync_interval_s=options.number("fsync_interval_s", 1.0),
        mode=mode,
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
        self._fd: int | None = None
        self._last_sync = 0.0

    def build(self, alert: Alert) -> bytes:
        return build_json_line(alert, self._limit)

    def send(self, payloads: Sequence[bytes]) -> Outcome:
        data = b"".join(payloads)
        try:
            fd = self._current()
            start = os.fstat(fd).st_size
            written = os.write(fd, data)
            if written != len(data):
                os.ftruncate(fd, start)
                raise OSError(0, f"short write ({written} of {len(data)} bytes), batch undone")
            self._sync(fd)
        except OSError as exc:
            self.close()
            raise RetryableError(f"file {self._config.path}: {exc.strerror or exc}") from None
        return ACCEPTED

    def _current(self) -> int:
        """The open file, reopened when the path no longer names it (rotated or removed)."""
        fd = self._fd
        if fd is not None:
            try:
                at_path = os.stat(self._config.path, follow_symlinks=False)
            except FileNotFoundError:
                at_path = None
            opened = os.fstat(fd)
            if at_path is not None and (at_path.st_dev, at_path.st_ino) == (opened.st_dev, opened.st_ino):
                return fd
            self.close()
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
        try:
            fd = os.open(self._config.path, flags, self._config.mode)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise OSError(exc.errno, "is a symbolic link; refusing to follow it") from None
            raise
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise OSError(0, "is not a regular file")
        self._fd = fd
        return fd

    def _sync(self, fd: int) -> None:
        policy = self._config.fsync
        now = time.monotonic()
        due = now - self._last_sync >= self._config.fsync_interval_s
        if policy == "always" or (policy == "interval" and due):
            os.fsync(fd)
            self._last_sync = now

    def close(self) -> None:
        if self._fd is not None:
            try:
                os.close(self._fd)
            except OSError:
                pass
            self._fd = None


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
