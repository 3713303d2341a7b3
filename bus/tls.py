"""The one place a client-side TLS context is built (for the Python Kafka clients; librdkafka builds its
own from the same files)."""

from __future__ import annotations

import ssl

from bus.security import KafkaSecurity


def client_context(
    ca_file: str | None = None,
    cert_file: str | None = None,
    key_file: str | None = None,
    key_password: str | None = None,
) -> ssl.SSLContext:
    """Verifies the server (certificate and host name) against ``ca_file``, or the system CAs; presents
    ``cert_file``/``key_file`` when given."""
    context = ssl.create_default_context(cafile=ca_file)
    if cert_file is not None:
        context.load_cert_chain(cert_file, key_file, password=key_password)
    return context


def kafka_context(security: KafkaSecurity) -> ssl.SSLContext:
    return client_context(security.ca_file, security.cert_file, security.key_file, security.key_password)
