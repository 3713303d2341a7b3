"""A `KafkaConnection` in Faust's words: its broker URLs and its credentials object."""

from __future__ import annotations

import faust
from faust.types.auth import CredentialsT

from bus import tls
from bus.connection import KafkaConnection


def broker_urls(connection: KafkaConnection) -> list[str]:
    return [f"kafka://{host}" for host in connection.bootstrap]


def credentials(connection: KafkaConnection) -> CredentialsT | None:
    """Faust's ``broker_credentials``: SASL (over TLS or not), TLS alone, or None for PLAINTEXT."""
    security = connection.security
    context = tls.kafka_context(security) if security.uses_tls else None
    if security.uses_sasl:
        return faust.SASLCredentials(
            username=security.sasl_username,
            password=security.sasl_password,
            ssl_context=context,
            mechanism=security.sasl_mechanism,
        )
    if context is not None:
        return faust.SSLCredentials(context)
    return None
