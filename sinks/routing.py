"""Which alerts a destination receives: minimum priority, then rule, tag and namespace filters.

A route is data read from the YAML file. Name filters are shell-style globs (``fnmatch``, case
sensitive). Include lists, when present, must match (any tag of the alert matching is enough);
exclude lists win over include lists. An alert without ``k8s.ns.name`` fails a namespace include
list and passes a namespace exclude list.
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase

from rules.priority import Priority
from sinks.alert import Alert
from sinks.options import Options


@dataclass(frozen=True, slots=True)
class Route:
    min_priority: Priority = Priority.DEBUG
    rules: tuple[str, ...] = ()
    exclude_rules: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    exclude_tags: tuple[str, ...] = ()
    namespaces: tuple[str, ...] = ()
    exclude_namespaces: tuple[str, ...] = ()

    def accepts(self, alert: Alert) -> bool:
        if alert.priority > self.min_priority:  # lower value = more severe
            return False
        if not _passes((alert.rule,), self.rules, self.exclude_rules):
            return False
        if not _passes(alert.tags, self.tags, self.exclude_tags):
            return False
        namespace = alert.namespace
        namespaces = (namespace,) if namespace is not None else ()
        return _passes(namespaces, self.namespaces, self.exclude_namespaces)


def _passes(values: tuple[str, ...], include: tuple[str, ...], exclude: tuple[str, ...]) -> bool:
    if include and not any(fnmatchcase(v, p) for v in values for p in include):
        return False
    return not any(fnmatchcase(v, p) for v in values for p in exclude)


def parse_route(options: Options) -> Route:
    raw_priority = options.text("min_priority", "debug")
    try:
        priority = Priority.parse(raw_priority)
    except ValueError as exc:
        raise options.error("min_priority", str(exc)) from None
    route = Route(
        min_priority=priority,
        rules=options.texts("rules"),
        exclude_rules=options.texts("exclude_rules"),
        tags=options.texts("tags"),
        exclude_tags=options.texts("exclude_tags"),
        namespaces=options.texts("namespaces"),
        exclude_namespaces=options.texts("exclude_namespaces"),
    )
    options.done()
    return route
