"""Destination types by name: the only place a destination is registered.

Adding a destination is one module (config, ``parse``, pure ``build_*``, a class with
``build``/``send``/``close``) and one row here; routing, retries, the DLQ, commits and metrics come
from the runner.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sinks import elastic, file, loki, slack, splunk, syslog, webhook
from sinks.base import Destination
from sinks.options import Options


@dataclass(frozen=True, slots=True)
class Kind:
    parse: Callable[[Options], Any]  # options -> the destination's frozen config
    open: Callable[[Any, int, int], Destination]  # (config, value_limit, max_batch) -> destination
    batches: bool  # whether one request may carry many alerts


KINDS: dict[str, Kind] = {
    "slack": Kind(slack.parse, slack.SlackDestination, batches=False),
    "splunk": Kind(splunk.parse, splunk.SplunkDestination, batches=True),
    "elasticsearch": Kind(elastic.parse, elastic.ElasticDestination, batches=True),
    "opensearch": Kind(elastic.parse, elastic.ElasticDestination, batches=True),
    "syslog": Kind(syslog.parse, syslog.SyslogDestination, batches=True),
    "loki": Kind(loki.parse, loki.LokiDestination, batches=True),
    "webhook": Kind(webhook.parse, webhook.WebhookDestination, batches=False),
    "file": Kind(file.parse, file.FileDestination, batches=True),
    "stdout": Kind(file.parse_stdout, file.StdoutDestination, batches=True),
}
