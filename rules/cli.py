"""`peregrine rules ...`: validate, list and test Falco rules files.

    peregrine rules validate [--strict] FILE...    load and compile, report problems and counts
    peregrine rules list [FILE...]                 rules with priority, tags and event types
    peregrine rules test --events FILE [--rules FILE...]   replay a capture, print Falco JSON alerts

Files are loaded in the order given, as Falco loads its ``rules_files``. Without files, `list`
and `test` use Peregrine's default rules (``rules/data/peregrine_rules.yaml``).

Every problem is printed as one message naming the file, line and item, with a caret under the
offending token of a condition; no traceback. Exit status: 0 fine, 1 the rules or the capture
have an error, 2 bad usage. Captures are read with `collectors.capture` (the format `peregrine
record` writes: event batches as `collectors.wire` encodes them); that, and msgpack, are imported
inside `test` alone. A capture carries no Kubernetes metadata, so `k8s.*` fields are `<NA>`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TextIO

from rules.errors import RulesError
from rules.evttypes import event_types
from rules.loaded import LoadedRule
from rules.priority import Priority
from rules.record import Event

DEFAULT_RULES = Path(__file__).parent / "data" / "peregrine_rules.yaml"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="peregrine rules", description="Validate, list, test rules.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{validate,list,test}")

    validate = sub.add_parser("validate", help="load and compile rules files, report problems and counts")
    validate.add_argument("files", nargs="+", metavar="FILE", help="rules files, loaded in this order")
    validate.add_argument(
        "--strict", action="store_true", help="fail on warnings too (Falco only warns, e.g. on unknown keys)"
    )

    listing = sub.add_parser("list", help="list rules with priority, tags and event types")
    default = f"rules files (default: {DEFAULT_RULES.name})"
    listing.add_argument("files", nargs="*", metavar="FILE", help=default)

    test = sub.add_parser("test", help="evaluate a recorded capture and print one Falco JSON alert per line")
    test.add_argument("--events", required=True, metavar="FILE", help="a capture from `peregrine record`")
    test.add_argument("--rules", nargs="+", default=[], metavar="FILE", help=default)
    test.add_argument("--all-matches", action="store_true", help="every matching rule alerts")
    test.add_argument(
        "--min-priority",
        default="debug",
        metavar="PRIORITY",
        help="skip rules less severe than this (default: debug, i.e. all)",
    )
    test.add_argument(
        "--ip-name",
        action="append",
        default=[],
        metavar="IP=NAME",
        help="what fd.*ip.name resolves IP to, e.g. 10.96.0.1=kubernetes.default.svc.cluster.local",
    )
    return parser


def main(argv: list[str]) -> int:
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # argparse exits on --help (0) and on bad usage (2)
        return int(exc.code or 0)
    try:
        if args.command == "validate":
            return _validate(args.files, sys.stdout, sys.stderr, strict=args.strict)
        if args.command == "list":
            return _list(args.files or [str(DEFAULT_RULES)], sys.stdout)
        return _test(args, sys.stdout, sys.stderr)
    except RulesError as exc:
        print(f"error: {exc.render()}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # output piped into `head`: stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def _validate(files: Sequence[str], out: TextIO, err: TextIO, *, strict: bool) -> int:
    from rules.collect import load_files
    from rules.ruleset import compile_rules

    result = load_files(files)
    for counts in result.files:
        out.write(f"{counts.path}: {counts.rules} rules, {counts.macros} macros, {counts.lists} lists\n")
    ruleset = compile_rules(result)  # raises the first CompileError, with its location
    for warning in ruleset.warnings:
        caret = warning.location.caret()
        err.write(warning.render() + ("\n" + caret if caret else "") + "\n")
    if strict and ruleset.warnings:
        err.write(f"error: {len(ruleset.warnings)} warning(s) and --strict\n")
        return 1
    enabled = sum(rule.enabled for rule in result.rules)
    out.write(
        f"OK: {len(result.rules)} rules ({enabled} enabled) from {len(result.files)} file(s), "
        f"{len(ruleset.warnings)} warning(s)\n"
    )
    return 0


def _describe_types(rule: LoadedRule) -> str:
    types = event_types(rule.condition)
    if types is None:
        return "all (no evt.type restriction)"
    if not types:
        return "none (the condition can never match)"
    return ", ".join(sorted(types))


def _list(files: Sequence[str], out: TextIO) -> int:
    from rules.collect import load_files

    result = load_files(files)
    for rule in result.rules:
        state = "" if rule.enabled else "  (disabled)"
        out.write(f"{rule.priority.label:<13} {rule.name}{state}\n")
        out.write(f"{'':<14}event types: {_describe_types(rule)}\n")
        out.write(f"{'':<14}tags: {', '.join(rule.tags) or '-'}\n")
    return 0


def _capture_events(path: str) -> Iterator[list[Event]]:
    """The events of each event batch of a capture (CaptureError, WireError on bad input)."""
    from collectors.capture import read_capture
    from collectors.wire import decode_batch

    for frame in read_capture(path):
        if frame.kind == "events":
            yield decode_batch(frame.value).events


def _test(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from rules.alert import build_alert
    from rules.ruleset import load

    try:
        min_priority = Priority.parse(args.min_priority)
        ip_names = dict(_ip_name(text) for text in args.ip_name)
    except ValueError as exc:
        err.write(f"error: {exc}\n")
        return 2
    files = args.rules or [str(DEFAULT_RULES)]
    ruleset = load(files, all_matches=args.all_matches, ip_names=ip_names, min_priority=min_priority)
    # msgpack and the capture format are needed from here on only
    from collectors.errors import CaptureError
    from collectors.wire import WireError

    n_events = n_alerts = 0
    try:
        for events in _capture_events(args.events):
            n_events += len(events)
            for ev, rule in ruleset.evaluate(events):
                out.write(json.dumps(build_alert(rule, ev), ensure_ascii=False) + "\n")
                n_alerts += 1
    except (CaptureError, WireError) as exc:
        err.write(f"error: {args.events}: bad capture: {exc}\n")
        return 1
    err.write(f"{n_events} events, {n_alerts} alerts\n")
    return 0


def _ip_name(text: str) -> tuple[str, str]:
    ip, sep, name = text.partition("=")
    if not (sep and ip and name):
        raise ValueError(f"--ip-name wants IP=NAME, got {text!r}")
    return ip, name


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
