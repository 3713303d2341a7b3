"""The sink YAML file, environment secrets, and secrets never leaking into text."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import pytest

from rules.priority import Priority
from sinks.config import RetryConfig, load_config, parse_config
from sinks.errors import ConfigError
from sinks.options import Secret

WEBHOOK_SECRET = "https://hooks.slack.test/services/T1/B2/TOPSECRETTOKEN"
HEC_SECRET = "hec-token-7c1e-SECRET"
KAFKA_SECRET = "kafka-SECRET-pw"
KAFKA_ENV = {"PEREGRINE_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "PEREGRINE_KAFKA_SASL_USERNAME": "sink",
             "PEREGRINE_KAFKA_SASL_PASSWORD": KAFKA_SECRET}  # fmt: skip
ENV = {"SLACK_URL": WEBHOOK_SECRET, "HEC_TOKEN": HEC_SECRET, **KAFKA_ENV}
SECRETS = (WEBHOOK_SECRET, HEC_SECRET, KAFKA_SECRET)

YAML = """
kafka:
  bootstrap_servers: 127.0.0.1:9092
  topic: alerts-test
  group_prefix: sink-test
  properties: {fetch.wait.max.ms: "100"}
retry: {max_attempts: 5, initial_backoff_s: 0.1}
batch: {max_alerts: 50}
destinations:
  - name: slack-secops
    type: slack
    webhook_url_env: SLACK_URL
    mention: "<!here>"
    route: {min_priority: warning, exclude_namespaces: [kube-system]}
  - name: splunk
    type: splunk
    url: https://splunk.test:8088
    token_env: HEC_TOKEN
    ack: true
    batch: {max_alerts: 500}
    retry: {max_attempts: 9}
