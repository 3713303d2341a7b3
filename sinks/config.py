"""The sink configuration: one YAML file plus environment variables for secrets.

```yaml
kafka:
  bootstrap_servers: kafka:9092      # unless --bootstrap-servers or PEREGRINE_BOOTSTRAP_SERVERS say
  topic: peregrine.alerts            # default
  dlq_topic: peregrine.alerts.dlq    # default
  suppressions_topic: peregrine.sink.suppressions   # default; `peregrine sink suppress` writes it
  group_prefix: peregrine-sink       # group = <prefix>-<destination name>
  auto_offset_reset: earliest        # a new group starts at the retained backlog (or: latest)
  properties: {fetch.max.bytes: "52428800"}   # librdkafka tuning only; session.timeout.ms is 10 s
                                               # unless set here (sinks.runner.SESSION_TIMEOUT_MS)
retry: {max_attempts: 10, initial_backoff_s: 0.5, max_backoff_s: 30, max_retry_after_s: 300}
batch: {max_alerts: 200, max_bytes: 1048576, max_wait_s: 0.2}
value_limit_bytes: 8192             # longest string kept per field, then truncated with a marker
destinations:
  - name: slack-secops
    type: slack                      # see registry.KINDS
    webhook_url_env: SLACK_WEBHOOK_URL
    route: {min_priority: warning, exclude_namespaces: [kube-system]}
  - name: splunk
    type: splunk
    url: https://splunk:8088
    token_env: SPLUNK_HEC_TOKEN
    batch: {max_alerts: 500}         # overrides the top-level defaults key by key
```

A destination may aggregate (absent: every alert is delivered, the right default for a SIEM); see
`sinks.aggregate` for the windows and their crash safety:

```yaml
    aggregate:
      window_s: 60                   # event time from a key's first alert; also the wall-clock bound
      key: [rule, k8s.pod.name]      # default: rule + k8s.pod.name, else container.id, else hostname
                                     # names: rule, hostname, priority, source or any output field
      sample_fields: [proc.cmdline, user.name]   # up to 5 distinct values each, in the summary
      max_open_keys: 1000            # state bound: one more flushes the oldest window's summary early
      overrides:                     # the first whose rule or tag globs match sets key and/or window
        - {rules: ["Drop and execute*"], key: [rule, hostname], window_s: 300}
        - {tags: [T1059], window_s: 10}
    pace: {per_s: 1, burst: 5}       # requests per second and burst (`sinks.pacing`); slack's
                                     # default is this one (Slack's published webhook limit),
                                     # others are unpaced; per_s: 0 turns pacing off
```

Suppressions (`sinks.suppress`), besides those `peregrine sink suppress` puts on the control topic:

```yaml
suppress:
  - match: {rule: "Terminal shell in container", k8s.pod.name: "debug-*"}   # globs, all must match
    until: "2026-12-24T00:00:00Z"     # RFC 3339 with a zone; expired entries are kept, inert
    destinations: [slack-secops]      # default: every destination
    reason: "debug pods during the migration"
```

Every dataclass is frozen; secrets are `Secret` (repr ``***``). Errors name the file and the key.

Kafka is reached like every other role reaches it (`bus.connection`): TLS and SASL come from the
``--security-protocol``, ``--ssl-*`` and ``--sasl-*`` flags or their ``PEREGRINE_KAFKA_*`` variables,
the password from ``PEREGRINE_KAFKA_SASL_PASSWORD`` only. ``properties`` holds librdkafka tuning keys;
the keys the connection sets, and anything secret, are refused there with the flag or variable to use.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from bus import connection as kafka_connection
from bus import topics
from bus.clients import CONNECTION_KEYS
from bus.connection import KafkaConnection
from bus.errors import ConnectionConfigError
from sinks.aggregate import AggregateConfig, KeyOverride
from sinks.errors import ConfigError
from sinks.options import Options
from sinks.pacing import SLACK_PACE, PaceConfig
from sinks.registry import KINDS
from sinks.routing import Route, parse_route
from sinks.suppress import Suppression

# Options for one element of a list (the file and environment are the caller's)
Element = Callable[[Any, str], Options]
_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")


@dataclass(frozen=True, slots=True)
class RetryConfig:
    max_attempts: int = 10
    initial_backoff_s: float = 0.5
    max_backoff_s: float = 30.0
    max_retry_after_s: float = 300.0  # a Retry-After beyond this is capped, not obeyed blindly

    def worst_case_s(self) -> float:
        """Longest time one batch can spend waiting between attempts (Retry-After at its cap)."""
        total, step = 0.0, self.initial_backoff_s
        for done in range(self.max_attempts - 1):
            if step >= self.max_backoff_s:  # every remaining wait is the same: no need to loop on
                remaining = self.max_attempts - 1 - done
                return total + remaining * max(self.max_backoff_s, self.max_retry_after_s)
            total += max(step, self.max_retry_after_s)
            step *= 2
        return total


@dataclass(frozen=True, slots=True)
class BatchConfig:
    max_alerts: int = 200
    max_bytes: int = 1_048_576  # per request: receivers cap bodies (HEC max_content_length, Loki push size)
    max_wait_s: float = 0.2  # longest a partial batch waits for more alerts


@dataclass(frozen=True, slots=True)
class KafkaConfig:
    connection: KafkaConnection  # its repr hides the secrets
    topic: str = topics.ALERTS.name
    dlq_topic: str = topics.ALERTS_DLQ.name
    suppressions_topic: str = topics.SINK_SUPPRESSIONS.name
    group_prefix: str = "peregrine-sink"
    # Where a group with no committed offset starts. "earliest" loses nothing (a new destination
    # receives the retained backlog); "latest" starts a new destination quiet.
    auto_offset_reset: str = "earliest"
    properties: tuple[tuple[str, str], ...] = ()  # librdkafka tuning: no connection key, no secret

    @property
    def bootstrap_servers(self) -> str:
        return self.connection.servers

    def group_id(self, destination: str) -> str:
        return f"{self.group_prefix}-{destination}"


@dataclass(frozen=True, slots=True)
class DestinationConfig:
    name: str
    kind: str
    route: Route
    retry: RetryConfig
    batch: BatchConfig
    value_limit: int
    settings: Any  # the frozen config of `kind`, from its module's parse()
    aggregate: AggregateConfig | None = None  # None: every alert delivered as it comes
    pace: PaceConfig | None = None  # None: requests as fast as the receiver answers


@dataclass(frozen=True, slots=True)
class SinkConfig:
    kafka: KafkaConfig
    destinations: tuple[DestinationConfig, ...]
    suppress: tuple[Suppression, ...] = ()

    def destination(self, name: str) -> DestinationConfig:
        for d in self.destinations:
            if d.name == name:
                return d
        known = ", ".join(d.name for d in self.destinations)
        raise ConfigError(f"no destination named {name!r}; configured: {known}")


def load_config(
    path: str | Path, env: Mapping[str, str], args: argparse.Namespace | None = None
) -> SinkConfig:
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read: {exc.strerror}") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {exc}") from None
    return parse_config(doc, source, env, args)


def parse_config(
    doc: Any, source: str, env: Mapping[str, str], args: argparse.Namespace | None = None
) -> SinkConfig:
    """``args``: the command line's `bus.connection` flags, which win over the environment and the file."""
    top = Options(doc, "", source, env)
    kafka = _kafka(top.section("kafka"), env, args or argparse.Namespace())
    retry = _retry(top.section("retry"), RetryConfig())
    batch = _batch(top.section("batch"), BatchConfig())
    value_limit = top.integer("value_limit_bytes", 8192, minimum=256)
    entries = top.items("destinations")
    if not entries:
        raise top.error("destinations", "at least one destination is required")
    destinations = tuple(
        _destination(Options(entry, f"destinations[{i}]", source, env), retry, batch, value_limit,
                     lambda doc, path: Options(doc, path, source, env))
        for i, entry in enumerate(entries)
    )
    names = [d.name for d in destinations]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise top.error("destinations", f"duplicate destination name(s): {', '.join(duplicates)}")
    suppress = tuple(
        _suppression(Options(entry, f"suppress[{i}]", source, env), set(names))
        for i, entry in enumerate(top.items("suppress"))
    )
    top.done()
    return SinkConfig(kafka=kafka, destinations=destinations, suppress=suppress)


