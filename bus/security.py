"""How the roles that talk to Kafka with confluent-kafka (collector, replay, k8s-meta) reach a
broker that wants TLS or SASL: the same flags and variables as the detection worker.

``--security-protocol`` (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL), ``--ssl-cafile``,
``--ssl-certfile``/``--ssl-keyfile``, ``--sasl-mechanism`` (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512) and
``--sasl-username``; each flag falls back to ``PEREGRINE_KAFKA_<NAME>`` (for example
``PEREGRINE_KAFKA_SECURITY_PROTOCOL``). Secrets come from the environment only, never from flags
(they would show in ``ps``): ``PEREGRINE_KAFKA_SASL_PASSWORD`` and
``PEREGRINE_KAFKA_SSL_KEY_PASSWORD``; `KafkaSecurity` never prints them.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

PROTOCOLS: Final = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS: Final = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
PASSWORD_ENV: Final = "PEREGRINE_KAFKA_SASL_PASSWORD"
KEY_PASSWORD_ENV: Final = "PEREGRINE_KAFKA_SSL_KEY_PASSWORD"


class KafkaSecurityError(ValueError):
    """A TLS/SASL option is missing or inconsistent; the message names the flag or variable."""


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

    def librdkafka(self) -> dict[str, str]:
        """The confluent-kafka (librdkafka) settings for producers, consumers and admin clients."""
        conf = {"security.protocol": self.protocol}
        if self.uses_tls:
            optional = {"ssl.ca.location": self.ca_file, "ssl.certificate.location": self.cert_file,
                        "ssl.key.location": self.key_file, "ssl.key.password": self.key_password}  # fmt: skip
            conf.update({k: v for k, v in optional.items() if v is not None})
        if self.uses_sasl:
            conf["sasl.mechanism"] = self.sasl_mechanism
            conf["sasl.username"] = str(self.sasl_username)
            conf["sasl.password"] = str(self.sasl_password)
        return conf


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("Kafka TLS and SASL (secrets from the environment only)")
    group.add_argument("--security-protocol", choices=PROTOCOLS, help="default PLAINTEXT")
    group.add_argument("--ssl-cafile", help="CA bundle that signed the brokers' certificates")
    group.add_argument("--ssl-certfile", help="client certificate (with --ssl-keyfile)")
    group.add_argument("--ssl-keyfile", help=f"client key; its password: env {KEY_PASSWORD_ENV}")
    group.add_argument("--sasl-mechanism", choices=SASL_MECHANISMS, help="default PLAIN")
    group.add_argument("--sasl-username", help=f"password: env {PASSWORD_ENV}")


def from_args(args: argparse.Namespace, env: Mapping[str, str] = os.environ) -> KafkaSecurity:
    """Flags first, then ``PEREGRINE_KAFKA_*`` variables (KafkaSecurityError when inconsistent)."""

    def pick(name: str) -> str | None:
        flag = getattr(args, name, None)
        return flag if flag is not None else env.get(f"PEREGRINE_KAFKA_{name.upper()}")

    return KafkaSecurity(
        protocol=pick("security_protocol") or "PLAINTEXT",
        ca_file=pick("ssl_cafile"),
        cert_file=pick("ssl_certfile"),
        key_file=pick("ssl_keyfile"),
        key_password=env.get(KEY_PASSWORD_ENV) or None,
        sasl_mechanism=pick("sasl_mechanism") or "PLAIN",
        sasl_username=pick("sasl_username"),
        sasl_password=env.get(PASSWORD_ENV) or None,
    )
