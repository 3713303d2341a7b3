"""Errors of the alerts contract, under one root.

    AlertError
     ├── AlertDecodeError   bytes or a document are not an alert as Peregrine writes it (poison: DLQ)
     └── AlertTooLargeError an alert cannot fit the size bound even with every long field truncated

Messages never quote a whole attacker-controlled value: they name the key and bound what they show.
"""

from __future__ import annotations


class AlertError(Exception):
    """Root of every error the alerts contract raises on purpose."""


class AlertDecodeError(AlertError):
    """Not an alert; ``reason`` is short and stable (for grouping), the message adds the detail."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class AlertTooLargeError(AlertError):
    """The parts of an alert that are never truncated (rule, tags, field names...) exceed the bound."""