def _kafka(options: Options, env: Mapping[str, str], args: argparse.Namespace) -> KafkaConfig:
    if options.has("secret_properties_env"):
        raise options.error("secret_properties_env", "Kafka secrets come from PEREGRINE_KAFKA_SASL_PASSWORD "
                            "and PEREGRINE_KAFKA_SSL_KEY_PASSWORD, as for every role")  # fmt: skip
    default = options.text("bootstrap_servers", kafka_connection.DEFAULT_BOOTSTRAP)
    try:
        connection = kafka_connection.from_args(args, env, default_bootstrap=default)
    except ConnectionConfigError as exc:
        raise ConfigError(f"Kafka connection: {exc}") from None
    config = KafkaConfig(
        connection=connection,
        topic=options.text("topic", topics.ALERTS.name),
        dlq_topic=options.text("dlq_topic", topics.ALERTS_DLQ.name),
        suppressions_topic=options.text("suppressions_topic", topics.SINK_SUPPRESSIONS.name),
        group_prefix=options.text("group_prefix", "peregrine-sink"),
        auto_offset_reset=options.choice("auto_offset_reset", "earliest", ("earliest", "latest")),
        properties=tuple(_tuning(options).items()),
    )
    options.done()
    return config


def _tuning(options: Options) -> dict[str, str]:
    """``properties``, refusing what the connection sets (and secrets) with where to set it instead."""
    properties = options.string_map("properties")
    for key in properties:
        where = CONNECTION_KEYS.get(key)
        if where is not None:
            raise options.error(f"properties.{key}", f"set by {where}, as for every Kafka role")
        if "password" in key or "secret" in key:
            raise options.error(f"properties.{key}", "secrets are not read from the file; "
                                "Kafka's come from PEREGRINE_KAFKA_* environment variables")  # fmt: skip
    return properties