"""


def test_full_file_loads_with_defaults_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "sink.yaml"
    path.write_text(YAML)
    config = load_config(path, ENV)
    assert config.kafka.topic == "alerts-test"
    assert config.kafka.dlq_topic == "peregrine.alerts.dlq"
    assert config.kafka.group_id("splunk") == "sink-test-splunk"
    assert config.kafka.auto_offset_reset == "earliest"
    assert config.kafka.properties == (("fetch.wait.max.ms", "100"),)
    security = config.kafka.connection.security
    assert (security.protocol, security.sasl_username, security.sasl_password) == ("SASL_PLAINTEXT", "sink",
                                                                                 KAFKA_SECRET)  # fmt: skip
    slack, splunk = config.destinations
    assert slack.route.min_priority is Priority.WARNING
    assert slack.retry.max_attempts == 5 and slack.batch.max_alerts == 50
    assert splunk.retry.max_attempts == 9 and splunk.retry.initial_backoff_s == 0.1
    assert splunk.batch.max_alerts == 500
    assert splunk.settings.token.reveal() == HEC_SECRET
    assert slack.settings.http.url.reveal() == WEBHOOK_SECRET


def test_secrets_never_appear_in_reprs_or_logs(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "sink.yaml"
    path.write_text(YAML)
    config = load_config(path, ENV)
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("peregrine.sink").info("loaded %s", config)
    text = repr(config) + str(config) + caplog.text
    for secret in SECRETS:
        assert secret not in text
    assert repr(Secret("x")) == str(Secret("x")) == "***"


def test_secret_values_in_the_file_are_refused_without_echoing_them() -> None:
    doc = {"kafka": {"bootstrap_servers": "k:9092"},
           "destinations": [{"name": "s", "type": "splunk", "url": "http://s", "token": HEC_SECRET}]}
    with pytest.raises(ConfigError) as info:
        parse_config(doc, "sink.yaml", ENV)
    assert "token_env" in str(info.value) and HEC_SECRET not in str(info.value)


def test_a_missing_environment_variable_is_named_with_its_key_path() -> None:
    doc = {"kafka": {"bootstrap_servers": "k:9092"},
           "destinations": [{"name": "s", "type": "splunk", "url": "http://s", "token_env": "NOPE"}]}
    expected = r"sink.yaml: destinations\[0\].token_env: environment variable NOPE"
    with pytest.raises(ConfigError, match=expected):
        parse_config(doc, "sink.yaml", {})


def test_a_bad_slack_url_is_reported_without_the_url() -> None:
    doc = {"kafka": {"bootstrap_servers": "k:9092"},
           "destinations": [{"name": "s", "type": "slack", "webhook_url_env": "SLACK_URL"}]}
    with pytest.raises(ConfigError) as info:
        parse_config(doc, "sink.yaml", {"SLACK_URL": "ftp://TOPSECRET"})
    assert "TOPSECRET" not in str(info.value)


@pytest.mark.parametrize(
    ("destination", "message"),
    [
        ({"name": "x", "type": "nope"}, r"destinations\[0\].type: must be one of"),
        ({"name": "x", "type": "stdout", "colour": "red"}, r"destinations\[0\]: unknown key\(s\): colour"),
        ({"name": "Bad Name", "type": "stdout"}, r"destinations\[0\].name: must be"),
        ({"name": "x", "type": "stdout", "route": {"min_priority": "loud"}}, "unknown priority 'loud'"),
        ({"name": "x", "type": "syslog", "host": "h", "format": "xml"}, "format: must be one of json, cef"),
        ({"name": "x", "type": "stdout", "batch": {"max_alerts": 0}}, r"batch.max_alerts: must be >= 1"),
    ],
)
def test_invalid_destinations_name_the_key(destination: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        doc = {"kafka": {"bootstrap_servers": "k:9092"}, "destinations": [destination]}
        parse_config(doc, "sink.yaml", {})


def test_duplicate_destination_names_are_refused() -> None:
    doc = {"kafka": {"bootstrap_servers": "k"}, "destinations": [{"name": "a", "type": "stdout"}] * 2}
    with pytest.raises(ConfigError, match="duplicate destination name"):
        parse_config(doc, "sink.yaml", {})


def test_kafka_is_reached_like_every_role_flags_then_environment_then_the_file() -> None:
    doc = {"kafka": {"bootstrap_servers": "file:9092"}, "destinations": [{"name": "a", "type": "stdout"}]}
    assert parse_config(doc, "sink.yaml", {}).kafka.bootstrap_servers == "file:9092"
    env = {"PEREGRINE_BOOTSTRAP_SERVERS": "env:1,env:2"}
    assert parse_config(doc, "sink.yaml", env).kafka.connection.bootstrap == ("env:1", "env:2")
    flags = argparse.Namespace(bootstrap_servers="flag:3", security_protocol="SSL", ssl_cafile="/ca.pem")
    kafka = parse_config(doc, "sink.yaml", env, flags).kafka
    assert kafka.bootstrap_servers == "flag:3"
    assert (kafka.connection.security.protocol, kafka.connection.security.ca_file) == ("SSL", "/ca.pem")
    no_file = {"kafka": {}, "destinations": [{"name": "a", "type": "stdout"}]}
    assert parse_config(no_file, "sink.yaml", {}).kafka.bootstrap_servers == "127.0.0.1:9092"


def test_sasl_without_the_password_variable_is_refused_by_name() -> None:
    doc = {"kafka": {}, "destinations": [{"name": "a", "type": "stdout"}]}
    env = {k: v for k, v in KAFKA_ENV.items() if k != "PEREGRINE_KAFKA_SASL_PASSWORD"}
    with pytest.raises(ConfigError, match="PEREGRINE_KAFKA_SASL_PASSWORD"):
        parse_config(doc, "sink.yaml", env)


@pytest.mark.parametrize(
    ("properties", "message"),
    [
        ({"sasl.password": KAFKA_SECRET}, r"kafka.properties.sasl.password: .*PEREGRINE_KAFKA_SASL_PASSWORD"),
        ({"ssl.key.password": KAFKA_SECRET}, r"ssl.key.password: .*PEREGRINE_KAFKA_SSL_KEY_PASSWORD"),
        ({"security.protocol": "SASL_SSL"}, r"properties.security.protocol: .*--security-protocol"),
        ({"sasl.username": "sink"}, r"properties.sasl.username: .*PEREGRINE_KAFKA_SASL_USERNAME"),
        ({"bootstrap.servers": "k:1"}, r"properties.bootstrap.servers: .*PEREGRINE_BOOTSTRAP_SERVERS"),
        ({"sasl.oauthbearer.client.secret": KAFKA_SECRET}, r"client.secret: secrets are not read"),
    ],
)
def test_connection_keys_and_secrets_in_properties_are_refused_without_echoing_them(
    properties: dict[str, str], message: str
) -> None:
    doc = {"kafka": {"properties": properties}, "destinations": [{"name": "a", "type": "stdout"}]}
    with pytest.raises(ConfigError, match=message) as info:
        parse_config(doc, "sink.yaml", {})
    assert KAFKA_SECRET not in str(info.value)


def test_secret_properties_env_is_gone_and_says_where_the_password_comes_from() -> None:
    doc = {"kafka": {"secret_properties_env": {"sasl.password": "KAFKA_PW"}},
           "destinations": [{"name": "a", "type": "stdout"}]}  # fmt: skip
    with pytest.raises(ConfigError, match="kafka.secret_properties_env: .*PEREGRINE_KAFKA_SASL_PASSWORD"):
        parse_config(doc, "sink.yaml", {"KAFKA_PW": KAFKA_SECRET})


def test_retry_worst_case_bounds_the_poll_interval_even_for_huge_attempt_counts() -> None:
    assert RetryConfig(max_attempts=1).worst_case_s() == 0.0
    short = RetryConfig(max_attempts=3, initial_backoff_s=1, max_backoff_s=10, max_retry_after_s=0)
    assert short.worst_case_s() == 3.0
    huge = RetryConfig(max_attempts=10**6, initial_backoff_s=0.05, max_backoff_s=1.0, max_retry_after_s=300)
    assert huge.worst_case_s() > 86_400
