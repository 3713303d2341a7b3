"""What can go wrong between a role and Kafka, under one root.

    BusError
    ├── ConnectionConfigError   a bootstrap, TLS or SASL option is missing or inconsistent (a ValueError too)
    │   └── KafkaSecurityError  ... a TLS or SASL one
    └── TopicError              a topic cannot be created, checked or described
"""

from __future__ import annotations


class BusError(Exception):
    """Root of the Kafka connection and topic errors; the message names the flag, variable or topic."""


class ConnectionConfigError(BusError, ValueError):
    """A connection option is missing or inconsistent; the message names the flag or variable."""


class KafkaSecurityError(ConnectionConfigError):
    """A TLS/SASL option is missing or inconsistent; the message names the flag or variable."""


class TopicError(BusError):
    """A topic cannot be created, checked or described; the message names the topic."""