def _retry(options: Options, base: RetryConfig) -> RetryConfig:
    config = RetryConfig(
        max_attempts=options.integer("max_attempts", base.max_attempts, minimum=1),
        initial_backoff_s=options.number("initial_backoff_s", base.initial_backoff_s),
        max_backoff_s=options.number("max_backoff_s", base.max_backoff_s),
        max_retry_after_s=options.number("max_retry_after_s", base.max_retry_after_s),
    )
    options.done()
    return config


def _batch(options: Options, base: BatchConfig) -> BatchConfig:
    config = BatchConfig(
        max_alerts=options.integer("max_alerts", base.max_alerts, minimum=1),
        max_bytes=options.integer("max_bytes", base.max_bytes, minimum=1024),
        max_wait_s=options.number("max_wait_s", base.max_wait_s, minimum=0.001),
    )
    options.done()
    return config


def _destination(
    options: Options, retry: RetryConfig, batch: BatchConfig, value_limit: int, element: Element
) -> DestinationConfig:
    name = options.text("name")
    if not _NAME.fullmatch(name):
        raise options.error("name", "must be 1-63 characters of [a-z0-9._-], starting alphanumeric")
    kind_name = options.choice("type", "", tuple(KINDS))
    config = DestinationConfig(
        name=name,
        kind=kind_name,
        route=parse_route(options.section("route")),
        retry=_retry(options.section("retry"), retry),
        batch=_batch(options.section("batch"), batch),
        value_limit=options.integer("value_limit_bytes", value_limit, minimum=256),
        settings=KINDS[kind_name].parse(options),
        aggregate=_aggregate(options.section("aggregate"), element) if options.has("aggregate") else None,
        pace=_pace(options.section("pace"), SLACK_PACE if kind_name == "slack" else None),
    )
    options.done()
    return config


def _suppression(options: Options, destinations: set[str]) -> Suppression:
    match = options.string_map("match")
    if not match:
        raise options.error("match", "at least one name: glob pair is required")
    until = options.text("until")
    try:
        until_ns = parse_time_ns(until)
    except ValueError as exc:
        raise options.error("until", f"not an RFC 3339 time with a zone: {exc}") from None
    named = options.texts("destinations")
    unknown = sorted(set(named) - destinations)
    if unknown:
        raise options.error("destinations", f"no destination named {', '.join(unknown)}")
    suppression = Suppression(tuple(sorted(match.items())), until_ns, named, options.text("reason", ""))
    options.done()
    return suppression


def parse_time_ns(text: str) -> int:
    """An RFC 3339 time with a zone to epoch nanoseconds (to the microsecond)."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"{text!r} has no zone")
    return int(moment.timestamp() * 1_000_000) * 1000


def _pace(options: Options, default: PaceConfig | None) -> PaceConfig | None:
    per_s = options.number("per_s", default.per_s if default else 0.0)
    burst = options.integer("burst", default.burst if default else 1, minimum=1)
    options.done()
    return PaceConfig(per_s, burst) if per_s > 0 else None


def _aggregate(options: Options, element: Element) -> AggregateConfig:
    overrides = []
    for i, entry in enumerate(options.items("overrides")):
        item = element(entry, options.where(f"overrides[{i}]"))
        override = KeyOverride(
            rules=item.texts("rules"),
            tags=item.texts("tags"),
            key=item.texts("key"),
            window_s=item.number("window_s", 0.0, minimum=0.001) if item.has("window_s") else None,
        )
        item.done()
        if not (override.rules or override.tags):
            raise item.error("rules", "an override needs rules or tags to match")
        overrides.append(override)
    config = AggregateConfig(
        window_s=options.number("window_s", 60.0, minimum=0.001),
        key=options.texts("key"),
        sample_fields=options.texts("sample_fields"),
        max_open_keys=options.integer("max_open_keys", 1000, minimum=1),
        overrides=tuple(overrides),
    )
    options.done()
    return config
