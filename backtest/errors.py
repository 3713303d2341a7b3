"""Errors of the backtest, under one root.

    BacktestError
    ├── UsageError   a bad option value (names the option and the value)
    └── ReadError    a topic is missing or cannot be read to the planned end (names the topic)
"""

from __future__ import annotations


class BacktestError(Exception):
    """Root of every error raised by `backtest`."""


class UsageError(BacktestError, ValueError):
    """An option value that cannot be used (a time that does not parse, a window that is empty)."""


class ReadError(BacktestError):
    """A topic is missing, or could not be read to the end offsets planned at the start."""
