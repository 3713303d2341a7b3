"""Errors of the sink stage, under one root.

    SinkError
     ├── ConfigError      the YAML file or an environment variable is wrong (names the key path)
     └── DeliveryError    a destination did not accept alerts
          ├── RetryableError  worth another attempt (connection, timeout, 429, 5xx); may carry retry_after
          └── PermanentError  another attempt cannot help (4xx, rejected payload): DLQ at once

A record that is not an alert raises `alerts.errors.AlertDecodeError`, the contract's own error.
Messages never contain secrets: the HTTP sender redacts them before an error is built.
"""

from __future__ import annotations


class SinkError(Exception):
    """Root of every error the sink stage raises on purpose."""


class ConfigError(SinkError):
    """The sink configuration is invalid; the message names the file and the key path."""


class DeliveryError(SinkError):
    """A destination did not accept a payload."""


class RetryableError(DeliveryError):
    """Delivery failed for a reason that may pass; ``retry_after`` is the server's wish in seconds."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class PermanentError(DeliveryError):
    """Delivery failed for a reason another attempt cannot fix."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
