"""Falco's JSON alert: keys, time formats, typed output_fields, sorted tags, stable uuid."""

from __future__ import annotations

import yaml

from benchmarks.workload import build_event
from rules import build_alert
from rules.collect import load_sources
from rules.ruleset import CompiledRule, compile_rules

RULE = {
    "rule": "Terminal shell in container", "desc": "d", "priority": "NOTICE",
    "condition": "evt.type = execve and proc.tty != 0",
    "output": "A shell was spawned (user=%user.name shell=%proc.name terminal=%proc.tty "
              "exe_flags=%evt.arg.flags)",
    "tags": ["shell", "T1059", "container", "maturity_stable", "mitre_execution"],
}  # fmt: skip


def compiled() -> CompiledRule:
    return compile_rules(load_sources([("t.yaml", yaml.safe_dump([RULE]))])).rules[0]


def event(**proc: object) -> list[object]:
    return build_event("execve", args={"flags": 0}, proc={"tty": 34816, "node": "worker-7", **proc}, num=42)


def test_alert_has_falcos_keys_plus_uuid() -> None:
    alert = build_alert(compiled(), event())
    keys = {"hostname", "output", "output_fields", "priority", "rule", "source", "tags", "time", "uuid"}
    assert set(alert) == keys
    assert alert["rule"] == "Terminal shell in container"
    assert alert["priority"] == "Notice" and alert["source"] == "syscall" and alert["hostname"] == "worker-7"
    assert alert["time"] == "2024-06-10T06:13:20.123456789Z"
    assert alert["tags"] == ["T1059", "container", "maturity_stable", "mitre_execution", "shell"]


def test_output_is_time_priority_message() -> None:
    output = build_alert(compiled(), event())["output"]
    assert isinstance(output, str)
    prefix = "06:13:20.123456789: Notice A shell was spawned (user=root shell=bash terminal=34816 "
    assert output.startswith(prefix)
    assert output.endswith("k8s_pod_name=<NA> k8s_ns_name=<NA>")


def test_output_fields_are_typed_with_nulls() -> None:
    fields = build_alert(compiled(), event())["output_fields"]
    assert isinstance(fields, dict)
    assert fields["evt.time"] == 1_718_000_000_123_456_789
    assert fields["proc.tty"] == 34816 and fields["user.name"] == "root"
    assert fields["k8s.pod.name"] is None and fields["container.id"] == "host"


def test_uuid_is_stable_and_specific() -> None:
    rule = compiled()
    first, again = build_alert(rule, event()), build_alert(rule, event())
    assert first["uuid"] == again["uuid"]
    other_node = build_alert(rule, event(node="worker-8"))
    assert other_node["uuid"] != first["uuid"]
