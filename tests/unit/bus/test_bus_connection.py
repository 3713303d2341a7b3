"""`bus.connection`: one reading of the Kafka flags and variables, secrets that never print, and what
each client library is told for each protocol."""

from __future__ import annotations

import argparse
import ssl

import certifi
import pytest

from bus import connection, topics
from bus.clients import CONNECTION_KEYS, aiokafka_kwargs, librdkafka_config
from bus.connection import KafkaConnection
from bus.errors import BusError, ConnectionConfigError, KafkaSecurityError
from bus.faust_auth import broker_urls, credentials
from bus.security import KafkaSecurity

PASSWORD = "pw-SECRET-7f3a"
KEY_PASSWORD = "key-SECRET-91c2"
CA = certifi.where()  # any real CA bundle: the TLS context loads it


def parse(argv: list[str], env: dict[str, str], default: str = "127.0.0.1:9092") -> KafkaConnection:
    parser = argparse.ArgumentParser()
    connection.add_arguments(parser)
    return connection.from_args(parser.parse_args(argv), env, default_bootstrap=default)


def test_defaults_are_a_local_plaintext_broker() -> None:
    conn = parse([], {})
    assert conn == KafkaConnection() and conn.bootstrap == ("127.0.0.1:9092",)
    assert conn.security == KafkaSecurity()
    assert parse([], {}, default="yaml:1").servers == "yaml:1"


def test_flags_win_over_variables_which_win_over_the_default() -> None:
    env = {"PEREGRINE_BOOTSTRAP_SERVERS": "env:1, env:2", "PEREGRINE_KAFKA_SECURITY_PROTOCOL": "SSL",
           "PEREGRINE_KAFKA_SSL_CAFILE": "/env/ca.pem"}  # fmt: skip
    conn = parse([], env, default="yaml:1")
    assert conn.bootstrap == ("env:1", "env:2") and conn.servers == "env:1,env:2"
    assert (conn.security.protocol, conn.security.ca_file) == ("SSL", "/env/ca.pem")
    conn = parse(["--bootstrap", "flag:3", "--security-protocol", "PLAINTEXT", "--ssl-cafile", "/f.pem"], env)
    assert conn.bootstrap == ("flag:3",)
    assert (conn.security.protocol, conn.security.ca_file) == ("PLAINTEXT", "/f.pem")
    assert parse(["--bootstrap-servers", "a:1,b:2"], {}).bootstrap == ("a:1", "b:2")


def test_passwords_come_from_the_environment_only() -> None:
    parser = argparse.ArgumentParser()
    connection.add_arguments(parser)
    for flag in ("--sasl-password", "--ssl-key-password"):
        with pytest.raises(SystemExit):
            parser.parse_args([flag, "x"])
    argv = ["--security-protocol", "SASL_SSL", "--sasl-username", "u", "--sasl-mechanism", "SCRAM-SHA-512"]
    with pytest.raises(KafkaSecurityError, match="PEREGRINE_KAFKA_SASL_PASSWORD"):
        parse(argv, {})
    conn = parse(argv, {"PEREGRINE_KAFKA_SASL_PASSWORD": PASSWORD})
    assert conn.security.sasl_password == PASSWORD


def test_secrets_never_appear_in_repr_or_str() -> None:
    env = {"PEREGRINE_KAFKA_SASL_PASSWORD": PASSWORD, "PEREGRINE_KAFKA_SSL_KEY_PASSWORD": KEY_PASSWORD}
    conn = parse(["--security-protocol", "SASL_SSL", "--sasl-username", "u", "--ssl-certfile", "c.pem",
                  "--ssl-keyfile", "k.pem"], env)  # fmt: skip
    assert conn.security.key_password == KEY_PASSWORD
    text = repr(conn) + str(conn) + repr(conn.security) + str(conn.security)
    assert PASSWORD not in text and KEY_PASSWORD not in text
    assert "SASL_SSL" in text and "u" in text


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--bootstrap", ","], "--bootstrap-servers or PEREGRINE_BOOTSTRAP_SERVERS"),
        (["--ssl-certfile", "c.pem"], "--ssl-certfile and --ssl-keyfile go together"),
    ],
)
def test_inconsistent_settings_name_the_flag(argv: list[str], message: str) -> None:
    with pytest.raises(ConnectionConfigError, match=message):
        parse(argv, {})


