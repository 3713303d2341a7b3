"""Routing per destination: priority, rules, tags, namespaces."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from rules.priority import Priority
from sinks.alert import Alert, decode_alert
from sinks.routing import Route


@pytest.fixture
def alert(alert_doc: Callable[..., dict[str, Any]]) -> Callable[..., Alert]:
    def make(**changes: Any) -> Alert:
        return decode_alert(json.dumps(alert_doc(**changes)).encode())

    return make


def test_minimum_priority_keeps_more_severe_alerts(alert: Callable[..., Alert]) -> None:
    route = Route(min_priority=Priority.WARNING)
    assert route.accepts(alert(priority="Critical"))
    assert route.accepts(alert(priority="Warning"))
    assert not route.accepts(alert(priority="Notice"))


def test_rule_globs_and_exclusions(alert: Callable[..., Alert]) -> None:
    route = Route(rules=("Terminal shell*", "Write below *"), exclude_rules=("Write below rpm*",))
    assert route.accepts(alert())
    assert route.accepts(alert(rule="Write below binary dir"))
    assert not route.accepts(alert(rule="Write below rpm database"))
    assert not route.accepts(alert(rule="Contact K8S API Server From Container"))


def test_any_matching_tag_is_enough_and_excluded_tags_win(alert: Callable[..., Alert]) -> None:
    assert Route(tags=("mitre_*",)).accepts(alert())
    assert not Route(tags=("network",)).accepts(alert())
    assert not Route(tags=("shell",), exclude_tags=("maturity_stable",)).accepts(alert())


def test_namespace_filters_and_alerts_without_a_namespace(alert: Callable[..., Alert]) -> None:
    host_alert = alert(output_fields={"proc.name": "bash"})
    assert Route(namespaces=("default",)).accepts(alert())
    assert not Route(namespaces=("prod-*",)).accepts(alert())
    assert not Route(namespaces=("default",)).accepts(host_alert)
    assert Route(exclude_namespaces=("kube-system",)).accepts(host_alert)
    assert not Route(exclude_namespaces=("def*",)).accepts(alert())
