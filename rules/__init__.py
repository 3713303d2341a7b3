"""Peregrine's rule engine: Falco rules files in, compiled rulesets over event records out.

A pure library (stdlib and PyYAML): no Kafka, no logging setup, no clock, no network.

    ruleset = rules.load(["falco_rules.yaml"], ip_names=names)
    for ev, rule in ruleset.evaluate(events):
        alert = rules.build_alert(rule, ev)
"""

from rules.alert import build_alert
from rules.errors import CompileError, LoadError, ParseError, RulesError
from rules.priority import Priority
from rules.ruleset import CompiledRule, Ruleset, compile_rules, load

__all__ = [
    "CompileError",
    "CompiledRule",
    "LoadError",
    "ParseError",
    "Priority",
    "Ruleset",
    "RulesError",
    "build_alert",
    "compile_rules",
    "load",
]
