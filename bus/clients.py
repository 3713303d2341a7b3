"""A `KafkaConnection` in each client library's own words: librdkafka (confluent-kafka) and aiokafka.

Faust's are in `bus.faust_auth`, apart so that roles without Faust never import it. Nothing else
translates connection settings: a role adds only its own tuning (acks, linger, group...).
"""

from __future__ import annotations

from typing import Any, Final, TypeAlias

from bus import tls
from bus.connection import BOOTSTRAP_ENV, KafkaConnection
from bus.security import KEY_PASSWORD_ENV, PASSWORD_ENV, KafkaSecurity

# What confluent-kafka's constructors take (a dict is invariant: callers add their own tuning to it).
LibrdkafkaConfig: TypeAlias = dict[str, str | int | float | bool]

# The librdkafka keys the connection sets, and where an operator sets each instead: a role that
# accepts extra librdkafka properties (the sink's file) refuses these, so there is one way to say them.
CONNECTION_KEYS: Final = {
    "bootstrap.servers": f"--bootstrap-servers or {BOOTSTRAP_ENV}",
    "security.protocol": "--security-protocol or PEREGRINE_KAFKA_SECURITY_PROTOCOL",
    "ssl.ca.location": "--ssl-cafile or PEREGRINE_KAFKA_SSL_CAFILE",
    "ssl.certificate.location": "--ssl-certfile or PEREGRINE_KAFKA_SSL_CERTFILE",
    "ssl.key.location": "--ssl-keyfile or PEREGRINE_KAFKA_SSL_KEYFILE",
    "ssl.key.password": f"the environment variable {KEY_PASSWORD_ENV}",
    "sasl.mechanism": "--sasl-mechanism or PEREGRINE_KAFKA_SASL_MECHANISM",
    "sasl.mechanisms": "--sasl-mechanism or PEREGRINE_KAFKA_SASL_MECHANISM",
    "sasl.username": "--sasl-username or PEREGRINE_KAFKA_SASL_USERNAME",
    "sasl.password": f"the environment variable {PASSWORD_ENV}",
}


# What every librdkafka producer of ours sets: idempotent, acknowledged by every in-sync replica,
# one request in flight per broker. With several in flight, a request refused while the broker
# was still making a new partition (NOT_LEADER) is overtaken by the next one, which the broker takes
# as the producer's first and writes; the refused request's records are never written, yet the
# next one's ack makes librdkafka report them delivered (KAFKA-15591, fixed in Kafka 4.5 only).
# Seen in 4 of 29 outage-test broker logs: the events partition began at producer sequence 3.
IDEMPOTENT_PRODUCER: Final[LibrdkafkaConfig] = {
    "enable.idempotence": True,
    "acks": "all",
    "max.in.flight.requests.per.connection": 1,
}


def librdkafka_security(security: KafkaSecurity) -> LibrdkafkaConfig:
    """The TLS/SASL settings for confluent-kafka producers, consumers and admin clients."""
    conf: LibrdkafkaConfig = {"security.protocol": security.protocol}
    if security.uses_tls:
        optional = {
            "ssl.ca.location": security.ca_file,
            "ssl.certificate.location": security.cert_file,
            "ssl.key.location": security.key_file,
            "ssl.key.password": security.key_password,
        }
        conf.update({k: v for k, v in optional.items() if v is not None})
    if security.uses_sasl:
        conf["sasl.mechanism"] = security.sasl_mechanism
        conf["sasl.username"] = str(security.sasl_username)
        conf["sasl.password"] = str(security.sasl_password)
    return conf


def librdkafka_config(connection: KafkaConnection) -> LibrdkafkaConfig:
    """``bootstrap.servers`` plus the TLS/SASL settings: the base of every confluent-kafka client."""
    return {"bootstrap.servers": connection.servers, **librdkafka_security(connection.security)}


def aiokafka_kwargs(connection: KafkaConnection) -> dict[str, Any]:
    """Keyword arguments for aiokafka's consumers, producers and admin client (a fresh TLS context)."""
    security = connection.security
    kwargs: dict[str, Any] = {"bootstrap_servers": list(connection.bootstrap),
                              "security_protocol": security.protocol}  # fmt: skip
    if security.uses_tls:
        kwargs["ssl_context"] = tls.kafka_context(security)
    if security.uses_sasl:
        kwargs["sasl_mechanism"] = security.sasl_mechanism
        kwargs["sasl_plain_username"] = security.sasl_username
        kwargs["sasl_plain_password"] = security.sasl_password
    return kwargs
