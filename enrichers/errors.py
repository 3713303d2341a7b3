"""Errors of the Kubernetes enrichment package, under one root.

    EnricherError
    ├── ConfigError    bad command line or settings (names the option)
    ├── RecordError    a peregrine.k8s record that cannot be decoded (names the key and field)
    ├── WatchError     the API server refused us for good (names the resource and status)
    └── TopicError     the Kafka topic is missing, misconfigured or unreadable (names the topic)
"""

from __future__ import annotations


class EnricherError(Exception):
    """Root of every error raised by `enrichers`."""


class ConfigError(EnricherError):
    """Invalid configuration or command line."""


class RecordError(EnricherError):
    """A `peregrine.k8s` record that does not decode."""


class WatchError(EnricherError):
    """The Kubernetes API answered with an error that retrying cannot fix (401, 403, 404)."""


class TopicError(EnricherError):
    """The `peregrine.k8s` topic cannot be created, checked or read."""