def test_errors_share_one_root_and_stay_value_errors() -> None:
    assert issubclass(KafkaSecurityError, ConnectionConfigError)
    assert issubclass(ConnectionConfigError, BusError) and issubclass(ConnectionConfigError, ValueError)
    assert issubclass(topics.TopicError, BusError)
    with pytest.raises(ValueError, match="--security-protocol must be one of"):
        KafkaSecurity("TLS")


def test_plaintext_tells_each_client_only_where_the_brokers_are() -> None:
    conn = KafkaConnection(("a:1", "b:2"))
    assert librdkafka_config(conn) == {"bootstrap.servers": "a:1,b:2", "security.protocol": "PLAINTEXT"}
    assert aiokafka_kwargs(conn) == {"bootstrap_servers": ["a:1", "b:2"], "security_protocol": "PLAINTEXT"}
    assert broker_urls(conn) == ["kafka://a:1", "kafka://b:2"]
    assert credentials(conn) is None


def test_ssl_gives_files_to_librdkafka_and_a_verifying_context_to_the_python_clients() -> None:
    conn = KafkaConnection(("a:1",), KafkaSecurity("SSL", ca_file=CA))
    assert librdkafka_config(conn) == {"bootstrap.servers": "a:1", "security.protocol": "SSL",
                                       "ssl.ca.location": CA}  # fmt: skip
    kwargs = aiokafka_kwargs(conn)
    context = kwargs.pop("ssl_context")
    assert kwargs == {"bootstrap_servers": ["a:1"], "security_protocol": "SSL"}
    assert isinstance(context, ssl.SSLContext) and context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname
    faust_credentials = credentials(conn)
    assert type(faust_credentials).__name__ == "SSLCredentials"


def test_sasl_ssl_with_scram_gives_every_client_the_mechanism_and_the_login() -> None:
    security = KafkaSecurity("SASL_SSL", ca_file=CA, sasl_mechanism="SCRAM-SHA-512",
                             sasl_username="u", sasl_password=PASSWORD)  # fmt: skip
    conn = KafkaConnection(("a:1",), security)
    assert librdkafka_config(conn) == {
        "bootstrap.servers": "a:1", "security.protocol": "SASL_SSL", "ssl.ca.location": CA,
        "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "u", "sasl.password": PASSWORD,
    }  # fmt: skip
    kwargs = aiokafka_kwargs(conn)
    assert isinstance(kwargs.pop("ssl_context"), ssl.SSLContext)
    assert kwargs == {"bootstrap_servers": ["a:1"], "security_protocol": "SASL_SSL",
                      "sasl_mechanism": "SCRAM-SHA-512", "sasl_plain_username": "u",
                      "sasl_plain_password": PASSWORD}  # fmt: skip
    faust_credentials = credentials(conn)
    assert type(faust_credentials).__name__ == "SASLCredentials"
    assert faust_credentials.username == "u"  # type: ignore[union-attr]
    assert faust_credentials.mechanism.value == "SCRAM-SHA-512"  # type: ignore[union-attr]
    assert faust_credentials.ssl_context is not None  # type: ignore[union-attr]


def test_sasl_plaintext_needs_no_tls_context() -> None:
    security = KafkaSecurity("SASL_PLAINTEXT", sasl_username="u", sasl_password=PASSWORD)
    conn = KafkaConnection(("a:1",), security)
    assert "ssl_context" not in aiokafka_kwargs(conn)
    assert not any(k.startswith("ssl.") for k in librdkafka_config(conn))
    assert credentials(conn).ssl_context is None  # type: ignore[union-attr]


def test_every_key_the_connection_sets_is_one_a_user_is_told_where_to_set() -> None:
    security = KafkaSecurity("SASL_SSL", ca_file="ca", cert_file="c", key_file="k", key_password="kp",
                             sasl_username="u", sasl_password="p")  # fmt: skip
    assert set(librdkafka_config(KafkaConnection(("a:1",), security))) <= set(CONNECTION_KEYS)
