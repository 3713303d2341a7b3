"""The backtest's result as a JSON document (for CI) or as text (for a person).

The JSON document (``--json``), one object::

    {"events_topic", "window": {"since", "until"}, "rule_matching", "rules", "baseline",
     "k8s": {"topic", "containers", "services", "bad_records"},
     "partitions": [{"partition", "start", "end"}], "batches", "events",
     "undecodable_batches", "failed_batches", "first_problem",
     "totals": {"added", "removed", "unchanged"},
     "rules_only_new", "rules_only_baseline",
     "per_rule": {name: {"added", "removed", "unchanged", "samples": {"added": [...], "removed": [...]}}},
     "run": {"processes", "seconds", "events_per_second", "per_process": [...]}}

Everything but ``run`` depends only on the data and the rules: the same window read by one
process or by four gives the same document there.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any, TextIO

from backtest.compare import RuleDiff, Sample
from backtest.job import Evaluator, Outcome
from backtest.read import Span
from backtest.when import iso

JsonObject = dict[str, object]


def document(
    evaluator: Evaluator, outcome: Outcome, spans: Sequence[Span], since_ms: int, until_ms: int | None,
    seconds: float,
) -> JsonObject:  # fmt: skip
    s = evaluator.settings
    new_names, base_names = evaluator.rule_names()
    added, removed, unchanged = outcome.diffs.totals()
    failed = [sh.first_problem for sh in outcome.shares if sh.first_problem]
    return {
        "events_topic": s.events_topic,
        "window": {"since": iso(since_ms), "until": None if until_ms is None else iso(until_ms)},
        "rule_matching": "all" if s.all_matches else "first",
        "rules": list(s.rules),
        "baseline": list(s.baseline),
        "k8s": {"topic": s.k8s_topic, "containers": outcome.k8s_containers, "services": outcome.k8s_services,
                "bad_records": outcome.k8s_bad_records},  # fmt: skip
        "partitions": [{"partition": sp.partition, "start": sp.start, "end": sp.end} for sp in sorted(spans)],
        "batches": outcome.batches,
        "events": outcome.events,
        "undecodable_batches": sum(sh.undecodable for sh in outcome.shares),
        "failed_batches": sum(sh.failed for sh in outcome.shares),
        "first_problem": min(failed) if failed else None,
        "totals": {"added": added, "removed": removed, "unchanged": unchanged},
        "rules_only_new": sorted(new_names - base_names),
        "rules_only_baseline": sorted(base_names - new_names),
        "per_rule": {name: _rule(diff) for name, diff in sorted(outcome.diffs.rules.items())},
        "run": {
            "processes": len(outcome.shares),
            "seconds": round(seconds, 3),
            "events_per_second": round(outcome.events / seconds) if seconds > 0 else None,
            "per_process": [
                {"partitions": sh.partitions, "events": sh.events, "seconds": round(sh.seconds, 3),
                 "cpu_seconds": round(sh.cpu_seconds, 3),
                 "events_per_second": round(sh.events / sh.seconds) if sh.seconds > 0 else None}
                for sh in outcome.shares
            ],  # fmt: skip
        },
    }


def _rule(diff: RuleDiff) -> JsonObject:
    return {
        "added": diff.added,
        "removed": diff.removed,
        "unchanged": diff.unchanged,
        "samples": {"added": [_sample(s) for s in diff.added_samples],
                    "removed": [_sample(s) for s in diff.removed_samples]},  # fmt: skip
    }


def _sample(sample: Sample) -> JsonObject:
    return asdict(sample)


def write_json(doc: JsonObject, out: TextIO) -> None:
    out.write(json.dumps(doc, ensure_ascii=False, indent=2) + "\n")


def write_text(doc: JsonObject, out: TextIO) -> None:
    """One line per rule that alerted on either side, its samples under it, then the totals."""
    per_rule: Any = doc["per_rule"]  # the document built above: its shape is known
    width = max([len(name) for name in per_rule] + [4])
    out.write(f"{'rule':<{width}}  {'added':>8} {'removed':>8} {'unchanged':>9}\n")
    for name, row in per_rule.items():
        out.write(f"{name:<{width}}  {row['added']:>8} {row['removed']:>8} {row['unchanged']:>9}\n")
        for side in ("added", "removed"):
            for sample in row["samples"][side]:
                # json.dumps escapes what an attacker put in the output (newlines, escapes)
                out.write(f"    {side} p{sample['partition']}@{sample['offset']} {sample['node']}: "
                          f"{json.dumps(sample['output'], ensure_ascii=False)}\n")  # fmt: skip
    for key in ("rules_only_new", "rules_only_baseline"):
        names: Any = doc[key]
        if names:
            out.write(f"{key.replace('_', ' ')}: {', '.join(names)}\n")
    totals: Any = doc["totals"]
    run: Any = doc["run"]
    out.write(
        f"{doc['events']} events in {doc['batches']} batches ({doc['undecodable_batches']} undecodable, "
        f"{doc['failed_batches']} failed); alerts added {totals['added']}, removed {totals['removed']}, "
        f"unchanged {totals['unchanged']}; {run['seconds']} s, {run['processes']} process(es)\n"
    )
