"""`peregrine`: one command, a subcommand per role.

Each role lives in its own package and is imported only when asked for, so `peregrine rules ...`
never loads Faust, bcc or Kafka clients. Every role module exposes ``main(argv) -> int`` and parses
its own options; this module only routes and sets up telemetry for the long-running roles, whose
``main(argv, health)`` also takes the `telemetry.health.Health` their probe endpoints answer from.
"""

from __future__ import annotations

import importlib
import sys

# subcommand -> (module, function, extra leading argv, long-running service with metrics)
_ROLES: dict[str, tuple[str, tuple[str, ...], bool, str]] = {
    "collect": ("collectors.service", ("collect",), True, "capture syscalls with eBPF and publish batches"),
    "record": ("collectors.service", ("record",), False, "capture batches to a file"),
    "replay": ("collectors.service", ("replay",), False, "publish a recorded capture to Kafka"),
    "worker": ("streams.worker", (), True, "detection worker: events -> rules -> alerts"),
    "sink": ("sinks.service", (), True, "deliver alerts to Slack and SIEMs"),
    "k8s-meta": ("enrichers.service", (), True, "publish Kubernetes metadata to peregrine.k8s"),
    "rules": ("rules.cli", (), False, "validate, list, test and backtest rules files"),
    "kafka": ("devtools.localkafka", (), False, "start/stop a local Kafka broker (up|down|status)"),
    "demo": ("devtools.demo", (), False, "replay the attack scenario through a local pipeline"),
}


# `peregrine rules backtest` reads Kafka, which `rules.cli` must never import: it has its own package.
_SUBCOMMANDS: dict[tuple[str, str], tuple[str, str]] = {
    ("rules", "backtest"): ("backtest.cli", "evaluate a rules change against the retained peregrine.events"),
    ("kafka", "acls"): ("bus.acls_cli", "print or apply a role's Kafka ACLs (one identity per role)"),
}


def _usage() -> str:
    lines = ["usage: peregrine <command> [options]", "", "commands:"]
    lines += [f"  {name:<10} {desc}" for name, (_, _, _, desc) in _ROLES.items()]
    lines += ["", "`peregrine <command> --help` shows a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0 if args else 2
    name, rest = args[0], args[1:]
    if name not in _ROLES:
        print(f"peregrine: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module_name, lead, service, _ = _ROLES[name]
    sub = _SUBCOMMANDS.get((name, rest[0])) if rest else None
    if sub is not None:
        module_name, lead, rest = sub[0], (), rest[1:]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        print(f"peregrine {name}: not available in this installation ({exc})", file=sys.stderr)
        return 2
    result: int
    if service and "-h" not in rest and "--help" not in rest:
        from telemetry.otel import setup_telemetry

        # a service role's main takes the Health its probes answer from
        result = module.main([*lead, *rest], setup_telemetry(role=name))
    else:
        result = module.main([*lead, *rest])
    if sub is None and rest and rest[0] in ("-h", "--help"):
        extra = [f"  {n} {word}: {desc} (`peregrine {n} {word} --help`)"
                 for (n, word), (_, desc) in _SUBCOMMANDS.items() if n == name]  # fmt: skip
        if extra:
            print("\nalso:\n" + "\n".join(extra))
    return result


if __name__ == "__main__":
    raise SystemExit(main())
