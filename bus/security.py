"""The TLS and SASL half of a Kafka connection (`bus.connection` reads it from flags and environment).

``--security-protocol`` (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL), ``--ssl-cafile``,
``--ssl-certfile``/``--ssl-keyfile``, ``--sasl-mechanism`` (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512) and
``--sasl-username``; each flag falls back to ``PEREGRINE_KAFKA_<NAME>`` (for example
``PEREGRINE_KAFKA_SECURITY_PROTOCOL``). Secrets come from the environment only, never from flags
(they would show in ``ps``): ``PEREGRINE_KAFKA_SASL_PASSWORD`` and
``PEREGRINE_KAFKA_SSL_KEY_PASSWORD``; `KafkaSecurity` never prints them. What each client library
makes of these settings is `bus.clients` and `bus.faust_auth`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from bus.errors import KafkaSecurityError

PROTOCOLS: Final = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS: Final = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
PASSWORD_ENV: Final = "PEREGRINE_KAFKA_SASL_PASSWORD"
KEY_PASSWORD_ENV: Final = "PEREGRINE_KAFKA_SSL_KEY_PASSWORD"


@dataclass(frozen=True, slots=True)
class KafkaSecurity:
    protocol: str = "PLAINTEXT"
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    key_password: str | None = field(default=None, repr=False)
    sasl_mechanism: str = "PLAIN"
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise KafkaSecurityError(f"--security-protocol must be one of {', '.join(PROTOCOLS)}, "
                                     f"not {self.protocol!r}")  # fmt: skip
        if self.protocol.startswith("SASL_"):
            if self.sasl_mechanism not in SASL_MECHANISMS:
                raise KafkaSecurityError(f"--sasl-mechanism must be one of {', '.join(SASL_MECHANISMS)}")
            if not self.sasl_username or not self.sasl_password:
                needs = f"{self.protocol} needs --sasl-username and {PASSWORD_ENV} (environment)"
                raise KafkaSecurityError(needs)
        if (self.cert_file is None) != (self.key_file is None):
            raise KafkaSecurityError("--ssl-certfile and --ssl-keyfile go together")

    @property
    def uses_tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    @property
    def uses_sasl(self) -> bool:
        return self.protocol.startswith("SASL_")
