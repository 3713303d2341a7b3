"""Where a role's Kafka is and how to reach it: `KafkaConnection`, read once from flags and environment.

Every role that talks to Kafka (collect, replay, k8s-meta, worker, sink) takes the same options:
``--bootstrap-servers`` (alias ``--bootstrap``, env ``PEREGRINE_BOOTSTRAP_SERVERS``) and the TLS/SASL
flags of `bus.security` (env ``PEREGRINE_KAFKA_*``; passwords from the environment only). A flag
wins over its variable, which wins over the role's default. The client libraries' settings are
derived from the connection in `bus.clients` (librdkafka, aiokafka) and `bus.faust_auth` (Faust).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from bus.errors import ConnectionConfigError
from bus.security import KEY_PASSWORD_ENV, PASSWORD_ENV, PROTOCOLS, SASL_MECHANISMS, KafkaSecurity

BOOTSTRAP_ENV: Final = "PEREGRINE_BOOTSTRAP_SERVERS"
DEFAULT_BOOTSTRAP: Final = "127.0.0.1:9092"


@dataclass(frozen=True, slots=True)
class KafkaConnection:
    bootstrap: tuple[str, ...] = (DEFAULT_BOOTSTRAP,)
    security: KafkaSecurity = field(default_factory=KafkaSecurity)  # its repr hides the secrets

    def __post_init__(self) -> None:
        if not self.bootstrap or not all(self.bootstrap):
            raise ConnectionConfigError(f"no bootstrap servers (--bootstrap-servers or {BOOTSTRAP_ENV})")

    @property
    def servers(self) -> str:
        """The bootstrap list as librdkafka and the command line spell it: ``host:port,host:port``."""
        return ",".join(self.bootstrap)


def parse_bootstrap(text: str) -> tuple[str, ...]:
    """``"a:1, b:2"`` -> ``("a:1", "b:2")``."""
    return tuple(h.strip() for h in text.split(",") if h.strip())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The connection flags every Kafka role takes; `from_args` reads them back."""
    parser.add_argument("--bootstrap-servers", "--bootstrap", dest="bootstrap_servers",
                        help=f"Kafka host:port[,host:port...] (env {BOOTSTRAP_ENV})")  # fmt: skip
    group = parser.add_argument_group("Kafka TLS and SASL (secrets from the environment only)")
    group.add_argument("--security-protocol", choices=PROTOCOLS, help="default PLAINTEXT")
    group.add_argument("--ssl-cafile", help="CA bundle that signed the brokers' certificates")
    group.add_argument("--ssl-certfile", help="client certificate (with --ssl-keyfile)")
    group.add_argument("--ssl-keyfile", help=f"client key; its password: env {KEY_PASSWORD_ENV}")
    group.add_argument("--sasl-mechanism", choices=SASL_MECHANISMS, help="default PLAIN")
    group.add_argument("--sasl-username", help=f"password: env {PASSWORD_ENV}")


def from_args(
    args: argparse.Namespace, env: Mapping[str, str] = os.environ, default_bootstrap: str = DEFAULT_BOOTSTRAP
) -> KafkaConnection:
    """Flags first, then ``PEREGRINE_*`` variables, then the defaults (ConnectionConfigError when
    inconsistent). ``default_bootstrap`` is the role's own fallback, e.g. the sink's YAML file."""

    def pick(name: str) -> str | None:
        flag = getattr(args, name, None)
        return flag if flag is not None else env.get(f"PEREGRINE_KAFKA_{name.upper()}")

    bootstrap = getattr(args, "bootstrap_servers", None) or env.get(BOOTSTRAP_ENV) or default_bootstrap
    security = KafkaSecurity(
        protocol=pick("security_protocol") or "PLAINTEXT",
        ca_file=pick("ssl_cafile"),
        cert_file=pick("ssl_certfile"),
        key_file=pick("ssl_keyfile"),
        key_password=env.get(KEY_PASSWORD_ENV) or None,
        sasl_mechanism=pick("sasl_mechanism") or "PLAIN",
        sasl_username=pick("sasl_username"),
        sasl_password=env.get(PASSWORD_ENV) or None,
    )
    return KafkaConnection(parse_bootstrap(bootstrap), security)
