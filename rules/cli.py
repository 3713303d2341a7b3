"""`peregrine rules ...`: validate, list and test Falco rules files.

    peregrine rules validate [--strict] FILE...    load and compile, report problems and counts
    peregrine rules list [FILE...]                 rules with priority, tags and event types
    peregrine rules test --events FILE [--rules FILE...]   replay a capture, print Falco JSON alerts
    peregrine rules profile --events FILE [--rules FILE...] what each rule costs on a capture

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
from rules.evttypes import matched_types
from rules.loaded import LoadedRule
from rules.priority import Priority
from rules.record import Event

DEFAULT_RULES = Path(__file__).parent / "data" / "peregrine_rules.yaml"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="peregrine rules", description="Validate, list, test rules.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{validate,list,test,profile}")

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

    profile = sub.add_parser("profile", help="replay a capture through each rule alone: cost per rule")
    profile.add_argument("--events", required=True, metavar="FILE", help="a capture from `peregrine record`")
    profile.add_argument("--rules", nargs="+", default=[], metavar="FILE", help=default)
    profile.add_argument("--top", type=int, default=None, metavar="N", help="print the N most expensive")
    profile.add_argument("--repeat", type=int, default=3, metavar="N", help="replay the capture N times")
    profile.add_argument("--json", action="store_true", help="one JSON object per rule instead of a table")
    profile.add_argument("--ip-name", action="append", default=[], metavar="IP=NAME", help="as for `test`")
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
        if args.command == "profile":
            return _profile(args, sys.stdout, sys.stderr)
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
    types = matched_types(rule.condition)
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


def _profile(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from rules.collect import load_files
    from rules.profile import RuleProfiler, render_table

    try:
        ip_names = dict(_ip_name(text) for text in args.ip_name)
        if args.repeat < 1 or (args.top is not None and args.top < 1):
            raise ValueError("--repeat and --top want a positive number")
    except ValueError as exc:
        err.write(f"error: {exc}\n")
        return 2
    profiler = RuleProfiler(load_files(args.rules or [str(DEFAULT_RULES)]), ip_names=ip_names)
    from collectors.errors import CaptureError
    from collectors.wire import WireError

    try:
        batches = list(_capture_events(args.events))
    except (CaptureError, WireError) as exc:
        err.write(f"error: {args.events}: bad capture: {exc}\n")
        return 1
    for _ in range(args.repeat):
        for events in batches:
            profiler.feed(events)
    costs = profiler.costs()
    if args.json:
        for row in costs[: args.top]:
            fields = {"rule": row.rule, "priority": row.priority.label, "events": row.events}
            fields |= {"evaluations": row.evaluations, "matches": row.matches, "cpu_ns": row.cpu_ns}
            out.write(json.dumps(fields, ensure_ascii=False) + "\n")
    else:
        out.write(render_table(costs, top=args.top))
    n_events = sum(len(events) for events in batches)
    err.write(f"{len(profiler)} rules, {n_events} events x {args.repeat}\n")
    return 0


def _ip_name(text: str) -> tuple[str, str]:
    ip, sep, name = text.partition("=")
    if not (sep and ip and name):
        raise ValueError(f"--ip-name wants IP=NAME, got {text!r}")
    return ip, name


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
